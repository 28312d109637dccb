"""The vulnerable-persons register: encrypted at rest, readable only by the town's safeguard
service and the assigned representative, deleted on request, never named in a log."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from veille.cli import main
from veille.pcs.register import KEY_ENV, Reader, Register, RegisterError, new_key

NAME = "Germaine Lebrun-Quintard"
ADDRESS = "12 rue de la Gare"


@pytest.fixture
def register(tmp_path: Path) -> Register:
    return Register(tmp_path / "pcs-register", new_key().encode())


def test_file_holds_no_plaintext_and_is_private(register: Register) -> None:
    register.add("35401", name=NAME, address=ADDRESS, needs="oxygène, fauteuil",
                 representative="r-35401-gare")
    raw = register.path("35401").read_bytes()
    for secret in (NAME, "Lebrun", ADDRESS, "Gare", "oxygène", "fauteuil", "r-35401-gare"):
        assert secret.encode() not in raw
    assert stat.S_IMODE(os.stat(register.path("35401")).st_mode) == 0o600


def test_readers_see_only_what_they_may(register: Register) -> None:
    a = register.add("35401", name=NAME, address=ADDRESS, needs="", representative="r-35401-gare")
    register.add("35401", name="Autre Personne", address="1 place", needs="",
                 representative="r-35401-centre")
    assert len(register.entries_for(Reader("35401"))) == 2  # the safeguard service: all
    assert register.entries_for(Reader("35401", "r-35401-gare")) == [a]
    assert register.entries_for(Reader("35402")) == []  # another town's service: nothing
    assert register.counts_by_representative("35401") == {"r-35401-gare": 1, "r-35401-centre": 1}


def test_delete_on_request(register: Register) -> None:
    a = register.add("35401", name=NAME, address=ADDRESS, needs="", representative="r-35401-gare")
    assert register.delete("35401", a.id)
    assert not register.delete("35401", a.id)
    assert register.entries_for(Reader("35401")) == []


def test_a_wrong_key_or_a_modified_file_is_refused_without_content(register: Register) -> None:
    register.add("35401", name=NAME, address=ADDRESS, needs="", representative="r-35401-gare")
    other = Register(register.directory, new_key().encode())
    with pytest.raises(RegisterError, match="does not decrypt") as info:
        other.entries_for(Reader("35401"))
    assert NAME not in str(info.value)
    raw = bytearray(register.path("35401").read_bytes())
    raw[-5] = ord("A") if raw[-5] != ord("A") else ord("B")
    register.path("35401").write_bytes(bytes(raw))
    with pytest.raises(RegisterError):
        register.entries_for(Reader("35401"))
    with pytest.raises(RegisterError, match="Fernet key"):
        Register(register.directory, b"not a key")


def test_a_person_never_shows_in_a_repr_or_a_log(register: Register,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    person = register.add("35401", name=NAME, address=ADDRESS, needs="x", representative="r-35401-gare")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("veille.pcs").info("checked %s", person)
        logging.getLogger("veille.pcs").info("entries %r", register.entries_for(Reader("35401")))
    assert NAME not in caplog.text and ADDRESS not in caplog.text
    assert NAME not in repr(person) and NAME not in str(person)


def test_cli_add_list_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VEILLE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv(KEY_ENV, raising=False)
    from veille.config import get_settings
    get_settings.cache_clear()
    try:
        assert main(["pcs", "register", "list", "35401"]) == 2
        assert KEY_ENV in capsys.readouterr().err
        monkeypatch.setenv(KEY_ENV, new_key())
        assert main(["pcs", "register", "add", "35401", "--name", NAME, "--address", ADDRESS,
                     "--representative", "r-35402-bourg"]) == 2  # not of this town
        assert main(["pcs", "register", "add", "35401", "--name", NAME, "--address", ADDRESS,
                     "--representative", "r-35401-gare"]) == 0
        entry = capsys.readouterr().out.strip()
        assert main(["pcs", "register", "list", "35401", "--representative", "r-35401-centre"]) == 0
        assert NAME not in capsys.readouterr().out
        assert main(["pcs", "register", "list", "35401"]) == 0
        assert NAME in capsys.readouterr().out
        assert NAME.encode() not in (tmp_path / "pcs-register" / "35401.fernet").read_bytes()
        assert main(["pcs", "register", "delete", "35401", entry]) == 0
        assert main(["pcs", "register", "delete", "35401", entry]) == 1
    finally:
        get_settings.cache_clear()


def test_the_cascade_topic_is_read_by_the_pcs_worker_and_the_sink_alone() -> None:
    """The cascade's topic carries ids and statuses only; the worker and the sink (counts)
    read it, nobody else."""
    from veille.security import acl_plan
    from veille.topics import Topics

    plan = acl_plan("v", ["35401", "35402"], ["mairie-35401", "sdis-35"])
    cascade = Topics("v").pcs_cascade
    assert {g.user for g in plan if g.name == cascade and g.operation == "READ"} == {"pcs", "sink"}
    assert {g.user for g in plan if g.name == cascade and g.operation == "WRITE"} == {"pcs", "intake"}

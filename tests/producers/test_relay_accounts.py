"""Relay accounts: scrypt-hashed passwords, rotation and revocation, the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from veille.producers.credentials import check_password, hash_password
from veille.producers.relay.accounts import AccountStore


def test_passwords_are_stored_as_scrypt_hashes_only(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "relay_accounts.json")
    account, password = store.issue("Accueil mairie", kind="town_hall_desk", municipalities=["35401"])
    raw = (tmp_path / "relay_accounts.json").read_text()
    assert password not in raw and account.password_hash.startswith("scrypt$")
    assert stat.S_IMODE(os.stat(tmp_path / "relay_accounts.json").st_mode) == 0o600
    assert store.authenticate(account.login, password) == account
    assert store.authenticate(account.login.upper(), password) == account  # logins are case-blind
    assert store.authenticate(account.login, password + "x") is None
    assert store.authenticate("nobody", password) is None
    assert check_password("s3cret", hash_password("s3cret", n=2**10)) and not check_password("x", "garbage")


def test_rotation_and_revocation_take_effect_at_once(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "a.json")
    account, old = store.issue("Standard", kind="phone", municipalities=["35402"], login="standard-35402")
    rotated, new = store.rotate("standard-35402")
    assert rotated.generation != account.generation
    assert store.authenticate("standard-35402", old) is None
    assert store.authenticate("standard-35402", new) is not None
    store.revoke(account.id)
    assert store.authenticate("standard-35402", new) is None and store.get(account.id) is None
    with pytest.raises(ValueError, match="kind"):
        store.issue("x", kind="app", municipalities=["35401"])
    with pytest.raises(ValueError, match="taken"):
        store.issue("x", kind="phone", municipalities=["35401"], login="standard-35402")


def test_cli_issues_lists_rotates_revokes(tmp_path: Path) -> None:
    env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path)}

    def veille(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "veille.cli", "relay", "accounts", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    out = veille("issue", "--name", "Référente quartier Gare", "--municipality", "35401",
                 "--kind", "neighbourhood_representative", "--login", "gare-35401")
    assert out.returncode == 0, out.stderr
    password = out.stdout.split("hand it over in person): ")[1].strip()
    store = AccountStore(tmp_path / "relay_accounts.json")
    assert store.authenticate("gare-35401", password) is not None
    assert veille("issue", "--name", "x", "--municipality", "75056", "--kind", "phone").returncode == 2
    listed = veille("list").stdout
    assert "gare-35401" in listed and password not in listed and "[active]" in listed
    rotated = veille("rotate", "gare-35401")
    assert rotated.returncode == 0 and store.authenticate("gare-35401", password) is None
    assert veille("revoke", "gare-35401").returncode == 0
    assert "[revoked]" in veille("list").stdout
    assert json.loads((tmp_path / "relay_accounts.json").read_text())[0]["revoked_at"]

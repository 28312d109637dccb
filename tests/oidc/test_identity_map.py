"""identity.yaml: the claims an identity provider gives -> a body of the territory and a role.
Pure: no provider, no broker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from veille.territory.files import read_territory
from veille.territory.identity_map import (
    IDENTITY_FILE,
    ConsoleRole,
    IdentityMap,
    check_identity_map,
    console_grant,
    grant_for,
    parse_identity_map,
    read_identity_map,
)
from veille.territory.model import TerritoryError
from veille.web.identity import Role

EXAMPLE = Path(__file__).resolve().parents[2] / "veille" / "territories" / "example"


@pytest.fixture(scope="module")
def rules() -> IdentityMap:
    return read_identity_map(EXAMPLE / IDENTITY_FILE)


def test_an_exact_address_before_its_domain_gives_the_chef(rules: IdentityMap) -> None:
    grant = grant_for(rules, {"email": "DST@Montveille.fr", "email_verified": True})
    assert grant is not None and (grant.agency_id, grant.role) == ("mairie-35401", Role.chef)
    grant = grant_for(rules, {"email": "alice.martin@montveille.fr"})
    assert grant is not None and (grant.agency_id, grant.role) == ("mairie-35401", Role.agent)


def test_a_siret_admits_whatever_the_mail_domain(rules: IdentityMap) -> None:
    grant = grant_for(rules, {"email": "bruno@eaux-veille.bzh", "siret": "25350123400017"})
    assert grant is not None and grant.agency_id == "syndicat-eaux-veille"
    assert grant_for(rules, {"email": "bruno@eaux-veille.bzh", "siret": "25350123400018"}) is None


def test_every_condition_of_a_rule_must_hold(rules: IdentityMap) -> None:
    mediation = {"email": "x@valdeveille.fr", "organizational_unit": "Service de médiation sociale"}
    grant = grant_for(rules, mediation)
    assert grant is not None and grant.agency_id == "cc-mediation"
    # Same domain, another unit of the community: not the mediation service's.
    assert grant_for(rules, {**mediation, "organizational_unit": "Direction des finances"}) is None
    assert grant_for(rules, {"email": "x@valdeveille.fr"}) is None


@pytest.mark.parametrize("email", ["x@mairie.montveille.fr", "x@evil-montveille.fr",
                                   "x@montveille.fr.evil.example", "montveille.fr", "x@y@montveille.fr", ""])
def test_domains_match_exactly(rules: IdentityMap, email: str) -> None:
    assert grant_for(rules, {"email": email}) is None


def test_an_unverified_address_matches_nothing(rules: IdentityMap) -> None:
    assert grant_for(rules, {"email": "alice@montveille.fr", "email_verified": False}) is None


@pytest.mark.parametrize("claims", [{}, {"email": 42}, {"siret": ["25350123400017"]}, {"email": None},
                                    {"organizational_unit": {"a": 1}}])
def test_odd_claims_are_refused_not_a_crash(rules: IdentityMap, claims: dict[str, object]) -> None:
    assert grant_for(rules, claims) is None


@pytest.mark.parametrize(("data", "message"), [
    ({"rules": [{"agency": "mairie-35401", "role": "agent"}]}, "at least one of"),
    ({"rules": [{"agency": "mairie-35401", "sirets": [25350123400017]}]}, "valid string"),
    ({"rules": [{"agency": "mairie-35401", "sirets": ["2535"]}]}, "14 digits"),
    ({"rules": [{"agency": "mairie-35401", "email_domains": ["@montveille.fr"]}]}, "not a domain"),
    ({"rules": [{"agency": "mairie-35401", "email_domains": ["*.montveille.fr"]}]}, "not a domain"),
    ({"rules": [{"agency": "mairie-35401", "emails": ["montveille.fr"]}]}, "not an e-mail"),
    ({"rules": [{"agency": "mairie-35401", "role": "maire", "emails": ["a@b.fr"]}]}, "role"),
    ({"rules": [{"agency": "mairie-35401", "emails": ["a@b.fr"], "groups": ["x"]}]}, "groups"),
])
def test_a_malformed_file_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(TerritoryError) as err:
        parse_identity_map(data, Path("identity.yaml"))
    assert "identity.yaml: rules" in str(err.value) and message in str(err.value)


def test_a_file_without_any_rule_is_refused() -> None:
    with pytest.raises(TerritoryError, match="no rules"):
        parse_identity_map({"rules": [], "console": []}, Path("identity.yaml"))


def test_console_rules_give_the_cell_role(rules: IdentityMap) -> None:
    cell = {"email": "veilleur@valdeveille.fr", "organizational_unit": "Cellule de veille intercommunale"}
    assert console_grant(rules, cell) == ConsoleRole.cell
    assert grant_for(rules, cell) is None  # the console's rules open the console only
    assert console_grant(rules, {"email": "alice.martin@montveille.fr"}) is None  # and the desk's the desk


def test_check_reports_unknown_agencies_and_unreachable_rules() -> None:
    territory = read_territory(EXAMPLE)
    rules = parse_identity_map({"rules": [
        {"agency": "mairie-35401", "email_domains": ["montveille.fr"]},
        {"agency": "mairie-35401", "role": "chef", "emails": ["dst@montveille.fr"]},  # shadowed
        {"agency": "mairie-99999", "email_domains": ["nowhere.fr"]},
    ]}, Path("identity.yaml"))
    issues = check_identity_map(rules, territory)
    assert [(i.level, i.code) for i in issues] == [("warning", "identity-unreachable-rule"),
                                                   ("error", "identity-unknown-agency")]
    assert "mairie-99999" in str(issues[1])


def test_the_example_file_passes_veille_territory_check(tmp_path: Path) -> None:
    veille = shutil.which("veille", path=str(Path(sys.executable).parent))
    assert veille
    ok = subprocess.run([veille, "territory", "check", str(EXAMPLE)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "territory"
    shutil.copytree(EXAMPLE, broken)
    text = (broken / IDENTITY_FILE).read_text().replace("agency: cc-mediation", "agency: cc-mediaton")
    (broken / IDENTITY_FILE).write_text(text)
    out = subprocess.run([veille, "territory", "check", str(broken)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "identity-unknown-agency" in out.stdout and "cc-mediaton" in out.stdout
    (broken / IDENTITY_FILE).write_text("rules: [{agency: x}]\n")
    out = subprocess.run([veille, "territory", "check", str(broken)], capture_output=True, text=True)
    assert out.returncode == 2 and "identity.yaml: rules[0]" in out.stderr

"""``escalation_to`` in jurisdiction.yaml: read per agency or per service, checked by the territory checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from veille.config import Settings
from veille.schemas.models import ServiceKind
from veille.territory import TerritoryError, load_territory, read_territory, validate_territory
from veille.territory.reroute import supervisor_of, supervisor_service


def test_the_example_territory_declares_its_supervisors() -> None:
    t = load_territory()
    assert supervisor_of(t, "pm-35401", ServiceKind.municipal_police) == "mairie-35401"
    assert supervisor_of(t, "mairie-35402", ServiceKind.stormwater) == "syndicat-eaux-veille"
    assert supervisor_of(t, "mairie-35402", ServiceKind.public_works) == "cellule-veille"
    assert supervisor_of(t, "sdis35", ServiceKind.fire_rescue) == "cellule-veille"
    assert supervisor_of(t, "cellule-veille", ServiceKind.monitoring_cell) is None
    safeguard = ServiceKind.municipal_safeguard
    assert supervisor_service(t, "mairie-35401", ServiceKind.municipal_police) == safeguard
    assert supervisor_service(t, "syndicat-eaux-veille", ServiceKind.stormwater) == ServiceKind.stormwater


@pytest.mark.parametrize(("value", "message"), [
    ("nobody-here", "'nobody-here' is not an agency"),
    ({"fire_rescue": "cellule-veille"}, "names service 'fire_rescue', which it does not provide"),
    ("pm-35401", "escalates to itself"),
])
def test_a_wrong_escalation_to_is_an_error(tmp_path: Path, value: object, message: str) -> None:
    target = tmp_path / "territory"
    shutil.copytree(Settings().territory_dir, target)
    jurisdiction = yaml.safe_load((target / "jurisdiction.yaml").read_text())
    for agency in jurisdiction["agencies"]:
        if agency["id"] == "pm-35401":
            agency["escalation_to"] = value
    (target / "jurisdiction.yaml").write_text(yaml.safe_dump(jurisdiction, allow_unicode=True))
    issues = [i for i in validate_territory(read_territory(target)) if i.code == "bad_escalation"]
    assert [i.level for i in issues] == ["error"] and message in issues[0].message
    with pytest.raises(TerritoryError):
        load_territory(target)

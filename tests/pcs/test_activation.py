"""A heatwave CAP alert on two towns activates both chains; minor, test or cancel alerts do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import shapely

from veille.config import Settings
from veille.pcs.activation import from_alert, manual
from veille.pcs.plan import PCS_FILE, read_plan
from veille.schemas.models import Alert
from veille.territory import load_territory

EXAMPLE = Path(Settings().territory_dir)
TERRITORY = load_territory(EXAMPLE)
PLAN = read_plan(EXAMPLE / PCS_FILE)


def heatwave(severity: str = "Severe", status: str = "Actual", msg_type: str = "Alert",
             towns: tuple[str, ...] = ("35401", "35402")) -> Alert:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "identifier": "meteo-canicule-1", "sender": "vigilance@meteo.example", "sent": now,
        "status": status, "msg_type": msg_type, "scope": "Public",
        "infos": [{"category": ["Met"], "event": "Canicule", "urgency": "Expected",
                   "event_codes": [{"value_name": "veille", "value": "heatwave"}],
                   "severity": severity, "certainty": "Likely",
                   "expires": now + timedelta(days=2),
                   "areas": [{"area_desc": "Ouest du Val",
                              "geocodes": [{"value_name": "INSEE", "value": t} for t in towns]}]}]}
    return Alert.model_validate(data)


def test_heatwave_on_two_towns_reaches_every_representative_of_both() -> None:
    acts = from_alert(heatwave(), TERRITORY, PLAN)
    assert [(a.municipality, a.representatives) for a in acts] == [
        ("35401", ("r-35401-centre", "r-35401-gare", "r-35401-residence-du-parc")),
        ("35402", ("r-35402-bourg", "r-35402-la-noe"))]
    assert acts == from_alert(heatwave(), TERRITORY, PLAN)  # same alert, same activation ids
    assert len({a.id for a in acts}) == 2


def test_below_the_threshold_tests_and_cancellations_do_not_activate() -> None:
    assert from_alert(heatwave("Moderate"), TERRITORY, PLAN) == []
    assert from_alert(heatwave(status="Exercise"), TERRITORY, PLAN) == []
    assert from_alert(heatwave(msg_type="Cancel"), TERRITORY, PLAN) == []
    assert from_alert(heatwave(towns=("35406",)), TERRITORY, PLAN) == []  # no chain there


def test_manual_activation_of_part_of_a_town() -> None:
    act = manual("35402", "desk-1", TERRITORY, PLAN, shapely.box(-1.87, 48.16, -1.85, 48.17))
    assert act is not None and act.representatives == ("r-35402-la-noe",) and act.source == "manual"
    whole = manual("35402", "desk-2", TERRITORY, PLAN)
    assert whole is not None and whole.representatives == ("r-35402-bourg", "r-35402-la-noe")
    assert manual("35406", "desk-3", TERRITORY, PLAN) is None

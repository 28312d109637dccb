"""A chef of a town's safeguard cell records a prevention action from the desk, a walk with its
reports (no broker: the publish function records what would be sent; the broker's path is in
test_desk_prevention_kafka.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "desk"))
from desk_helpers import Client, csrf_of, log_in, run_desk

from veille.config import Settings
from veille.pcs.events import PreventionEvent
from veille.pcs.plan import PCS_FILE, read_plan
from veille.producers.desk.book import DeskBook
from veille.producers.desk.prevention import prevention_routes
from veille.schemas.models import Channel, Incident

PLAN = read_plan(Path(Settings().territory_dir) / PCS_FILE)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def form_of(page: str, token: str, **extra: Any) -> dict[str, Any]:
    request_id = re.search(r'name="request_id" value="([^"]+)"', page)
    assert request_id
    return {"csrf_token": token, "request_id": request_id.group(1), "municipality": "35401",
            "kind": "exploratory_walk", "day": "2026-09-15", "area": "quartier de la Gare",
            "residents": "12", "police": "2", "associations": "", **extra}


def test_a_chef_records_a_walk_and_its_reports(settings: Settings) -> None:
    sent: list[tuple[list[Incident], PreventionEvent]] = []

    async def scenario(client: Client) -> None:
        assert (await log_in(client, "voirie-montveille")).status == 303
        assert (await client.get("/agence/prevention")).status == 403  # an agent
        await client.post("/agence/deconnexion", data={"csrf_token": await csrf_of(client, "/agence/")})
        client.session.cookie_jar.clear()
        assert (await log_in(client, "chef-montveille")).status == 303
        page = await (await client.get("/agence/prevention")).text()
        assert "Montveille" in page and "Saint-Méen" not in page and 'lang="fr"' in page
        token = await csrf_of(client, "/agence/prevention")
        form = form_of(page, token, **{"r1-category": "broken_streetlight", "r1-address": "rue de la Gare",
                                       "r1-description": "trois lampadaires éteints",
                                       "r3-category": "graffiti", "r3-address": "passage du Moulin"})
        assert (await client.post("/agence/prevention", data={**form, "csrf_token": "forged"})).status == 400
        assert (await client.post("/agence/prevention", data={**form, "municipality": "35402"})).status == 400
        assert (await client.post("/agence/prevention", data={**form, "residents": "-3"})).status == 400
        bad_report = {**form, "r1-category": "nonsense"}
        assert (await client.post("/agence/prevention", data=bad_report)).status == 400
        meeting = {**form, "kind": "neighbourhood_meeting"}  # only a walk carries reports
        assert (await client.post("/agence/prevention", data=meeting)).status == 400
        assert sent == []
        ok = await client.post("/agence/prevention", data=form)
        assert ok.status == 200 and "14 participant(s), 2 signalement(s)" in await ok.text()
        assert (await client.post("/agence/prevention", data=form)).status == 200  # sent twice

    def publish(reports: list[Incident], event: PreventionEvent) -> bool:
        sent.append((reports, event))
        return True

    run_desk(settings, DeskBook(), scenario, extra_routes=prevention_routes(PLAN, publish))
    (reports, event), (again, event2) = sent
    # The same form twice: the same action and the same report ids (the store keeps one each).
    assert event2.action.id == event.action.id and [r.id for r in again] == [r.id for r in reports]
    a = event.action
    assert (a.municipality, a.kind.value, str(a.date), a.area) == (
        "35401", "exploratory_walk", "2026-09-15", "quartier de la Gare")
    assert {k.value: n for k, n in a.participants.items()} == {"residents": 12, "police": 2}
    assert [r.category.value for r in reports] == ["broken_streetlight", "graffiti"]
    assert all(r.channel is Channel.neighbourhood_representative and r.municipality == "35401"
               for r in reports)
    assert reports[0].address == "rue de la Gare" and "trois lampadaires" in reports[0].description
    assert event.report_ids == tuple(str(r.id) for r in reports)

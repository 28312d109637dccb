"""A chef of a town's safeguard cell activates its PCS chain from the desk (no broker: the
publish function records what would go on the cascade topic)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "desk"))
from desk_helpers import Client, csrf_of, log_in, run_desk

from veille.config import Settings
from veille.pcs import events
from veille.pcs.cascade import activation_id
from veille.pcs.plan import PCS_FILE, read_plan
from veille.producers.desk.book import DeskBook
from veille.producers.desk.pcs import pcs_routes

PLAN = read_plan(Path(Settings().territory_dir) / PCS_FILE)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def test_a_chef_activates_an_agent_cannot(settings: Settings) -> None:
    published: list[events.ActivationEvent] = []

    async def scenario(client: Client) -> None:
        assert (await log_in(client, "voirie-montveille")).status == 303
        assert (await client.get("/agence/pcs")).status == 403  # an agent
        await client.post("/agence/deconnexion", data={"csrf_token": await csrf_of(client, "/agence/")})
        client.session.cookie_jar.clear()
        assert (await log_in(client, "chef-montveille")).status == 303
        page = await (await client.get("/agence/pcs")).text()
        assert "Montveille" in page and "Saint-Méen" not in page  # its own town only
        token = await csrf_of(client, "/agence/pcs")
        request_id = re.search(r'name="request_id" value="([^"]+)"', page)
        assert request_id
        form: dict[str, Any] = {"csrf_token": token, "request_id": request_id.group(1),
                                "municipality": "35401", "reason": "Canicule : passez voir vos voisins"}
        bad = await client.post("/agence/pcs", data={**form, "csrf_token": "forged"})
        assert bad.status == 400 and published == []
        other = await client.post("/agence/pcs", data={**form, "municipality": "35402"})
        assert other.status == 400 and published == []  # not a town of its cell
        ok = await client.post("/agence/pcs", data=form)
        assert ok.status == 200 and "3 référent(s) prévenu(s)" in await ok.text()
        again = await client.post("/agence/pcs", data=form)  # the same form sent twice
        assert again.status == 200

    def publish(event: events.ActivationEvent) -> bool:
        published.append(event)
        return True

    run_desk(settings, DeskBook(), scenario, extra_routes=pcs_routes(PLAN, publish))
    first = published[0]
    # The same form twice: the same activation (the worker starts it once).
    assert [e.activation for e in published] == [activation_id("35401", first.source_id)] * 2
    assert first.source == "manual" and first.municipality == "35401"
    assert first.representatives == ("r-35401-centre", "r-35401-gare", "r-35401-residence-du-parc")
    assert first.headline == "Canicule : passez voir vos voisins"

"""The Open311 tracker against a real GeoReport v2 server: a token becomes a request id, every
change mySociety's updates report is published in order, then the current status; a closed request
is forgotten; what was tracked survives a restart (its state file). The status updates go to a
recording producer here (the broker side is tests/deliver/test_deliverer.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from deliver_helpers import KEY, GeoReport, dispatch, serve, settings

from veille.config import Settings
from veille.deliver.config import DeliveryConfig, Open311Delivery
from veille.deliver.engine import Job
from veille.deliver.open311_client import Open311Client
from veille.deliver.tracker import Open311Tracker
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, IncidentStatus, StatusUpdate
from veille.territory import load_territory

AGENCY = "mairie-35402"


class Recorder:
    def __init__(self) -> None:
        self.updates: list[StatusUpdate] = []

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.updates.append(StatusUpdate.decode(value))

    def flush(self, timeout: float) -> int:
        return 0


class Engine:
    """What the tracker asks of the engine: the body's Open311 client."""

    def __init__(self, client: Open311Client) -> None:
        self.client = client

    def open311(self, agency: Any) -> Open311Client:
        return self.client


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILLE_TEST_O311_KEY", KEY)


def test_tokens_updates_and_statuses_come_back_in_order(tmp_path: Path) -> None:
    server = GeoReport(token_mode=True, offers_updates=True)

    async def scenario() -> tuple[list[StatusUpdate], list[StatusUpdate], int]:
        async with serve(server.app()) as base:
            config = Open311Delivery.model_validate({
                "base_url": base + "/open311/v2", "api_key": {"env": "VEILLE_TEST_O311_KEY"},
                "service_codes": {"damaged_road": "VOI-02"}, "request_updates": True})
            agency = dataclasses.replace(load_territory().agencies[AGENCY],
                                         delivery=DeliveryConfig(open311=config))
            territory = cast(Any, SimpleNamespace(agencies={AGENCY: agency}))
            hub = Settings(state_dir=tmp_path)
            client = Open311Client(config, settings())
            recorder = Recorder()
            tracker = Open311Tracker(hub, territory, settings(open311_poll_seconds=60), cast(Any, recorder))
            tracker._engine = cast(Any, Engine(client))
            d = dispatch(agency_id=AGENCY)
            attempt = await client.deliver(d)
            assert attempt.outcome is DeliveryOutcome.delivered and attempt.reference
            assert attempt.reference.startswith("token:")  # the endpoint answered a token
            job = Job(d, agency, ("t", 0, 0), {DeliveryMethod.open311})
            await tracker.delivered(job, DeliveryMethod.open311, attempt)
            (sid,) = server.requests
            # The body works on it: two changes since the last poll, reported by its updates.
            now = dt.datetime.now(dt.UTC)
            server.updates += [
                {"update_id": 1, "service_request_id": int(sid), "status": "in_progress",
                 "updated_datetime": (now - dt.timedelta(seconds=30)).isoformat()},
                {"update_id": 2, "service_request_id": int(sid), "status": "open",
                 "updated_datetime": (now - dt.timedelta(seconds=40)).isoformat()},
            ]
            server.requests[sid]["status"] = "in_progress"
            assert await tracker.poll() == 2  # open (acknowledged), then in progress (on site)
            first = list(recorder.updates)
            # A restarted deliverer knows what it follows (the state file); the body closes it.
            again = Open311Tracker(hub, territory, settings(open311_poll_seconds=60), cast(Any, recorder))
            again._engine = cast(Any, Engine(client))
            server.requests[sid]["status"] = "closed"
            assert await again.poll() == 1
            assert await again.poll() == 0  # forgotten once closed
            await client.close()
            return first, recorder.updates[len(first):], len(again.file.load())

    first, later, left = asyncio.run(scenario())
    assert [u.status for u in first] == [IncidentStatus.acknowledged, IncidentStatus.on_site]
    assert [u.status for u in later] == [IncidentStatus.resolved]
    for update in first + later:
        assert update.agency_id == AGENCY and update.dispatch_id is not None
    assert len({u.id for u in first + later}) == 3 and left == 0

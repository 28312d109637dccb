"""Residents answered with their case's status, on the real broker: the known cases of
tests/case_helpers.py published on <prefix>.routed as the grouping worker and the router write
them (keyed by incident id: a case's reports and status updates on several partitions), read by
the intake's read model; Open311 ``GET requests/{id}`` and ``/suivi/<reference>`` of a report
that only joined the case answer with the case's state, the split report with its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from case_helpers import Cases
from confluent_kafka import Producer
from producer_helpers import isolated_settings
from sink_helpers import now_ms

from veille.notify.consent import ConsentWriter
from veille.notify.reference import reference
from veille.notify.settings import NotifySettings
from veille.producers import open311, tracking
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.open311_requests import RequestBook
from veille.producers.sdk import Publisher
from veille.schemas.models import CaseSplit, StatusUpdate
from veille.territory import load_territory
from veille.topics import Topics

pytestmark = pytest.mark.kafka
KEY = "case-pages-key"
V2 = "/open311/v2"


def test_open311_and_tracking_answer_with_the_case(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "casepages")
    cases = Cases(now_ms() - timedelta(hours=2))
    producer = Producer(s.kafka_client_config())
    for rec in [*cases.routed(), cases.status(cases.a2, "pm-35402", "acknowledged", 8),
                cases.status(cases.a1, "siba", "on_site", 40), cases.split(),
                cases.status(cases.a4, "siba", "resolved", 30)]:
        key = rec.incident_id if isinstance(rec, StatusUpdate | CaseSplit) else rec.id  # type: ignore[union-attr]
        producer.produce(Topics(s.topic_prefix).routed, key=key.bytes, value=rec.encode())
    assert producer.flush(10) == 0

    keys = KeyStore(s.state_dir / f"keys-{uuid.uuid4().hex[:6]}.json")
    _, token = keys.issue("appli", municipalities=["35401", "35402"])
    config = replace(intake_config(s, keys), ack_timeout=10)
    ref = {i: reference(KEY, str(i)) for i in (cases.a3, cases.a4, cases.u1)}

    async def main() -> None:
        publisher = Publisher(s, client_id="test-case-pages", known_municipalities={"35401", "35402"})
        app = make_app(publisher, config)
        territory = load_territory()
        book = RequestBook(s, reference=lambda i: reference(KEY, i))
        open311.register(app, territory, book)
        notify = NotifySettings(reference_key=KEY, public_base_url="https://veille.example.fr")
        tracking.register(app, book, ConsentWriter(s, "test-case-consents"), notify, territory)
        async with TestClient(TestServer(app)) as client:
            params = {"api_key": token}
            deadline = time.monotonic() + 30
            while not book.caught_up.is_set():
                assert time.monotonic() < deadline, "the read model never caught up"
                await asyncio.sleep(0.2)
            # a3 was never dispatched to anyone (an update for both bodies): it answers with case A's
            # state, on site (the syndicate on a1's dispatch, a record on another partition).
            (a3,) = await (await client.get(f"{V2}/requests/{cases.a3}.json", params=params)).json()
            assert a3["status"] == "open" and a3["status_notes"] == "Intervention en cours"
            (a4,) = await (await client.get(f"{V2}/requests/{cases.a4}.json", params=params)).json()
            assert a4["status"] == "closed" and a4["status_notes"] == "Résolu"  # split: its own
            (u1,) = await (await client.get(f"{V2}/requests/{cases.u1}.json", params=params)).json()
            assert u1["status"] == "open" and u1["status_notes"] != "Intervention en cours"

            page = await (await client.get(f"/suivi/{ref[cases.a3]}")).text()
            assert "État actuel : Intervention en cours" in page
            assert "fait partie de 3 signalements du même lieu" in page  # a1, a2, a3 (a4 split out)
            assert "Pris en compte par le service compétent" in page  # the case's step, from a2
            page = await (await client.get(f"/suivi/{ref[cases.a4]}")).text()
            assert "État actuel : Résolu" in page and "signalements du même lieu" not in page
            page = await (await client.get(f"/suivi/{ref[cases.u1]}")).text()
            assert "signalements du même lieu" not in page

    asyncio.run(main())

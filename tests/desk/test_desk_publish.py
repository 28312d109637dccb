"""The desk on the real broker: its read model fed from the dispatch topics, and its actions
published as StatusUpdates through the gate (acknowledged), once per action, in the session's
body's name; the router forwards them as an agency's own."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from desk_helpers import Client, act, log_in, routed_dispatch, run_desk
from producer_helpers import MUNICIPALITIES, consume, message_count

from veille.config import Settings
from veille.kafka import Message
from veille.producers.desk.book import DeskBook
from veille.producers.desk.feed import DeskFeed
from veille.schemas.models import Dispatch, IncidentStatus, StatusUpdate
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.topics import Topics, ensure_topics, topic_specs

AGENCIES = ("mairie-35401", "mairie-35402")
pytestmark = pytest.mark.kafka


@pytest.fixture
def settings(kafka: Any, tmp_path: Any) -> Settings:
    base: Settings = kafka.settings
    s = base.model_copy(update={"topic_prefix": f"tdesk{uuid.uuid4().hex[:8]}", "state_dir": tmp_path,
                                "bootstrap_servers": kafka.bootstrap})
    ensure_topics(AdminClient(s.kafka_client_config()), topic_specs(s, MUNICIPALITIES, AGENCIES))
    return s


def _write(settings: Settings, dispatches: list[Dispatch]) -> None:
    producer = Producer(settings.kafka_client_config())
    topics = Topics(settings.topic_prefix)
    for d in dispatches:
        producer.produce(topics.dispatch(d.agency_id), d.encode(), key=d.event_id.encode())
    assert producer.flush(15) == 0


def test_the_feed_reads_each_body_s_dispatches(settings: Settings) -> None:
    mine, theirs = routed_dispatch(settings), routed_dispatch(settings, agency="mairie-35402")
    _write(settings, [mine, theirs])
    book = DeskBook()
    feed = DeskFeed(book, settings, AGENCIES)
    feed.start()
    try:
        assert book.caught_up.wait(30)
        assert [e.id for e in book.visible("mairie-35401")] == [str(mine.id)]
        assert [e.id for e in book.visible("mairie-35402")] == [str(theirs.id)]
        later = routed_dispatch(settings)  # arrives while the desk runs
        _write(settings, [later])
        deadline = time.monotonic() + 20
        while book.one("mairie-35401", str(later.id)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert book.one("mairie-35401", str(later.id)) is not None
    finally:
        feed.stop()


def test_actions_are_published_once_in_the_body_s_name(settings: Settings) -> None:
    mine, other = routed_dispatch(settings), routed_dispatch(settings)
    theirs = routed_dispatch(settings, agency="mairie-35402")
    book = DeskBook()
    for d in (mine, other, theirs):
        book.apply(d)
    book.caught_up.set()
    action = str(uuid.uuid4())

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-montveille")
        # A forged agency field is not the form's: the update is in the session's body's name.
        resp = await act(client, [str(mine.id), str(other.id)], "acknowledged", action_id=action,
                         agency_id="mairie-35402")
        body = await resp.json()
        assert resp.status == 200, body
        assert sorted(body["done"]) == sorted([str(mine.id),
                                               str(other.id)]) and "Pris en compte" in body["message"]
        # The same action again (offline queue, double click): answered done, not published again.
        resp = await act(client, [str(mine.id), str(other.id)], "acknowledged", action_id=action)
        assert resp.status == 200 and len((await resp.json())["done"]) == 2
        # Shown at once (read-your-writes), before the router's copy comes back.
        page = await (await client.get(f"/agence/dispatches/{mine.id}")).text()
        assert "Pris en compte (" in page
        # The plain form (no script): back to the dispatch's page, which confirms it.
        resp = await act(client, [str(mine.id)], "rejected", json=False, reason="wrong_location",
                         lat="48.1601", lon="-1.7101", note="Plutôt devant la mairie")
        assert resp.status == 303
        assert resp.headers["Location"] == f"/agence/dispatches/{mine.id}?fait=rejected"
        page = await (await client.get(resp.headers["Location"])).text()
        assert "est transmis au centre de veille" in page
        # Another body's dispatch in the selection: nothing at all is published.
        resp = await act(client, [str(other.id), str(theirs.id)], "resolved")
        assert resp.status == 404

    run_desk(settings, book, scenario, publisher=True)
    topics = Topics(settings.topic_prefix)
    msgs = [Message.of(m) for m in consume(settings, [topics.status], 3)]
    assert message_count(settings, [topics.status]) == 3
    updates = [StatusUpdate.decode(m.value) for m in msgs]
    assert {u.agency_id for u in updates} == {"mairie-35401"}
    acks = [u for u in updates if u.status == IncidentStatus.acknowledged]
    assert sorted(str(u.dispatch_id) for u in acks) == sorted([str(mine.id), str(other.id)])
    assert acks[0].at == acks[1].at
    (refusal,) = [u for u in updates if u.status == IncidentStatus.rejected]
    assert refusal.reason is not None and refusal.reason.value == "wrong_location"
    assert refusal.corrected_location is not None and refusal.corrected_location.lat == 48.1601
    assert refusal.note == "Plutôt devant la mairie" and str(refusal.incident_id) == mine.event_id
    # Exactly as an agency's own: the router checks each dispatch id and forwards them.
    router = Router(load_territory(), topics, pseudonym_key=b"k",
                    dispatch_key=settings.dispatch_key.get_secret_value().encode())
    for m in msgs:
        outcome = router.process(m)
        assert outcome.kind == OutcomeKind.forwarded, outcome

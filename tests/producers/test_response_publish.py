"""The e-mails' response page publishes StatusUpdates on the real broker (aiohttp in this process).

The updates are read back from the status topic and handed to the router, which forwards them
as it forwards an agency's own (the dispatch id proves who speaks), and to the sink's rows,
which keep no free text.
"""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from producer_helpers import consume, isolated_settings, message_count
from response_helpers import AGENCY, Client, answer, link_path, routed_dispatch, run_intake

from veille.config import Settings
from veille.deliver.links import UsedLinks
from veille.kafka import Message
from veille.schemas.models import IncidentStatus, StatusUpdate
from veille.sinks.rows import to_rows
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.topics import Topics


@pytest.fixture(scope="module")
def base(kafka: Any) -> Settings:
    return kafka.settings


def _updates(settings: Settings, count: int) -> list[tuple[Message, StatusUpdate]]:
    msgs = consume(settings, [Topics(settings.topic_prefix).status], count)
    assert len(msgs) == count
    return [(Message.of(m), StatusUpdate.decode(m.value())) for m in msgs]


def test_answers_are_published_once_per_status(base: Settings, tmp_path: Path) -> None:
    settings = isolated_settings(base, "respond")
    used = UsedLinks(tmp_path / "used.json", timedelta(days=8))
    d = routed_dispatch(settings)
    path = link_path(d)
    free_text = "Voir le syndicat des eaux, M. Durand au 06 12 34 56 78"

    async def scenario(client: Client) -> None:
        resp = await answer(client, path, "resolved")
        assert resp.status == 303, await resp.text()
        assert resp.headers["Location"] == path + "?transmis=resolved"
        page = html.unescape(await (await client.get(resp.headers["Location"])).text())
        assert "Réponse transmise" in page and "Votre réponse « Résolu » a été transmise" in page
        # The same link, the same status: refused (replayed), and nothing more published.
        resp = await answer(client, path, "resolved")
        assert resp.status == 409 and "déjà été transmise" in html.unescape(await resp.text())
        # Another status with the same link: accepted once.
        resp = await answer(client, path, "rejected", reason="other_body", detail=free_text)
        assert resp.status == 303, await resp.text()
        resp = await answer(client, path, "rejected", reason="outside_area")
        assert resp.status == 409
        # Refused answers publish nothing: forged, for another dispatch, without the CSRF token.
        token = path.rsplit("/", 1)[1]
        other = routed_dispatch(settings)
        for url in (f"/reponse/{d.id}/{token[:-4]}xxxx", f"/reponse/{other.id}/{token}"):
            assert (await client.post(url, data={"status": "on_site"})).status == 403
        resp = await client.post(path, data={"status": "on_site"})
        assert resp.status == 400 and "La page a expiré" in html.unescape(await resp.text())

    run_intake(settings, used, scenario)
    (m1, resolved), (m2, rejected) = _updates(settings, 2)
    for update in (resolved, rejected):
        assert update.dispatch_id == d.id and update.agency_id == AGENCY
        assert update.incident_id == uuid.UUID(d.event_id)
        assert abs(update.at - datetime.now(UTC)) < timedelta(minutes=1)
    assert resolved.status == IncidentStatus.resolved and resolved.note is None
    assert rejected.status == IncidentStatus.rejected
    assert rejected.note == f"Pas de notre ressort : Relève d'un autre service ou organisme. {free_text}"
    assert message_count(settings, [Topics(settings.topic_prefix).status]) == 2
    assert used.answered(d.id) == {IncidentStatus.resolved, IncidentStatus.rejected}

    # Exactly as an agency would: the router forwards both (their dispatch id is the one it
    # derives), and the sink's rows of the forwarded updates hold no free text.
    topics = Topics(settings.topic_prefix)
    router = Router(load_territory(), topics, pseudonym_key=b"k",
                    dispatch_key=settings.dispatch_key.get_secret_value().encode())
    forwarded = []
    for msg in (m1, m2):
        outcome = router.process(msg)
        assert outcome.kind == OutcomeKind.forwarded, outcome
        (out,) = outcome.outputs
        assert out.topic == topics.routed
        forwarded.append(StatusUpdate.decode(out.value))
    rows = to_rows(forwarded, datetime.now(UTC))["status_events"]
    assert rows.column("status").to_pylist() == ["resolved", "rejected"]
    assert "note" not in rows.column_names and "Durand" not in str(rows.to_pylist())


def test_a_failed_publish_gives_the_status_back(base: Settings, tmp_path: Path) -> None:
    """A dispatch to an agency the publisher does not know is refused before Kafka: the
    answer is not spent, nothing is published, the page says what to do."""
    settings = isolated_settings(base, "respfail")
    used = UsedLinks(tmp_path / "used.json", timedelta(days=8))
    d = routed_dispatch(settings, agency="not-in-the-territory")

    async def scenario(client: Client) -> None:
        resp = await answer(client, link_path(d), "acknowledged")
        assert resp.status == 422 and "Le hub a refusé cette réponse" in html.unescape(await resp.text())

    run_intake(settings, used, scenario)
    assert used.answered(d.id) == set()
    assert message_count(settings, [Topics(settings.topic_prefix).status]) == 0

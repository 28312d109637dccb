"""The desk's read model, accounts and actions without a broker: who sees what, in which order,
with which status, deadline and delivery state; what an action publishes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from desk_helpers import filled_book, receipt, routed_dispatch, update
from multidict import MultiDict

from veille.config import Settings
from veille.producers.desk.accounts import AccountStore
from veille.producers.desk.actions import Sent, status_update, update_id
from veille.producers.desk.book import DeskBook, Filters, parse_filters
from veille.producers.desk.feed import apply_bytes
from veille.producers.desk.present import deadline, present
from veille.schemas.enums import IncidentStatus
from veille.schemas.models import RoutedIncident, StatusUpdate
from veille.territory import load_territory
from veille.topics import Topics
from veille.web.identity import Identity


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def test_a_body_sees_only_its_own_dispatches(settings: Settings) -> None:
    book, d = filled_book(settings)
    mine = book.visible("mairie-35401")
    assert [e.id for e in mine] == [str(d["mine"].id)]
    assert [e.id for e in book.visible("mairie-35402")] == [str(d["theirs"].id)]
    # Asking by id for another body's dispatch (or a made-up one) gives nothing, as unknown.
    assert book.one("mairie-35401", str(d["theirs"].id)) is None
    assert book.one("mairie-35401", str(uuid.uuid4())) is None
    assert book.visible("mairie-35401", [str(d["theirs"].id), str(d["mine"].id)]) == mine
    assert book.visible("nobody") == []


def test_other_bodies_of_the_same_incident_are_shown(settings: Settings) -> None:
    book, d = filled_book(settings)
    entry = book.one("mairie-35401", str(d["mine"].id))
    assert entry is not None and book.others(entry) == ["syndicat-eaux-veille"]
    # The routing record names them too (a body whose dispatch this intake has not read yet).
    now = datetime.now(UTC)
    book.apply(RoutedIncident.model_validate({
        "id": d["mine"].event_id, "municipality": "35401", "category": "damaged_road", "severity": "severe",
        "channel": "app", "occurred_at": now, "reported_at": now, "routed_at": now,
        "dispatches": [{"agency_id": a, "service": "public_works", "rule": "r", "cross_boundary": False}
                       for a in ("mairie-35401", "pm-35401")]}))
    assert book.others(entry) == ["pm-35401", "syndicat-eaux-veille"]


def test_statuses_move_a_dispatch_on_by_their_time_and_only_its_own_body_s(settings: Settings) -> None:
    book, d = filled_book(settings)
    mine = d["mine"]
    now = datetime.now(UTC).replace(microsecond=0)
    book.apply(update(mine, "resolved", at=now))
    book.apply(update(mine, "acknowledged", at=now - timedelta(minutes=1)))  # late, older: history only
    entry = book.one("mairie-35401", str(mine.id))
    assert entry is not None and entry.status == IncidentStatus.resolved and entry.closed
    assert entry.acknowledged_at == now - timedelta(minutes=1) and entry.resolved_at == now
    # Another body's update naming this dispatch changes nothing.
    book.apply(update(mine, "rejected", agency_id="mairie-35402", at=now + timedelta(minutes=1)))
    assert book.one("mairie-35401", str(mine.id)).status == IncidentStatus.resolved
    # The same update twice (acted on the desk, then forwarded by the router) is applied once.
    again = update(mine, "on_site", at=now + timedelta(minutes=2))
    book.acted(again)
    book.apply(again)
    assert len(book.one("mairie-35401", str(mine.id)).history) == 4


def test_updates_and_receipts_read_before_their_dispatch_are_kept(settings: Settings) -> None:
    book = DeskBook()
    d = routed_dispatch(settings)
    book.apply(update(d, "acknowledged"))
    book.apply(receipt(d, "retry"))
    book.apply(d)
    entry = book.one(d.agency_id, str(d.id))
    assert entry is not None and entry.status == IncidentStatus.acknowledged
    assert entry.delivery is not None and entry.delivery.value == "retry"
    book.apply(receipt(d, "delivered"))
    book.apply(receipt(d, "failed"))  # delivered once is delivered
    assert book.one(d.agency_id, str(d.id)).delivery.value == "delivered"


def test_most_urgent_and_newest_first_and_filters(settings: Settings) -> None:
    book = DeskBook()
    now = datetime.now(UTC).replace(microsecond=0)
    old_critical = routed_dispatch(settings, severity="critical", reported_at=now - timedelta(hours=2),
                                   occurred_at=now - timedelta(hours=3))
    new_minor = routed_dispatch(settings, severity="minor", category="graffiti")
    old_minor = routed_dispatch(settings, severity="minor", category="graffiti",
                                reported_at=now - timedelta(hours=1),
                                occurred_at=now - timedelta(hours=3))
    done = routed_dispatch(settings, severity="critical")
    for d in (new_minor, done, old_minor, old_critical):
        book.apply(d)
    book.apply(update(done, "resolved"))
    order = [e.id for e in book.visible("mairie-35401", filters=Filters(state="all"))]
    assert order == [str(x.id) for x in (old_critical, new_minor, old_minor, done)]
    assert [e.id for e in book.visible("mairie-35401", filters=Filters())] == order[:3]
    assert [e.id for e in book.visible("mairie-35401", filters=Filters(state="closed"))] == [str(done.id)]
    query = MultiDict([("etat", "tous"), ("categorie", "graffiti"), ("categorie", "<script>"), ("gravite",
                                                                                                "minor")])
    filters = parse_filters(query, {"graffiti", "damaged_road"})
    assert filters == Filters(state="all", categories=frozenset({"graffiti"}),
                              severities=frozenset({"minor"}))
    assert [e.id for e in book.visible("mairie-35401", filters=filters)] == [str(new_minor.id),
                                                                             str(old_minor.id)]
    assert parse_filters(MultiDict([("etat", "n'importe")]), set()) == Filters()


def test_alerts_and_garbage_are_left_out(settings: Settings) -> None:
    book = DeskBook()
    topics = Topics(settings.topic_prefix)
    apply_bytes(book, topics, topics.dispatch("mairie-35401"), b"\x00garbage")
    apply_bytes(book, topics, topics.routed, None)
    assert len(book) == 0 and book.skipped == 2
    d = routed_dispatch(settings)
    apply_bytes(book, topics, topics.dispatch("mairie-35401"), d.encode())
    apply_bytes(book, topics, topics.routed, update(d, "on_site").encode())
    assert book.one("mairie-35401", str(d.id)).status == IncidentStatus.on_site


def test_deadlines_and_labels(settings: Settings) -> None:
    now = datetime.now(UTC)
    assert deadline(None, None, now).state == "none"
    assert deadline(now + timedelta(hours=3, minutes=5), None, now).label == "Reste 3 h 05"
    assert deadline(now - timedelta(minutes=30), None, now).label == "Dépassé de 30 min"
    assert deadline(now, now - timedelta(minutes=1), now).state == "done"
    assert deadline(now, now + timedelta(minutes=1), now).state == "late"
    book, d = filled_book(settings)
    entry = book.one("mairie-35401", str(d["mine"].id))
    assert entry is not None
    row = present(entry, load_territory(), book.others(entry), now)
    assert row["town"] == "Montveille" and row["others"] == ["Syndicat mixte des eaux pluviales de la Veille"]
    assert row["category_label"] == "Chaussée dégradée" and row["status_label"] == "Reçu"
    assert row["ack"]["state"] in ("running", "late", "none")


def test_accounts_issue_rotate_revoke_end_sessions(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "a.json")
    account, password = store.issue("Astreinte", agency_id="mairie-35401", role="chef")
    assert account.login.startswith("mairie-35401-") and store.authenticate(account.login, password)
    identity = account.identity()
    assert identity.agency_id == "mairie-35401" and identity.role.value == "chef"
    assert store.still_valid(identity)
    with pytest.raises(ValueError):
        store.issue("x", agency_id="mairie-35401", role="admin")
    # A forged identity (another body, a higher role) with a real account's id is not valid.
    assert not store.still_valid(identity.model_copy(update={"agency_id": "mairie-35402"}))
    store.rotate(account.id)
    assert not store.still_valid(identity)
    fresh = store.get(account.id)
    assert fresh is not None and store.still_valid(fresh.identity())
    store.revoke(account.login)
    assert not store.still_valid(fresh.identity()) and store.authenticate(account.login, password) is None


def test_an_action_s_updates_and_sending_once(settings: Settings) -> None:
    book, d = filled_book(settings)
    entry = book.one("mairie-35401", str(d["mine"].id))
    assert entry is not None
    me = Identity(agency_id="mairie-35401", role="agent", subject="account:x", via="password")
    action, at = str(uuid.uuid4()), datetime.now(UTC)
    data = status_update(me, entry, action_id=action, status=IncidentStatus.rejected, at=at,
                         reason="wrong_location", corrected={"lat": 48.1,
                                                             "lon": -1.7}, note="Plutôt rue Haute")
    parsed = StatusUpdate.model_validate(data)
    assert parsed.agency_id == "mairie-35401" and str(parsed.dispatch_id) == entry.id
    assert str(parsed.incident_id) == entry.incident_id and parsed.reason is not None
    assert parsed.corrected_location is not None and parsed.id == uuid.UUID(update_id(action, entry.id))
    # Not a refusal: no reason nor corrected place, whatever the form said.
    ack = status_update(me, entry, action_id=action, status=IncidentStatus.acknowledged, at=at,
                        reason="duplicate",
                        corrected={"lat": 1.0, "lon": 1.0})
    assert ack["reason"] is None and ack["corrected_location"] is None
    other = Identity(agency_id="mairie-35402", role="agent", subject="account:y", via="password")
    with pytest.raises(PermissionError):
        status_update(other, entry, action_id=action, status=IncidentStatus.resolved, at=at)
    sent = Sent()
    first = sent.first_seen(action)
    assert sent.first_seen(action) == first and not sent.done(action, entry.id)
    sent.mark(action, entry.id)
    assert sent.done(action, entry.id)

"""A case on the desk (docs/grouping.md, "What bodies receive"): one row per case, its reports
listed, a report split out of it; hostile ids publish nothing; on the broker the split goes
through the gate and the router forwards it."""

from __future__ import annotations

import html
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from desk_cases import case_of, split_of
from desk_helpers import Client, act, csrf_of, log_in, run_desk, update
from producer_helpers import MUNICIPALITIES, consume, message_count

from veille.config import Settings
from veille.kafka import Message
from veille.producers import metrics
from veille.producers.desk.book import DeskBook
from veille.producers.desk.feed import apply_bytes
from veille.schemas import codec
from veille.schemas.models import CaseSplit, IncidentStatus, StatusUpdate
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.topics import Topics, ensure_topics, topic_specs


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def test_updates_fold_into_the_case_s_dispatch_in_any_order(local: Settings) -> None:
    case = case_of(local, 4)
    theirs = case_of(local, 2, agency="mairie-35402")
    book = DeskBook()
    topics = Topics("t")
    # An update may be read before its case's dispatch (another partition of the topic).
    for d in (case[2], case[0], case[1], case[3], *theirs):
        apply_bytes(book, topics, topics.dispatch(d.agency_id), d.encode())
    (row,) = book.visible("mairie-35401")
    assert row.id == str(case[0].id) and row.role == "opened"
    assert row.case_reports == 4 and row.severity == "critical" and len(row.positions) == 4
    assert [e.id for e in book.linked(row)] == [str(d.id) for d in case[1:]]  # oldest first
    # Updates are no rows and cannot be acted on as dispatches until split.
    assert book.visible("mairie-35401", [str(case[1].id)]) == []
    assert book.update("mairie-35401", str(case[1].id)) is not None
    assert book.update("mairie-35402", str(case[1].id)) is None  # another body's
    assert book.update("mairie-35401", str(case[0].id)) is None  # the case itself
    assert [e.id for e in book.visible("mairie-35402")] == [str(theirs[0].id)]


def test_a_split_report_is_a_dispatch_of_its_own(local: Settings) -> None:
    case = case_of(local, 3)
    book = DeskBook()
    for d in case:
        book.apply(d)
    forged = split_of(case[1], agency_id="mairie-35402")
    book.apply(forged)  # not this body's update: nothing changes
    assert len(book.visible("mairie-35401")) == 1
    book.apply(split_of(case[1]))
    rows = {e.id: e for e in book.visible("mairie-35401")}
    assert set(rows) == {str(case[0].id), str(case[1].id)} and rows[str(case[1].id)].split
    assert book.update("mairie-35401", str(case[1].id)) is None  # split once
    # The case's acknowledgement is the case's; the split report is answered on its own id.
    book.apply(update(case[0], "acknowledged"))
    assert book.one("mairie-35401", str(case[1].id)).status == IncidentStatus.received
    book.apply(update(case[1], "resolved"))
    assert book.one("mairie-35401", str(case[1].id)).status == IncidentStatus.resolved
    assert book.one("mairie-35401", str(case[0].id)).status == IncidentStatus.acknowledged
    # A split read before its update (routed and dispatch topics are read side by side).
    early = case_of(local, 2)
    other = DeskBook()
    other.apply(early[0])
    other.apply(split_of(early[1]))
    other.apply(early[1])
    assert len(other.visible("mairie-35401")) == 2


async def _split(client: Client, dispatch: str, *, token: str | None = None, page: str = "/agence/",
                 json: bool = True) -> Any:
    token = token if token is not None else await csrf_of(client, page)
    headers = {"Accept": "application/json"} if json else {}
    return await client.post("/agence/dossiers/scinder", headers=headers, allow_redirects=False,
                             data={"csrf_token": token, "action_id": str(uuid.uuid4()), "dispatch": dispatch})


def test_the_inbox_shows_one_row_per_case_and_hostile_splits_publish_nothing(local: Settings) -> None:
    """No gate on this app: anything that tried to publish would fail with a 500."""
    case, theirs = case_of(local, 5), case_of(local, 2, agency="mairie-35402")
    book = DeskBook()
    for d in (*case, *theirs):
        book.apply(d)
    book.caught_up.set()
    before = metrics.DESK.labels("not_theirs")._value.get()

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-montveille")
        inbox = await (await client.get("/agence/")).text()
        assert inbox.count('<tr data-id="') == 1 and "5 signalements liés" in inbox
        page = await (await client.get(f"/agence/dispatches/{case[0].id}")).text()
        assert "Signalements du dossier (5)" in page and page.count('action="/agence/dossiers/scinder"') == 4
        assert "Téléphone" in page and "Accueil de mairie" in page  # the reports' channels
        assert "Personne 1" not in page and "0600000001" not in page  # no update's contact on the case
        # Another body's update, the case's own dispatch, an update's page, garbage: nothing.
        for target in (str(theirs[1].id), str(case[0].id), str(uuid.uuid4())):
            resp = await _split(client, target)
            assert resp.status == 404, target
            assert (await resp.json())["done"] == []
        assert (await _split(client, "not-a-uuid")).status == 422
        assert (await client.get(f"/agence/dispatches/{theirs[0].id}")).status == 404
        assert (await client.get(f"/agence/dispatches/{case[1].id}")).status == 404  # folded, not a row
        # Acting on an update as if it were a dispatch: not found either.
        assert (await act(client, [str(case[1].id)], "acknowledged")).status == 404
        # No CSRF token, or another session's: refused before anything.
        assert (await _split(client, str(case[1].id), token="")).status == 400

    run_desk(local, book, scenario)
    assert metrics.DESK.labels("not_theirs")._value.get() - before == 4
    assert len(book.visible("mairie-35401")) == 1


AGENCIES = ("mairie-35401", "mairie-35402")


@pytest.fixture
def settings(kafka: Any, tmp_path: Any) -> Settings:
    base: Settings = kafka.settings
    s = base.model_copy(update={"topic_prefix": f"tcase{uuid.uuid4().hex[:8]}", "state_dir": tmp_path,
                                "bootstrap_servers": kafka.bootstrap})
    ensure_topics(AdminClient(s.kafka_client_config()), topic_specs(s, MUNICIPALITIES, AGENCIES))
    return s


def test_a_split_is_published_once_then_the_report_is_answered_on_its_own(settings: Settings) -> None:
    case = case_of(settings, 3)
    book = DeskBook()
    for d in case:
        book.apply(d)
    book.caught_up.set()

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-montveille")
        page = await (await client.get(f"/agence/dispatches/{case[0].id}")).text()
        token = html.unescape(re.findall(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)[-1])
        resp = await _split(client, str(case[2].id), token=token, json=False)
        assert resp.status == 303
        assert resp.headers["Location"] == f"/agence/dispatches/{case[2].id}?fait=scinde"
        page = await (await client.get(resp.headers["Location"])).text()
        assert "Le signalement a été scindé du dossier" in page and "Scindé du dossier" in page
        inbox = await (await client.get("/agence/")).text()
        assert inbox.count('<tr data-id="') == 2
        # Split already: a second split of it is refused, nothing more published.
        assert (await _split(client, str(case[2].id))).status == 404
        # Now a dispatch of its own: acknowledged on its own id.
        resp = await act(client, [str(case[2].id)], "acknowledged")
        assert resp.status == 200, await resp.text()

    run_desk(settings, book, scenario, publisher=True)
    topics = Topics(settings.topic_prefix)
    msgs = [Message.of(m) for m in consume(settings, [topics.status], 2)]
    assert message_count(settings, [topics.status]) == 2
    kinds = {codec.decode(m.value).record_type: m for m in msgs}
    split = CaseSplit.decode(kinds["CaseSplit"].value)
    assert (split.agency_id, str(split.dispatch_id), str(split.incident_id)) == (
        "mairie-35401", str(case[2].id), case[2].event_id)
    assert split.case_id == case[0].case.id
    ack = StatusUpdate.decode(kinds["StatusUpdate"].value)
    assert str(ack.dispatch_id) == str(case[2].id) and str(ack.incident_id) == case[2].event_id
    # The router forwards both as the body's own.
    router = Router(load_territory(), topics, pseudonym_key=b"k",
                    dispatch_key=settings.dispatch_key.get_secret_value().encode())
    for m in msgs:
        assert router.process(m).kind == OutcomeKind.forwarded


def test_a_split_is_publishable_only_when_named_by_the_desk(local: Settings) -> None:
    """The generic intake names its record types by route or "type": neither reaches CaseSplit."""
    from veille.producers.sdk import Rejected, validate

    split = split_of(case_of(local, 2)[1]).model_dump(mode="json")
    assert isinstance(validate(split, "CaseSplit"), CaseSplit)
    for named in ({**split, "type": "CaseSplit"}, {**split, "type": "casesplit"}):
        with pytest.raises(Rejected):
            validate(named)
    with pytest.raises(Rejected):
        validate(split, "StatusUpdate")
    with pytest.raises(Rejected):
        validate({**split, "dispatch_id": "nope"}, "CaseSplit")

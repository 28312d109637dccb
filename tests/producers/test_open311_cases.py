"""The Open311 read model answers every report of a case with the case's status, a split report
with its own (producers/open311_cases.py); pure, on the known cases of tests/case_helpers.py, in
the order the router writes them and in other orders (each partition of <prefix>.routed is read
in order, the partitions in any order)."""

from __future__ import annotations

import itertools
from datetime import timedelta

from case_helpers import Cases
from sink_helpers import now_ms

from veille.producers.open311_requests import RequestBook
from veille.schemas.models import IncidentStatus, Record


def book_of(records: list[Record]) -> RequestBook:
    book = RequestBook(reference=lambda i: f"ref-{i}")
    for rec in records:
        book.apply(rec)  # type: ignore[arg-type]
    return book


def status(book: RequestBook, iid: object) -> IncidentStatus:
    found = book.get(str(iid))
    assert found is not None
    return found.status


def test_every_report_of_a_case_answers_with_the_case() -> None:
    cases = Cases(now_ms() - timedelta(hours=3))
    routed = cases.routed()
    book = book_of(routed)
    assert {status(book, i) for i in (cases.a1, cases.a2, cases.a3, cases.a4)} == {IncidentStatus.received}
    # pm-35402 acknowledges a2 (its first dispatch of case A): every report of A is acknowledged.
    book.apply(cases.status(cases.a2, "pm-35402", "acknowledged", 8))
    a_all = (cases.a1, cases.a2, cases.a3, cases.a4)
    assert [status(book, i) for i in a_all] == [IncidentStatus.acknowledged] * 4
    assert status(book, cases.b1) == status(book, cases.u1) == IncidentStatus.received
    # The syndicate on site on a1 (the case's dispatch): on site everywhere in A.
    book.apply(cases.status(cases.a1, "siba", "on_site", 40))
    assert [status(book, i) for i in (cases.a2, cases.a3, cases.a4)] == [IncidentStatus.on_site] * 3
    a3 = book.by_reference(f"ref-{cases.a3}")
    assert a3 is not None and a3.case_reports == 4 and a3.id == str(cases.a3)
    assert [m.kind for m in a3.history] == ["received", "transmitted", "acknowledged", "on_site"]
    # a3 was reported 5 min after a1, the acknowledgement came at 8 min: shown as it happened.
    assert a3.history[2].at == cases.base + timedelta(minutes=8)

    # The syndicate splits a4 out: a4 answers with its own state (the syndicate's new dispatch).
    book.apply(cases.split())
    assert status(book, cases.a4) == IncidentStatus.received
    assert status(book, cases.a3) == IncidentStatus.on_site
    a1 = book.get(str(cases.a1))
    assert a1 is not None and a1.case_reports == 3
    book.apply(cases.status(cases.a4, "siba", "resolved", 30))
    assert status(book, cases.a4) == IncidentStatus.resolved
    assert status(book, cases.a3) == IncidentStatus.on_site  # the split report's answer is its own
    # Resolved by every body acting on A (the syndicate on a1, pm-35402 on a2): resolved for all.
    book.apply(cases.status(cases.a1, "siba", "resolved", 50))
    # pm-35402 only acknowledged: not resolved yet, no body on site any more.
    assert status(book, cases.a2) == IncidentStatus.acknowledged
    book.apply(cases.status(cases.a2, "pm-35402", "resolved", 55))
    assert [status(book, i) for i in (cases.a1, cases.a2, cases.a3)] == [IncidentStatus.resolved] * 3
    # Listing requests answers the same way (Open311 GET requests.json).
    listed = {r.id: r.status for r in book.query(
        municipalities=["35401", "35402"], categories=None, start=cases.base - timedelta(hours=1),
        end=cases.base + timedelta(hours=3), closed=None, closed_statuses=(), limit=100)}
    assert listed[str(cases.a3)] == IncidentStatus.resolved


def test_order_of_partitions_does_not_matter() -> None:
    """a1's, a2's and a3's records are on different partitions: any interleaving that keeps each
    report's own order gives the same answers, and the same histories (the case's steps in the
    order they happened, not the order they were read: the CI run where the on-site visit on a1
    was read before the acknowledgement of a2 and the acknowledgement vanished from a3's page)."""
    cases = Cases(now_ms() - timedelta(hours=3))
    routed = {r.id: r for r in cases.routed()}
    per_report = [
        [routed[cases.a1], cases.status(cases.a1, "siba", "on_site", 40)],
        [routed[cases.a2], cases.status(cases.a2, "pm-35402", "acknowledged", 8)],
        [routed[cases.a3]],
    ]
    answers = set()
    for order in itertools.permutations(range(3)):
        records: list[Record] = [r for n in order for r in per_report[n]]
        book = book_of(records)
        answers.add(tuple(status(book, i) for i in (cases.a1, cases.a2, cases.a3)))
        a3 = book.get(str(cases.a3))
        assert a3 is not None
        assert [m.kind for m in a3.history] == ["received", "transmitted", "acknowledged", "on_site"], order
        assert [m.at for m in a3.history[2:]] == [cases.base + timedelta(minutes=m) for m in (8, 40)]
    assert answers == {(IncidentStatus.on_site,) * 3}


def test_a_replayed_topic_gives_the_same_answers() -> None:
    cases = Cases(now_ms() - timedelta(hours=3))
    records = cases.records()
    once, twice = book_of(records), book_of(records + records)
    for iid in (cases.a1, cases.a2, cases.a3, cases.a4, cases.b2, cases.c1):
        a, b = once.get(str(iid)), twice.get(str(iid))
        assert a is not None and b is not None
        assert (a.status, a.history, a.case_reports) == (b.status, b.history, b.case_reports)
    assert status(once, cases.b2) == IncidentStatus.acknowledged
    assert status(once, cases.a4) == IncidentStatus.received  # split at +20: its own state

"""Response links: signed for one dispatch, expiring, each status answered once."""

from __future__ import annotations

import json
import stat
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deliver_helpers import dispatch

from veille.deliver.links import RESPONSE_STATUSES, LinkRefused, LinkSummary, ResponseLinks, UsedLinks
from veille.deliver.settings import DeliverySettings
from veille.schemas.models import EventType, IncidentStatus

KEY = "test-link-key"
WEEK = timedelta(days=7)


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_link_verifies_for_its_dispatch() -> None:
    links, d = ResponseLinks([KEY], WEEK), uuid.uuid4()
    claim = links.verify(links.token(d, "mairie-35401"), d)
    assert claim.dispatch_id == d and claim.agency_id == "mairie-35401"
    assert abs((claim.issued_at - datetime.now(UTC)).total_seconds()) < 5
    url = links.url("https://veille.example.fr/reponse/", d, "mairie-35401")
    assert url.startswith(f"https://veille.example.fr/reponse/{d}/")
    assert links.verify(url.rsplit("/", 1)[1], str(d)).dispatch_id == d


def test_forged_links_are_refused() -> None:
    links, d = ResponseLinks([KEY], WEEK), uuid.uuid4()
    token = links.token(d, "mairie-35401")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    other_key = ResponseLinks(["another key"], WEEK).token(d, "mairie-35401")
    head, _, tail = token.partition(".")
    retargeted = ResponseLinks([KEY], WEEK).token(uuid.uuid4(), "mairie-35401").partition(".")[0] + "." + tail
    for bad in (flipped, other_key, token[:-10], "", "abc", retargeted, head):
        with pytest.raises(LinkRefused) as err:
            links.verify(bad, d)
        assert err.value.reason == "forged", bad
        assert "n'est pas valide" in str(err.value)


def test_expired_links_are_refused() -> None:
    clock, d = Clock(), uuid.uuid4()
    links = ResponseLinks([KEY], WEEK, clock=clock)
    token = links.token(d, "a")
    clock.now += WEEK.total_seconds() - 60
    assert links.verify(token, d).dispatch_id == d
    clock.now += 120
    with pytest.raises(LinkRefused) as err:
        links.verify(token, d)
    assert err.value.reason == "expired" and "a expiré" in str(err.value)
    clock.now -= WEEK.total_seconds() + 3600  # signed "in the future": refused too
    with pytest.raises(LinkRefused) as err:
        links.verify(token, d)
    assert err.value.reason == "expired"


def test_a_link_cannot_answer_another_dispatch() -> None:
    links, d = ResponseLinks([KEY], WEEK), uuid.uuid4()
    token = links.token(d, "a")
    for other in (uuid.uuid4(), str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(LinkRefused) as err:
            links.verify(token, other)
        assert err.value.reason == "other_dispatch" and "autre signalement" in str(err.value)


def test_keys_rotate() -> None:
    d = uuid.uuid4()
    old = ResponseLinks(["old"], WEEK).token(d, "a")
    rotated = ResponseLinks(["old", "new"], WEEK)
    assert rotated.verify(old, d).dispatch_id == d
    assert ResponseLinks(["new"], WEEK).verify(rotated.token(d, "a"), d).dispatch_id == d
    with pytest.raises(LinkRefused):
        ResponseLinks(["new"], WEEK).verify(old, d)
    s = DeliverySettings(link_key="new", link_previous_keys="old")
    assert ResponseLinks.from_settings(s).verify(old, d).dispatch_id == d
    with pytest.raises(ValueError):
        ResponseLinks([""], WEEK)


def test_each_status_works_once_and_survives_a_restart(tmp_path: Path) -> None:
    links, d = ResponseLinks([KEY], WEEK), uuid.uuid4()
    token = links.token(d, "mairie-35401")
    used = UsedLinks.in_state_dir(tmp_path, DeliverySettings())
    assert used.path == tmp_path / "delivery" / "used-response-links.json"
    assert links.redeem(token, d, IncidentStatus.acknowledged, used).agency_id == "mairie-35401"
    with pytest.raises(LinkRefused) as err:
        links.redeem(token, d, IncidentStatus.acknowledged, used)
    assert err.value.reason == "used" and "déjà été transmise" in str(err.value)
    links.redeem(token, d, IncidentStatus.resolved, used)  # another status: once more
    again = UsedLinks(used.path, WEEK)  # another process, or after a restart
    assert again.used(d, IncidentStatus.acknowledged) and again.used(d, IncidentStatus.resolved)
    assert not again.used(d, IncidentStatus.on_site)
    with pytest.raises(LinkRefused):
        links.redeem(token, d, IncidentStatus.resolved, again)
    with pytest.raises(LinkRefused) as err:
        links.redeem(token, d, IncidentStatus.reopened, again)
    assert err.value.reason == "bad_status"
    assert set(RESPONSE_STATUSES) == {IncidentStatus.acknowledged, IncidentStatus.on_site,
                                      IncidentStatus.resolved, IncidentStatus.rejected}


def test_a_forged_or_expired_link_spends_nothing(tmp_path: Path) -> None:
    clock, d = Clock(), uuid.uuid4()
    links = ResponseLinks([KEY], WEEK, clock=clock)
    used = UsedLinks(tmp_path / "used.json", WEEK)
    with pytest.raises(LinkRefused):
        links.redeem(ResponseLinks(["x"], WEEK).token(d, "a"), d, IncidentStatus.resolved, used)
    token = links.token(d, "a")
    clock.now += 2 * WEEK.total_seconds()
    with pytest.raises(LinkRefused):
        links.redeem(token, d, IncidentStatus.resolved, used)
    assert not used.used(d, IncidentStatus.resolved) and not used.path.exists()


def test_the_used_file_is_private_and_released_on_a_failed_publish(tmp_path: Path) -> None:
    used, d = UsedLinks(tmp_path / "state" / "used.json", WEEK), uuid.uuid4()
    assert used.claim(d, IncidentStatus.on_site)
    assert stat.S_IMODE(used.path.stat().st_mode) == 0o600
    assert not used.claim(d, IncidentStatus.on_site)
    used.release(d, IncidentStatus.on_site)  # publishing the StatusUpdate failed: answer again
    assert used.claim(d, IncidentStatus.on_site)
    assert [p.name for p in used.path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_old_entries_are_forgotten_once_links_are_expired(tmp_path: Path) -> None:
    now = [datetime(2026, 3, 1, tzinfo=UTC)]
    used = UsedLinks(tmp_path / "used.json", WEEK, clock=lambda: now[0])
    old, new = uuid.uuid4(), uuid.uuid4()
    used.claim(old, IncidentStatus.resolved)
    now[0] += WEEK + timedelta(hours=1)
    used.claim(new, IncidentStatus.resolved)
    kept = json.loads(used.path.read_text())["used"]
    assert list(kept) == [f"{new}:resolved"]


def test_concurrent_claims_of_one_status_let_exactly_one_through(tmp_path: Path) -> None:
    used, d = UsedLinks(tmp_path / "used.json", WEEK), uuid.uuid4()
    others = [UsedLinks(used.path, WEEK) for _ in range(7)]  # separate objects: the file lock decides
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def claim(store: UsedLinks) -> None:
        barrier.wait()
        results.append(store.claim(d, IncidentStatus.resolved))

    threads = [threading.Thread(target=claim, args=(s,)) for s in (used, *others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_a_link_carries_the_incident_and_a_summary_for_the_page() -> None:
    links = ResponseLinks([KEY], WEEK)
    d = dispatch()
    url = links.for_dispatch("https://veille.example.fr/reponse/", d)
    assert url is not None and url.startswith(f"https://veille.example.fr/reponse/{d.id}/")
    claim = links.verify(url.rsplit("/", 1)[1], d.id)
    assert claim.incident_id == uuid.UUID(d.event_id) and claim.agency_id == d.agency_id
    assert claim.summary == LinkSummary("damaged_road", "severe", "35401",
                                        d.reported_at.replace(microsecond=0))
    # Nothing personal travels in the (signed, readable) token: no description, address, contact.
    payload = json.dumps(links._serializer.loads(url.rsplit("/", 1)[1]))
    for private in ("Jeanne", "0611223344", "rue de la Veille", "Nid-de-poule"):
        assert private not in payload
    alert = dispatch(event_type=EventType.alert, event_id="urn:oid:2.49.0.1.250.0.1")
    assert links.for_dispatch("https://x/reponse", alert) is None  # alerts take no status update


def test_links_without_incident_still_verify() -> None:
    links, d = ResponseLinks([KEY], WEEK), uuid.uuid4()
    claim = links.verify(links.token(d, "a"), d)
    assert claim.incident_id is None and claim.summary is None
    i = uuid.uuid4()
    assert links.verify(links.token(d, "a", i), d).incident_id == i
    bad = links._serializer.dumps({"d": d.hex, "a": "a", "i": "not an id"})
    with pytest.raises(LinkRefused) as err:
        links.verify(bad, d)
    assert err.value.reason == "forged"


def test_answered_lists_the_statuses_spent(tmp_path: Path) -> None:
    used, d = UsedLinks(tmp_path / "used.json", WEEK), uuid.uuid4()
    assert used.answered(d) == set()
    used.claim(d, IncidentStatus.acknowledged)
    used.claim(d, IncidentStatus.resolved)
    used.claim(uuid.uuid4(), IncidentStatus.on_site)
    assert used.answered(d) == {IncidentStatus.acknowledged, IncidentStatus.resolved}


def test_the_response_base_url_setting() -> None:
    assert DeliverySettings().response_base_url == ""
    s = DeliverySettings(response_base_url="https://veille.example.fr/reponse/")
    assert s.response_base_url == "https://veille.example.fr/reponse"
    for bad in ("ftp://x/reponse", "veille.example.fr/reponse", "https://u:p@x/reponse",
                "https://x/reponse?a=1", "https:///reponse"):
        with pytest.raises(ValueError):
            DeliverySettings(response_base_url=bad)

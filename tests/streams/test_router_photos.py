"""The router reads Incident v1, v2 and v3: a v3 report's photos reach the dispatched bodies (in the
dispatch's payload) and never the routing record, which is all the shared store keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from veille.config import Settings
from veille.kafka import Message
from veille.producers.simulator import Simulator
from veille.schemas import codec
from veille.schemas.models import Dispatch, Incident, PhotoRef, RoutedIncident
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.topics import Topics

TOPICS = Topics("veille")
NOW = datetime.now(UTC).replace(microsecond=0)
DIGEST = "5e" * 32


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_territory(Settings().territory_dir), TOPICS, pseudonym_key=b"k", dispatch_key=b"d",
                  clock=lambda: NOW)


def _incident() -> Incident:
    sim = Simulator(load_territory(Settings().territory_dir), seed=11, start=NOW - timedelta(hours=1))
    return sim.incident(category="blocked_drain").model_copy(update={"attachments": []})


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_incident_version_is_routed(router: Router, version: int) -> None:
    inc = _incident()
    value = inc.model_dump(mode="python") | ({"photos": [{"sha256": DIGEST}]} if version == 3 else {})
    data = codec.encode("Incident", value, version=version)
    assert codec.decode(data).writer_version == version
    outcome = router.process(Message(TOPICS.intake(inc.municipality), 0, version, b"k", data))
    assert outcome.kind == OutcomeKind.routed, outcome
    dispatches = [Dispatch.decode(o.value) for o in outcome.outputs if o.topic != TOPICS.routed]
    assert dispatches
    photos = [Incident.decode(d.payload).photos for d in dispatches]
    assert photos == [[PhotoRef(sha256=DIGEST)] if version == 3 else []] * len(dispatches)
    routed = next(o.value for o in outcome.outputs if o.topic == TOPICS.routed)
    assert DIGEST.encode() not in routed  # the shared store never learns a photo's digest
    assert RoutedIncident.decode(routed).id == inc.id

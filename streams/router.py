"""What the router does to one message, without Kafka: decode → check → dedupe → route → outputs.

The faust app (``streams/app.py``) only moves bytes in and out; what becomes of each message
is decided here, so it is tested without a broker. Who must act on an event is the
territory's answer (:mod:`veille.territory.routing`), and so is the id of each dispatch
(:mod:`veille.territory.dispatch`): this module applies them to Kafka messages (decoding,
trust checks, de-duplication, outputs). ``Router.process`` never raises for bad input:
a message is either routed (dispatches + one routing record) or dead-lettered with a
reason, and both are plain ``Output`` values for the caller to publish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from veille.deadletter import make_dead_letter, make_range_letter
from veille.grouping.divert import grouping_output
from veille.kafka import Message, Output
from veille.schemas import codec
from veille.schemas.fast_models import incident_from_avro
from veille.schemas.models import (
    Alert,
    CaseSplit,
    Dispatch,
    DispatchTarget,
    EventType,
    Incident,
    Record,
    RoutedAlert,
    RoutedIncident,
    StatusUpdate,
)
from veille.schemas.registry import RegistryUnavailable, SchemaResolver
from veille.schemas.routed_encoder import RoutedIncidentEncoder
from veille.streams.dedup import BatchDedup, DedupWindow
from veille.streams.rejections import Rejected
from veille.streams.staging import Staged, decided
from veille.territory import Territory
from veille.territory.dispatch import dispatch_id, dispatch_ref, keyed_hash
from veille.territory.routing import RoutingDecision, route_alert, route_incident
from veille.topics import ALERT_TYPES, INTAKE_TYPES, STATUS_TYPES, Topics

R = TypeVar("R", bound=Record)
log = logging.getLogger("veille.router")


SPLIT_REASON = "case_split"  # the reason of a forwarded CaseSplit (its dead letters: split_*)


class OutcomeKind(StrEnum):
    """What happened to one message. A StrEnum: its value is the ``kind`` label of
    ``veille_router_events_total``."""

    routed = "routed"  # dispatches and a routing record
    duplicate = "duplicate"  # seen before with the same content: nothing published
    dead_letter = "dead_letter"  # refused, with a reason: one dead letter (or part of a range letter)
    forwarded = "forwarded"  # a status update, re-encoded onto the routed topic


@dataclass(frozen=True)
class Outcome:
    """What happened to one message; ``kind`` feeds metrics and tests."""

    kind: OutcomeKind
    outputs: tuple[Output, ...]
    reason: str | None = None
    targets: tuple[DispatchTarget, ...] = ()
    reported_at: datetime | None = None
    # Who published it, where only the message can say (the shared alerts and status topics);
    # empty on intake topics, whose topic names the municipality (streams/quarantine.py).
    source: str = ""
    # A dead letter of a quarantined source, carried by its partition's range letter.
    ranged: bool = False


class Router:
    def __init__(
        self,
        territory: Territory,
        topics: Topics,
        *,
        pseudonym_key: bytes,
        dispatch_key: bytes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        resolver: codec.Resolver | None = None,
        output_resolver: SchemaResolver | None = None,
        grouping: bool = False,
    ) -> None:
        self.territory = territory
        # Grouping on (docs/grouping.md): a groupable incident goes to <prefix>.grouping instead.
        self.grouping = grouping and bool(territory.rules.grouping.rules)
        self.topics = topics
        self.pseudonym_key = pseudonym_key
        self.dispatch_key = dispatch_key
        self.dispatch_encoder = codec.DispatchEncoder()
        self.routed_encoder = RoutedIncidentEncoder()
        self.staged: Staged[Incident, RoutingDecision] = Staged()
        self.clock = clock
        # Schema registry: ``resolver`` reads Confluent-framed input (None: single-object only);
        # ``output_resolver`` frames the outputs the Confluent way (None: single-object encoding).
        self.resolver = resolver
        self.output_resolver = output_resolver

    # -- entry point ---------------------------------------------------------------
    def process(self, msg: Message, seen: BatchDedup | None = None) -> Outcome:
        """Route one message; ``seen`` is the de-duplication window of its batch (none: the
        message is judged on its own)."""
        if seen is None:
            seen = DedupWindow().batch()
        try:
            if self.topics.municipality_of_intake(msg.topic) is not None:
                return self._incident(msg, seen)
            if msg.topic == self.topics.alerts:
                return self._alert(msg, seen)
            if msg.topic == self.topics.status:
                return self._status(msg)
            raise Rejected("unexpected_topic", f"the router does not consume {msg.topic}")
        except Rejected as exc:
            return self.dead_letter(msg, exc.reason, str(exc))
        except codec.DecodeError as exc:
            return self.dead_letter(msg, exc.reason, exc.detail)
        except RegistryUnavailable:
            raise  # not the message's fault: the batch handler waits for the registry
        except Exception as exc:
            # A bug must not stop the stream nor lose the message: faust would ack an event
            # whose handler raised. The original bytes go to the dead-letter topic for replay.
            log.exception("internal error on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            return self.dead_letter(msg, "internal_error", f"{type(exc).__name__}: {exc}")

    def stage(self, messages: Sequence[Message]) -> None:
        """Read and route the incidents of ``messages`` ahead, stage by stage, for ``process``
        to take in turn (``streams/staging.py``: the same outcomes, fewer cold caches)."""
        intake = [m for m in messages if self.topics.municipality_of_intake(m.topic) is not None]
        self.staged.stage(intake, self._read_incident, self._route_incident)

    # -- per topic family ----------------------------------------------------------
    def _read_incident(self, msg: Message) -> Incident:
        decoded = codec.decode(msg.value, expect=INTAKE_TYPES, resolver=self.resolver)
        return self._validate(Incident, decoded.value)

    def _route_incident(self, incident: Incident) -> RoutingDecision:
        return route_incident(incident, self.territory)

    def _incident(self, msg: Message, seen: BatchDedup) -> Outcome:
        incident, staged = self.staged.take(msg, self._read_incident)
        topic_municipality = self.topics.municipality_of_intake(msg.topic)
        if incident.municipality != topic_municipality:
            # Anti-spoofing: each body may only publish on its own intake topic (ACLs),
            # so an event naming another municipality is an impersonation attempt or a bug.
            raise Rejected("municipality_mismatch",
                           f"incident names municipality {incident.municipality} "
                           f"but arrived on the intake topic of {topic_municipality}")
        event_id = str(incident.id)
        duplicate = self._check_duplicate(event_id, msg.value or b"", seen)
        if duplicate:
            return duplicate
        decision = decided(staged, lambda: self._route_incident(incident))
        if decision.unroutable:
            # Only a point the territory does not hold can be a swapped one: checked here,
            # not before routing, to locate each point once.
            self._check_swapped(incident)
            raise Rejected("unroutable", f"{decision.unroutable}: {decision.reason}")
        now = self.clock()
        # Outputs are built from validated values straight into their Avro shape: validating
        # them again through their models cost more than the routing itself (profiled).
        loc = incident.location
        if self.grouping and loc is not None and self.territory.rules.grouping.rule_for(incident.category):
            # One record for the grouping worker instead of the dispatches and routing record.
            out = grouping_output(self.topics, self.territory.rules.grouping.cell_resolution, incident,
                                  decision, now, self._pseudonym(incident), msg.value or b"")
            self._remember(event_id, msg.value or b"", seen)
            return Outcome(OutcomeKind.routed, (out,), reported_at=incident.reported_at)
        routed = self.encode_value(self.topics.routed, RoutedIncident.avro_name, {
            "id": event_id, "municipality": incident.municipality, "category": incident.category,
            "severity": incident.severity, "channel": incident.channel,
            "location": None if loc is None else {"lat": loc.lat, "lon": loc.lon},
            "occurred_at": incident.occurred_at, "reported_at": incident.reported_at, "routed_at": now,
            "reporter_pseudonym": self._pseudonym(incident),
            "dispatches": [_target_value(t) for t in decision.targets],
        })
        outputs = self._dispatches(
            EventType.incident, event_id, incident.municipality, incident.category.value,
            incident.severity.value, incident.reported_at, now, decision, msg.value or b"",
        )
        outputs.append(Output(self.topics.routed, incident.id.bytes, routed))
        self._remember(event_id, msg.value or b"", seen)
        return Outcome(OutcomeKind.routed, tuple(outputs), targets=tuple(decision.targets),
                       reported_at=incident.reported_at)

    def _alert(self, msg: Message, seen: BatchDedup) -> Outcome:
        decoded = codec.decode(msg.value, expect=ALERT_TYPES, resolver=self.resolver)
        alert = self._validate(Alert, decoded.value)
        duplicate = self._check_duplicate(f"alert:{alert.sender}:{alert.identifier}",
                                          msg.value or b"", seen)
        if duplicate:
            return duplicate
        decision = route_alert(alert, self.territory)
        if decision.unroutable:
            raise Rejected("unroutable", f"{decision.unroutable}: {decision.reason}")
        now = self.clock()
        info = alert.infos[0]
        category = _alert_category(alert)
        municipalities = sorted(decision.municipalities)
        routed = RoutedAlert(
            identifier=alert.identifier, sender=alert.sender, sent=alert.sent,
            status=alert.status.value, msg_type=alert.msg_type.value, event=info.event,
            category=category, severity=info.severity.value, urgency=info.urgency.value,
            headline=info.headline, municipalities=municipalities, scope=alert.scope.value,
            references=alert.references, expires=_alert_expires(alert),
            cap_json=alert.model_dump_json(), routed_at=now, dispatches=list(decision.targets),
        )
        outputs = self._dispatches(
            EventType.alert, alert.identifier, municipalities[0] if municipalities else "",
            category, info.severity.value, alert.sent, now, decision, msg.value or b"",
        )
        outputs.append(Output(self.topics.routed, alert.identifier.encode(),
                              self.encode(self.topics.routed, routed)))
        self._remember(f"alert:{alert.sender}:{alert.identifier}", msg.value or b"", seen)
        return Outcome(OutcomeKind.routed, tuple(outputs), targets=tuple(decision.targets),
                       reported_at=alert.sent, source=f"sender:{alert.sender}")

    def _status(self, msg: Message) -> Outcome:
        decoded = codec.decode(msg.value, expect=STATUS_TYPES, resolver=self.resolver)
        if decoded.record_type == CaseSplit.avro_name:
            return self._split(self._validate(CaseSplit, decoded.value))
        update = self._validate(StatusUpdate, decoded.value)
        agency = self.territory.agencies.get(update.agency_id)
        if agency is None:
            raise Rejected("unknown_agency", f"agency {update.agency_id!r} is not in the territory")
        # The status topic is shared by every agency: what proves who speaks is the dispatch
        # id, which only the router derives and only that agency's dispatch topic carries.
        if update.dispatch_id is None:
            raise Rejected("not_dispatched", "a status update must quote the dispatch_id of the "
                                             "dispatch it answers")
        valid = {dispatch_id(self.dispatch_key, EventType.incident, str(update.incident_id), agency.id, s)
                 for s in agency.services}
        if update.dispatch_id not in valid:
            raise Rejected("not_dispatched",
                           f"dispatch {update.dispatch_id} is not a dispatch of incident "
                           f"{update.incident_id} to agency {agency.id}")
        # Re-encoded with the current schema so the sink reads one version only.
        out = Output(self.topics.routed, update.incident_id.bytes, self.encode(self.topics.routed, update))
        return Outcome(OutcomeKind.forwarded, (out,), source=f"agency:{agency.id}")

    def _split(self, split: CaseSplit) -> Outcome:
        """A body splits a report out of a case (docs/grouping.md): checked like a status
        update, the dispatch id being the proof, then forwarded keyed by the report's id."""
        agency = self.territory.agencies.get(split.agency_id)
        if agency is None:
            raise Rejected("unknown_agency", f"agency {split.agency_id!r} is not in the territory")
        if split.incident_id == split.case_id:
            raise Rejected("split_first_report",
                           f"report {split.incident_id} opened its case: it cannot be split from it")
        # Only the named service's derivation: the split makes *that* dispatch answerable.
        expected = dispatch_id(self.dispatch_key, EventType.incident, str(split.incident_id), agency.id,
                               split.service)
        if split.service not in agency.services or split.dispatch_id != expected:
            raise Rejected("split_not_dispatched",
                           f"dispatch {split.dispatch_id} is not a dispatch of report "
                           f"{split.incident_id} to agency {agency.id}")
        out = Output(self.topics.routed, split.incident_id.bytes, self.encode(self.topics.routed, split))
        # reason marks a forwarded split for its metric (veille_router_case_splits_total).
        return Outcome(OutcomeKind.forwarded, (out,), SPLIT_REASON, source=f"agency:{agency.id}")

    # -- helpers -------------------------------------------------------------------
    def _validate(self, model: type[R], value: dict[str, object]) -> R:
        if model is Incident:
            # Plainly valid incidents are built without pydantic's validator; anything else
            # is validated by it, so every refusal keeps its reason and words.
            fast = incident_from_avro(value)
            if fast is not None:
                return cast(R, fast)
        try:
            return model.from_avro(value)
        except ValidationError as exc:
            raise Rejected.invalid(exc) from None

    def _check_swapped(self, incident: Incident) -> None:
        point = incident.location
        if point is None or self.territory.locate(point.lon, point.lat):
            return
        if self.territory.locate(point.lat, point.lon):  # a common bug in hand-written clients
            raise Rejected("swapped_coordinates",
                           f"lat={point.lat}, lon={point.lon} is outside the territory but inside "
                           "it with latitude and longitude swapped")

    def _check_duplicate(self, event_id: str, value: bytes, seen: BatchDedup) -> Outcome | None:
        verdict = seen.check(event_id, value, self.clock().timestamp())
        if verdict == "duplicate":
            return Outcome(OutcomeKind.duplicate, (), "duplicate")
        if verdict == "conflict":
            raise Rejected("conflicting_duplicate",
                           f"id {event_id} was already received with different content")
        return None

    def _remember(self, event_id: str, value: bytes, seen: BatchDedup) -> None:
        # Only routed events are remembered: a dead-lettered one may be fixed and re-sent.
        seen.remember(event_id, value, self.clock().timestamp())

    def _pseudonym(self, incident: Incident) -> str | None:
        contact = incident.reporter
        if contact is None:
            return None
        ident = (contact.email or contact.phone or contact.name or "").strip().lower()
        if not ident:
            return None
        # Keyed hash: links reports of one person without the store holding who it is.
        return keyed_hash(self.pseudonym_key).hexdigest(ident.encode())[:32]

    def _dispatches(
        self, event_type: EventType, event_id: str, municipality: str, category: str,
        severity: str, reported_at: datetime, routed_at: datetime,
        decision: RoutingDecision, payload: bytes,
    ) -> list[Output]:
        outputs = []
        encoder = self.dispatch_encoder
        tail = encoder.tail(municipality, category, severity, reported_at, routed_at, payload)
        event = encoder.event(event_type, event_id)
        key = event_id.encode()
        for target in decision.targets:
            ref = dispatch_ref(self.dispatch_key, event_type, event_id, target.agency_id, target.service)
            topic = self.topics.dispatch(target.agency_id)
            if self.output_resolver is None:  # single-object encoding: the hand-made fast path
                dispatch = encoder.dispatch(ref, event, encoder.target(
                    target.agency_id, target.service, target.rule, target.cross_boundary), tail)
            else:
                dispatch = self.output_resolver.encode(topic, Dispatch.avro_name, {
                    "id": ref, "event_type": event_type, "event_id": event_id, "agency_id": target.agency_id,
                    "service": target.service, "rule": target.rule, "cross_boundary": target.cross_boundary,
                    "municipality": municipality, "category": category, "severity": severity,
                    "reported_at": reported_at, "routed_at": routed_at, "payload": payload})
            outputs.append(Output(topic, key, dispatch))
        return outputs

    def dead_letter(self, msg: Message, reason: str, message: str, attempts: int = 1) -> Outcome:
        source = self.source_of(msg)
        record = make_dead_letter(component="router", reason=reason, detail=message, topic=msg.topic,
                                  partition=msg.partition, offset=msg.offset, key=msg.key,
                                  value=msg.value, failed_at=self.clock(), attempts=attempts,
                                  source=source)
        topic = self.dead_letter_topic(msg.topic)
        return Outcome(OutcomeKind.dead_letter, (Output(topic, msg.key, self.encode(topic, record)),), reason,
                       source=source)

    def range_letter(self, source: str, messages: Sequence[Message], reasons: Sequence[str]) -> Output:
        """One letter for the invalid ``messages`` of a quarantined source on one partition."""
        first = messages[0]
        record = make_range_letter(component="router", source=source, messages=messages,
                                   reasons=reasons, failed_at=self.clock())
        topic = self.dead_letter_topic(first.topic)
        return Output(topic, first.key, self.encode(topic, record))

    def dead_letter_topic(self, source_topic: str) -> str:
        # Intake payloads may carry a reporter's contact: they go to the restricted topic.
        restricted = self.topics.municipality_of_intake(source_topic) is not None
        return self.topics.dead_letter_restricted if restricted else self.topics.dead_letter

    def source_of(self, msg: Message) -> str:
        """Who published ``msg``: the intake topic's municipality, else the agency or sender the
        message names (read leniently: a status update naming an agency the territory does not
        know, or bytes that do not decode, are ``unattributed``). ACLs say who may write a
        topic, not who wrote a message: on the shared topics this is the publisher it claims."""
        municipality = self.topics.municipality_of_intake(msg.topic)
        if municipality is not None:
            return f"municipality:{municipality}"
        if msg.topic not in (self.topics.status, self.topics.alerts):
            return "unattributed"
        try:
            value = codec.decode(msg.value, resolver=self.resolver).value
        except Exception:  # undecodable: that is why it is attributed to nobody
            return "unattributed"
        if msg.topic == self.topics.status:
            agency = value.get("agency_id")
            return f"agency:{agency}" if agency in self.territory.agencies else "unattributed"
        sender = value.get("sender")
        if isinstance(sender, str) and 0 < len(sender) <= 200 and sender.isprintable():
            return f"sender:{sender}"
        return "unattributed"

    def encode(self, topic: str, record: Record) -> bytes:
        """An output in the configured framing (ids are resolved once at start, then cached)."""
        return self.encode_value(topic, record.avro_name, record.to_avro())

    def encode_value(self, topic: str, record_type: str, value: dict[str, Any]) -> bytes:
        """An Avro value already in its schema's shape, in the configured framing."""
        if self.output_resolver is None:
            if record_type == "RoutedIncident":  # the hot path's record, written by hand
                return self.routed_encoder.encode(value)
            return codec.encode(record_type, value)
        return self.output_resolver.encode(topic, record_type, value)

    def output_schemas(self) -> list[tuple[str, str]]:
        """(topic, record type) of every output, to resolve their schema ids before routing."""
        t = self.topics
        pairs = [(t.dispatch(a), "Dispatch") for a in sorted(self.territory.agencies)]
        pairs += [(t.routed, name) for name in ("RoutedIncident", "RoutedAlert", "StatusUpdate", "CaseSplit")]
        return [*pairs, (t.dead_letter, "DeadLetter"), (t.dead_letter_restricted, "DeadLetter")]


def _target_value(t: DispatchTarget) -> dict[str, object]:
    return {"agency_id": t.agency_id, "service": t.service, "rule": t.rule,
            "cross_boundary": t.cross_boundary}


def _alert_category(alert: Alert) -> str:
    for info in alert.infos:
        for code in info.event_codes:
            if code.value_name == "veille":
                return code.value
    return alert.infos[0].category[0].value


def _alert_expires(alert: Alert) -> datetime | None:
    """When the whole alert stops being active: its last info's expiry (None if one never expires)."""
    ends = [info.expires for info in alert.infos]
    return None if any(e is None for e in ends) else max(e for e in ends if e is not None)


__all__ = ["DispatchTarget", "Outcome", "OutcomeKind", "Rejected", "Router"]

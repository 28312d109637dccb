"""Every Kafka topic of the hub, declared in one place, and their idempotent creation.

Layout (prefix ``veille`` by default):
  <prefix>.intake.<INSEE>      one per municipality: incidents it publishes (ACL-able per body)
  <prefix>.alerts              CAP alerts from any authorised sender
  <prefix>.status              incident lifecycle updates from agencies
  <prefix>.dispatch.<agency>   one per agency: what that agency must act on
  <prefix>.routed              routing records, the single input of the store sink
  <prefix>.deadletter          messages a component could not process, with the reason
  <prefix>.deadletter.restricted  dead letters that may hold personal data (intake payloads)
  <prefix>.notify.consent      RESTRICTED, compacted: residents' consents to hear back (keyed by
                               incident id; a tombstone withdraws one), the notifier's alone
  <prefix>.notify.tracks       compacted changelog of the notifier's state (what each incident's
                               resident was told; no contact), co-partitioned with .routed

The layout is a function of the municipalities and agencies it is given (:func:`topic_specs`):
which ones a deployment has is the territory's to say, one layer up
(``veille.territory.topics``), so this module, which the schemas and every component read,
loads no territory. ``veille topics`` is in ``veille/topics_cli.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from veille.config import Settings

log = logging.getLogger("veille.topics")
# Durability settings that aligning never lowers: a component started with weaker settings
# (a forgotten VEILLE_MIN_INSYNC_REPLICAS) must not silently weaken every topic of the hub.
NEVER_LOWERED = ("min.insync.replicas",)

DAY_MS = 24 * 3600 * 1000
# What publishers write (intake, alerts, status) is bounded where it enters: the broker
# refuses a larger record batch. The largest valid event (a CAP alert at its geometry bounds,
# schemas/models.py) stays well under it; the router's outputs (a dispatch carries the
# original event) stay under the producers' 1,000,000-byte limit.
MAX_SOURCE_MESSAGE_BYTES = 512 * 1024

# Record types accepted on each family of topics (checked by consumers at decode time).
INTAKE_TYPES = ("Incident",)
ALERT_TYPES = ("Alert",)
STATUS_TYPES = ("StatusUpdate", "CaseSplit")
DISPATCH_TYPES = ("Dispatch",)
ROUTED_TYPES = ("RoutedIncident", "RoutedAlert", "StatusUpdate", "Redispatch", "CaseSplit")
DEAD_LETTER_TYPES = ("DeadLetter",)
DELIVERY_TYPES = ("DeliveryReceipt",)
CONSENT_TYPES = ("NotificationConsent",)
# The PCS cascade's events are JSON (veille/pcs/events.py), not Avro records: no schema subject.
PCS_TYPES = ("PcsCascadeEvent",)
# A tombstone of the consent topic stays readable this long before compaction drops it: a
# notifier stopped for less still reads the withdrawal (veille/notify, docs/notify.md).
CONSENT_DELETE_RETENTION_MS = 7 * DAY_MS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


class Topics:
    """Topic names for one deployment (prefix from settings)."""

    def __init__(self, prefix: str = "veille") -> None:
        self.prefix = prefix

    def intake(self, insee: str) -> str:
        return f"{self.prefix}.intake.{insee}"

    def dispatch(self, agency_id: str) -> str:
        return f"{self.prefix}.dispatch.{agency_id}"

    @property
    def intake_pattern(self) -> str:
        """Regex subscription covering every municipality's intake topic."""
        return f"^{self.prefix}\\.intake\\..*"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}.alerts"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def routed(self) -> str:
        return f"{self.prefix}.routed"

    @property
    def delivery(self) -> str:
        """Delivery receipts: every attempt to push a dispatch to its body (``veille deliver run``)."""
        return f"{self.prefix}.delivery"

    @property
    def notify_consent(self) -> str:
        """Consents to hear back (``veille notify run``): restricted, compacted, keyed by incident id."""
        return f"{self.prefix}.notify.consent"

    @property
    def notify_tracks(self) -> str:
        """The notifier's state changelog: keyed and partitioned as ``routed`` (veille/notify/tracks.py)."""
        return f"{self.prefix}.notify.tracks"

    @property
    def pcs_cascade(self) -> str:
        """The PCS cascade's events (``veille pcs worker``): activations, notifications,
        acknowledgements, checks; ids and counts only, never a register entry's content."""
        return f"{self.prefix}.pcs.cascade"

    @property
    def grouping(self) -> str:
        """Groupable reports re-keyed by place (``veille router grouping``, docs/grouping.md):
        the router's repartition topic, keyed by a geographic cell. Restricted: it carries the
        reports' dispatches, contacts included, as the dispatch topics do."""
        return f"{self.prefix}.grouping"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def dead_letter_restricted(self) -> str:
        return f"{self.prefix}.deadletter.restricted"

    def municipality_of_intake(self, topic: str) -> str | None:
        head = f"{self.prefix}.intake."
        return topic[len(head):] if topic.startswith(head) else None

    def record_types(self, topic: str) -> tuple[str, ...]:
        """The record types a topic of the hub carries (empty for a topic not of the hub)."""
        if self.municipality_of_intake(topic) is not None:
            return INTAKE_TYPES
        if topic.startswith(f"{self.prefix}.dispatch."):
            return DISPATCH_TYPES
        return {self.alerts: ALERT_TYPES, self.status: STATUS_TYPES, self.routed: ROUTED_TYPES,
                self.delivery: DELIVERY_TYPES, self.dead_letter: DEAD_LETTER_TYPES,
                self.dead_letter_restricted: DEAD_LETTER_TYPES,
                self.notify_consent: CONSENT_TYPES}.get(topic, ())

    def subject(self, topic: str, record_full_name: str) -> str:
        """Schema registry subject of a record on a topic.

        TopicNameStrategy (``<topic>-value``, what Kafka Connect, ksqlDB and most serializers
        assume) for every topic carrying one record type. The routed topic carries three
        (RoutedIncident, RoutedAlert, StatusUpdate): one subject for all would make every
        compatibility check compare different records, so each gets TopicRecordNameStrategy's
        ``<topic>-<full record name>``. Readers look schemas up by id and never care.
        """
        if len(self.record_types(topic)) > 1:
            return f"{topic}-{record_full_name}"
        return f"{topic}-value"


def topic_specs(
    settings: Settings, municipalities: Iterable[str], agencies: Iterable[str]
) -> list[TopicSpec]:
    """The full topic layout for a territory, with retention and durability settings."""
    names = Topics(settings.topic_prefix)
    base = {
        "min.insync.replicas": str(settings.min_insync_replicas),
        "retention.ms": str(settings.retention_days * DAY_MS),
        "cleanup.policy": "delete",
    }
    dlq = {**base, "retention.ms": str(settings.dead_letter_retention_days * DAY_MS)}

    def spec(name: str, config: dict[str, str], partitions: int | None = None) -> TopicSpec:
        return TopicSpec(name, partitions or settings.partitions,
                         settings.replication_factor, dict(config))

    source = {**base, "max.message.bytes": str(MAX_SOURCE_MESSAGE_BYTES)}
    specs = [spec(names.intake(m), source) for m in sorted(municipalities)]
    specs += [spec(names.alerts, source), spec(names.status, source), spec(names.routed, base)]
    specs += [spec(names.dispatch(a), base) for a in sorted(agencies)]
    specs += [spec(names.delivery, base), spec(names.pcs_cascade, base)]
    # Groupable reports re-keyed by cell (docs/grouping.md): they carry contacts, kept days only.
    specs += [spec(names.grouping, {**base, "retention.ms": str(settings.grouping_retention_days * DAY_MS)})]
    # Consents: only the latest record of each incident is kept (compaction, no time-based
    # deletion: a contact leaves by the tombstone the notifier writes after the incident closed).
    specs += [spec(names.notify_consent, {
        "min.insync.replicas": str(settings.min_insync_replicas), "cleanup.policy": "compact",
        "delete.retention.ms": str(CONSENT_DELETE_RETENTION_MS), "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": str(DAY_MS)})]
    # The notifier's changelog: the latest entry of each incident; as many partitions as the
    # routed topic (settings.partitions for both), whose partition p's state it holds in p.
    specs += [spec(names.notify_tracks, {
        "min.insync.replicas": str(settings.min_insync_replicas), "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)})]
    # Dead letters are rare: one partition keeps them in arrival order for operators.
    specs += [spec(names.dead_letter, dlq, 1), spec(names.dead_letter_restricted, dlq, 1)]
    return specs


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout: float = 30.0) -> dict[str, str]:
    """Create missing topics, grow partitions and align configs. Safe to run at every start."""
    existing = admin.list_topics(timeout=timeout).topics
    outcome: dict[str, str] = {}
    new = [NewTopic(s.name, s.partitions, s.replication, config=s.config)
           for s in specs if s.name not in existing]
    if new:
        for name, fut in admin.create_topics(new, request_timeout=timeout).items():
            try:
                fut.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                outcome[name] = "exists"
    grow = [NewPartitions(s.name, s.partitions) for s in specs
            if s.name in existing and len(existing[s.name].partitions) < s.partitions]
    if grow:
        for name, fut in admin.create_partitions(grow, request_timeout=timeout).items():
            fut.result()
            outcome[name] = "partitions increased"
    present = [s for s in specs if s.name in existing]
    if present:
        current = _current_values(admin, [s.name for s in present], NEVER_LOWERED)
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC, s.name,
                incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                                     for k, v in _not_lowered(s, current.get(s.name, {})).items()],
            )
            for s in present
        ]
        for res, fut in admin.incremental_alter_configs(resources).items():
            fut.result()
            outcome.setdefault(res.name, "up to date")
    return outcome


def _current_values(admin: AdminClient, names: list[str], keys: Iterable[str]) -> dict[str, dict[str, str]]:
    wanted = set(keys)
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
    return {res.name: {k: e.value for k, e in fut.result().items() if k in wanted and e.value is not None}
            for res, fut in futures.items()}


def _not_lowered(spec: TopicSpec, current: dict[str, str]) -> dict[str, str]:
    config = dict(spec.config)
    for key in NEVER_LOWERED:
        if key in config and key in current and int(current[key]) > int(config[key]):
            log.warning("%s: keeping %s=%s (this process asks for %s: check its settings)",
                        spec.name, key, current[key], config[key])
            config.pop(key)
    return config

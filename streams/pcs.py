"""``veille pcs worker``: the safeguard plans' alert cascade, a faust app of its own.

Imitates :mod:`veille.streams.escalation` (its own app ``<prefix>-pcs``, consumer group,
RocksDB-backed Table with a changelog, a timer), so a stalled recovery here never delays the
routing of new events.

WHAT IT READS. ``<prefix>.routed``, for the RoutedAlerts only: each is turned into the
activations it opens (:func:`veille.pcs.activation.from_alert`, pure), published on
``<prefix>.pcs.cascade`` keyed by the activation id (deterministic: the same alert re-read is
the same activation). And ``<prefix>.pcs.cascade`` itself: activations (from the alerts, or
manual ones from the desk), the timer's steps, acknowledgements and checks from the
representatives' pages. The Table (keyed ``act:<activation>``, ``w:<activation>/<owner>``,
``sent:<notification>``) is co-partitioned with that topic.

WHAT IT DOES. An activation opens one watch per representative reached and notifies each
once; a step (the timer saw a watch's deadline pass unacknowledged) notifies the next of the
chain: the substitutes, then the safeguard cell (:mod:`veille.pcs.cascade`, pure). Every
notification is recorded as a ``notified`` event. One that failed transiently (outcome
``retry``) is remembered as ``r:<notification>`` with its due time; the timer publishes a
``retry`` event when it is due and the agent sends it again (the same id, so the same
Message-ID), at most ``VEILLE_PCS_NOTIFY_RETRIES`` times with exponential backoff; an
acknowledgement or a step of the chain ends the retries.

THE TIMER only publishes (faust cannot write a Table outside an event's partition): a
``step`` event for each overdue watch, read back by the agent, which moves the watch and
notifies. Its clock is the wall clock (unlike the escalation worker's event clock: a replay of
a past cascade after a long outage moves silent representatives on at once, which is what
a late cascade should do).

DELIVERY. A notification's id is deterministic (activation, owner, step, target) and the
Table remembers ``sent:<id>`` (the ``notified`` event itself) before the source offset is
committed (the changelog is written first), so a restarted worker re-reading its input skips
what was sent. What a kill -9 can still double is the one message in flight between the
relay's acceptance and the changelog: it carries the same Message-ID (and the SMS gateway the
same Idempotency-Key), so the copy is the same message. Nothing is forgotten: the offset is
committed only after the sends and their ``notified`` events are acknowledged, and a re-read
event whose notifications were already sent publishes their remembered ``notified`` events
again (a kill -9 between the changelog and the event would otherwise lose the record of a
message that went out); the copy is the same event, which the store collapses by its key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import faust

from veille.config import Settings
from veille.deliver.email import EmailSender
from veille.deliver.settings import DeliverySettings
from veille.kafka import Output
from veille.notify.settings import NotifySettings
from veille.notify.sms import SmsGateway
from veille.pcs import cascade, events, messages
from veille.pcs import metrics as pcs_metrics
from veille.pcs.activation import from_alert
from veille.pcs.plan import PCS_FILE, PcsPlan, read_plan
from veille.pcs.settings import PcsSettings
from veille.schemas import codec
from veille.schemas.models import Alert, DeliveryOutcome, IncidentCategory
from veille.schemas.registry import resolver_from_settings
from veille.streams.output import OutputSender
from veille.streams.stateful import publish_or_exit, stateful_app
from veille.territory import load_territory
from veille.topics import ROUTED_TYPES, Topics

log = logging.getLogger("veille.pcs")


def _now() -> int:
    return int(time.time() * 1000)


def create_pcs_app(settings: Settings, plan: PcsPlan | None = None,
                   tick_seconds: float = 1.0) -> faust.App:
    topics = Topics(settings.topic_prefix)
    territory = load_territory(settings.territory_dir)
    plan = plan or read_plan(settings.territory_dir / PCS_FILE)
    app = stateful_app(settings, "pcs", settings.escalation_store)
    notify = NotifySettings()
    retries = PcsSettings()
    links = messages.PageLinks(notify.link_key.get_secret_value(), notify.public_base_url)
    mailer = EmailSender(DeliverySettings())
    sms = SmsGateway(notify)
    sender = OutputSender(settings)
    resolver = resolver_from_settings(settings)
    routed = app.topic(topics.routed, key_type=bytes, value_type=bytes)
    cascade_topic = app.topic(topics.pcs_cascade, key_type=bytes, value_type=bytes)
    state = app.Table("cascade", default=None, key_type=bytes, value_type=bytes,
                      partitions=settings.partitions)
    in_flight: set[tuple[str, int]] = set()

    def load(key: str) -> Any:
        raw = state.get(key.encode())
        return None if raw is None else json.loads(raw)

    def store(key: str, value: Any) -> None:
        state[key.encode()] = json.dumps(value, separators=(",", ":")).encode()

    async def publish(outputs: Sequence[Output]) -> None:
        await publish_or_exit(sender, outputs, log)

    def out(event: events._Event) -> Output:
        return Output(topics.pcs_cascade, event.activation.encode(), events.encode(event))

    def forget(key: str) -> None:
        if state.get(key.encode()) is not None:
            del state[key.encode()]

    async def deliver(n: cascade.Notification, act: dict[str, Any],
                      attempt: int = 0) -> events.NotifiedEvent | None:
        """Send ``n`` once (``sent:<id>`` in the Table), or again for retry number ``attempt``;
        the event to record (the one remembered, when it was sent before)."""
        if attempt == 0 and load(f"sent:{n.id}") is not None:
            return remembered(n.id)
        town = territory.municipalities[n.municipality].name
        url = links.url(n, act.get("category") or "other")
        headline = act.get("headline") or "Alerte"
        channel: Literal["email", "sms"]
        if n.contact.email:
            channel = "email"
            msg = messages.email(n, to=n.contact.email, sender=notify.email_sender, url=url,
                                 town=town, headline=headline)
            result = await mailer.send(msg, [n.contact.email])
            outcome = result.outcome
        elif not sms.configured:
            channel, outcome = "sms", DeliveryOutcome.failed  # no gateway: recorded, visible
        else:
            channel = "sms"
            outcome, _ = await sms.send(n.contact.sms or "", messages.sms(n, url=url, town=town,
                                                                         headline=headline), n.id)
        notified = events.NotifiedEvent(activation=n.activation, at=_now(), notification=n.id,
                                        municipality=n.municipality, owner=n.owner, target=n.target,
                                        step=n.step, channel=channel, outcome=outcome.value)
        store(f"sent:{n.id}", notified.model_dump(mode="json"))
        due = None if outcome is not DeliveryOutcome.retry else cascade.next_retry_ms(
            attempt, _now(), max_retries=retries.notify_retries, base_seconds=retries.retry_base_seconds,
            cap_seconds=retries.retry_max_seconds)
        if due is not None:  # the timer publishes a ``retry`` event when it is due
            store(f"r:{n.id}", {"activation": n.activation, "owner": n.owner, "step": n.step,
                                "attempt": attempt + 1, "due_ms": due, "p": current[0]})
        elif attempt:
            forget(f"r:{n.id}")
        step = "owner" if n.step == 0 else ("cell" if n.target == cascade.CELL else "substitute")
        pcs_metrics.NOTIFICATIONS.labels(channel, step, outcome.value).inc()
        # What is logged: ids and outcomes, never a contact.
        log.info("pcs notification=%s activation=%s owner=%s target=%s step=%d channel=%s outcome=%s",
                 n.id, n.activation, n.owner, n.target, n.step, channel, outcome.value)
        return notified

    def remembered(notification: str) -> events.NotifiedEvent | None:
        """The ``notified`` event of a notification sent before (None: not sent, or remembered
        by a release that kept its outcome only)."""
        raw = load(f"sent:{notification}")
        return events.NotifiedEvent.model_validate(raw) if isinstance(raw, dict) else None

    def again(*notifications: cascade.Notification | str) -> list[Output]:
        """The remembered events of notifications already sent, for a re-read input."""
        found = (remembered(n if isinstance(n, str) else n.id) for n in notifications)
        return [out(ev) for ev in found if ev is not None]

    def watch_of(raw: dict[str, Any]) -> cascade.Watch:
        return cascade.Watch(**{k: v for k, v in raw.items() if k != "p"})

    # ``p``: the partition of the watch's events, for the timer to pick the watches it owns.
    current = [0]

    def watch_raw(w: cascade.Watch) -> dict[str, Any]:
        return {"activation": w.activation, "municipality": w.municipality, "owner": w.owner,
                "step": w.step, "deadline_ms": w.deadline_ms, "acknowledged_by": w.acknowledged_by,
                "p": current[0]}

    async def on_event(ev: Any) -> list[Output]:
        outputs: list[Output] = []
        if isinstance(ev, events.ActivationEvent):
            mp = plan.municipalities.get(ev.municipality)
            if mp is None:
                return []
            if load(f"act:{ev.activation}") is not None:  # re-read after a restart
                return again(*(n for _, n in cascade.start(mp, ev.activation, ev.municipality,
                                                          ev.representatives, ev.at)))
            act = {"municipality": ev.municipality, "headline": ev.headline, "at": ev.at,
                   "category": ev.category,
                   "owners": list(ev.representatives)}
            for w, n in cascade.start(mp, ev.activation, ev.municipality, ev.representatives, ev.at):
                store(f"w:{w.key}", watch_raw(w))
                notified = await deliver(n, act)
                if notified:
                    outputs.append(out(notified))
            pcs_metrics.ACTIVATIONS.labels(ev.municipality, ev.source).inc()
            store(f"act:{ev.activation}", act)  # last: a crash before it starts again, sends nothing twice
        elif isinstance(ev, events.StepEvent):
            raw = load(f"w:{ev.activation}/{ev.owner}")
            act = load(f"act:{ev.activation}")
            if raw is None or act is None:
                return []
            w = watch_of(raw)
            mp = plan.municipalities[w.municipality]
            if w.step + 1 != ev.step:  # already moved (a step re-read or re-published after a restart)
                done = ev.step <= w.step
                return again(cascade.notification_for(mp, replace(w, step=ev.step))) if done else []
            w, nxt = cascade.expire(mp, w, max(ev.at, w.deadline_ms or 0))
            store(f"w:{w.key}", watch_raw(w))
            if nxt is not None:
                notified = await deliver(nxt, act)
                if notified:
                    outputs.append(out(notified))
        elif isinstance(ev, events.RetryEvent):
            retry, raw, act = load(f"r:{ev.notification}"), load(f"w:{ev.activation}/{ev.owner}"), \
                load(f"act:{ev.activation}")
            if retry is None or retry["attempt"] != ev.attempt or raw is None or act is None:
                return again(ev.notification)  # done already (a retry event re-read after a restart)
            w = watch_of(raw)
            if w.acknowledged_by is not None or w.step != ev.step:
                forget(f"r:{ev.notification}")  # acknowledged, or the chain moved on: no more tries
                return []
            n = cascade.notification_for(plan.municipalities[w.municipality], w)
            if n.id != ev.notification:
                forget(f"r:{ev.notification}")
                return []
            notified = await deliver(n, act, attempt=ev.attempt)
            if notified:
                outputs.append(out(notified))
        elif isinstance(ev, events.AckEvent):
            raw = load(f"w:{ev.activation}/{ev.owner}")
            if raw is not None:
                w = watch_of(raw)
                w = cascade.acknowledge(plan.municipalities[w.municipality], w, ev.by)
                store(f"w:{w.key}", watch_raw(w))
        return outputs

    @app.agent(routed, name="alerts")
    async def activate(stream: Any) -> None:
        async for event in stream.events():
            try:
                decoded = codec.decode(event.value, expect=ROUTED_TYPES, resolver=resolver)
                if decoded.record_type != "RoutedAlert":
                    continue
                alert = Alert.model_validate_json(decoded.value["cap_json"])
                acts = from_alert(alert, territory, plan)
            except Exception as exc:  # bad input: logged (no content) and skipped, never a crash
                log.warning("routed record [%d]@%d skipped: %s", event.message.partition,
                            event.message.offset, type(exc).__name__)
                pcs_metrics.SKIPPED.labels("routed", type(exc).__name__).inc()
                continue
            headline = next((i.headline for i in alert.infos if i.headline), alert.infos[0].event)
            category = _category(alert)
            if acts:
                await publish([out(events.ActivationEvent(
                    activation=a.id, at=_now(), municipality=a.municipality, source="alert",
                    source_id=a.source_id, severity=a.severity, headline=headline[:300],
                    category=category,
                    representatives=a.representatives)) for a in acts])

    @app.agent(cascade_topic, name="cascade")
    async def run(stream: Any) -> None:
        async for event in stream.events():
            try:
                ev = events.decode(event.value)
            except Exception as exc:
                log.warning("cascade record [%d]@%d skipped: %s", event.message.partition,
                            event.message.offset, type(exc).__name__)
                pcs_metrics.SKIPPED.labels("cascade", type(exc).__name__).inc()
                continue
            current[0] = event.message.partition
            outputs = await on_event(ev)
            if outputs:
                await publish(outputs)

    @app.timer(interval=tick_seconds)
    async def fire_due() -> None:
        recovery = app.tables.recovery
        if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
            return
        mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.pcs_cascade}
        now = _now()
        due: list[Output] = []
        pending = 0
        for key, raw in list(state.items()):
            if not key.startswith((b"w:", b"r:")) or raw is None:
                continue
            value = json.loads(raw)
            if value.get("p") not in mine:
                continue
            if key.startswith(b"r:"):  # a notification to send again
                if value["due_ms"] <= now and (key.decode(), value["attempt"]) not in in_flight:
                    in_flight.add((key.decode(), value["attempt"]))
                    due.append(out(events.RetryEvent(
                        activation=value["activation"], at=now, owner=value["owner"], step=value["step"],
                        notification=key.decode()[2:], attempt=value["attempt"])))
                continue
            w = watch_of(value)
            if w.deadline_ms is not None and w.acknowledged_by is None:
                pending += 1
            if w.deadline_ms is None or w.deadline_ms > now or w.acknowledged_by is not None:
                continue
            if (w.key, w.step) in in_flight:
                continue
            in_flight.add((w.key, w.step))
            due.append(out(events.StepEvent(activation=w.activation, at=now, owner=w.owner,
                                            step=w.step + 1)))
        pcs_metrics.PENDING.set(pending)
        if due:
            await publish(due)

    return app


def _category(alert: Alert) -> str:
    """The alert's ``veille`` event code when it is an incident category (heatwave, flood...)."""
    known = {c.value for c in IncidentCategory}
    for info in alert.infos:
        for code in info.event_codes:
            if code.value_name == "veille" and code.value in known:
                return code.value
    return IncidentCategory.other.value


__all__ = ["create_pcs_app"]

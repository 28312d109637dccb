"""The intake's gate: who may publish what, how much and how big, and delivery to Kafka.

Every front-end of the HTTP intake (the JSON API of ``http_intake``, CAP XML of ``cap_xml``,
Open311 of ``open311``, the relays' form of ``relay``) passes through this module and only
this one; each words its refusals its own way. The server (``http_intake``) puts the gate on
its application with :func:`install` and mounts the front-ends; the front-ends import the
gate, never the server, so no import goes back up.

Who may publish what: every request carries an API key (``veille intake keys``, see
``intake_keys``) issued to one publisher and scoped to its municipalities (incidents), its
agencies (status updates) and, for alerting authorities, CAP alerts: the same anti-spoofing
rules as the broker's ACLs. Anonymous incident reports are accepted only for the
municipalities listed in ``VEILLE_INTAKE_ANONYMOUS_MUNICIPALITIES`` (a town's public web
form), never alerts nor status updates. Each key (and each anonymous client address) has its
own request quota (a token bucket), and a body must arrive whole, within a size and a time.

Delivery: :func:`deliver` answers once the broker acknowledged the event (acks=all), so a
front-end's success means "the hub has it". Each request awaits its own report through an
asyncio future; the poller thread hands the reports over in batches (``acknowledgements``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from veille.config import Settings
from veille.producers import metrics
from veille.producers.acknowledgements import Acknowledgements, expire
from veille.producers.intake_keys import KEYS_FILE, IntakeKey, KeyStore
from veille.producers.sdk import RECORD_FIELD, DeliveryReport, Publisher, Queued

MAX_BODY_BYTES = 256 * 1024  # an incident is < 10 kB; a CAP alert at its geometry bounds < 200 kB
BODY_TIMEOUT = 10.0  # seconds for the whole body: a client trickling bytes holds no slot longer
FILLED_WINDOW = 100_000  # ids whose filled-in fields are remembered for identical retries


@dataclass(frozen=True)
class Quota:
    rate: float  # requests per second, sustained
    burst: int


@dataclass(frozen=True)
class IntakeConfig:
    keys: KeyStore
    anonymous_municipalities: frozenset[str] = frozenset()
    key_quota: Quota = Quota(50.0, 200)
    anonymous_quota: Quota = Quota(1.0, 20)
    ack_timeout: float = 31.0
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT


def intake_config(settings: Settings, keys: KeyStore | None = None) -> IntakeConfig:
    return IntakeConfig(
        keys=keys or KeyStore(settings.state_dir / KEYS_FILE),
        anonymous_municipalities=frozenset(
            m.strip() for m in settings.intake_anonymous_municipalities.split(",") if m.strip()),
        key_quota=Quota(settings.intake_rate_per_second, settings.intake_burst),
        anonymous_quota=Quota(settings.intake_anonymous_rate_per_second, settings.intake_anonymous_burst),
        ack_timeout=settings.delivery_timeout_ms / 1000 + 1,
    )


class TokenBuckets:
    """One token bucket per principal (key id, or anonymous client address)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.capacity = capacity

    def take(self, principal: str, quota: Quota, now: float | None = None) -> float:
        """0 when the request may go, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.pop(principal, (float(quota.burst), now))
        tokens = min(float(quota.burst), tokens + (now - last) * quota.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / quota.rate
        self.buckets[principal] = (tokens, now)
        if len(self.buckets) > self.capacity:
            self.buckets.popitem(last=False)
        return wait


class IntakeState:
    def __init__(self) -> None:
        self.buckets = TokenBuckets()
        self.filled: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def fill(self, record_type: str, data: dict[str, Any], channel: str) -> dict[str, Any]:
        """Fill what a front-end may leave out; the same id always gets the same values."""
        given = data.get("id") not in (None, "")
        if not given:
            data["id"] = str(uuid.uuid4())
        remembered = self.filled.get(f"{record_type}:{data['id']}", {}) if given else {}
        filled: dict[str, Any] = {} if given else {"id": data["id"]}
        if record_type == "Incident":
            defaults = {"reported_at": datetime.now(UTC).isoformat(), "channel": channel}
            for name, value in defaults.items():
                if data.get(name) in (None, ""):
                    data[name] = filled[name] = remembered.get(name, value)
        if filled:
            key = f"{record_type}:{data['id']}"
            self.filled[key] = filled
            self.filled.move_to_end(key)
            if len(self.filled) > FILLED_WINDOW:
                self.filled.popitem(last=False)
        return filled


PUBLISHER_KEY = web.AppKey("publisher", Publisher)
ACKS_KEY = web.AppKey("acknowledgements", Acknowledgements)
CONFIG_KEY = web.AppKey("config", IntakeConfig)
STATE_KEY = web.AppKey("state", IntakeState)


def install(app: web.Application, publisher: Publisher, config: IntakeConfig, *,
            close_publisher: bool = True) -> None:
    """Put the gate on the server's ``app``: it polls the publisher's delivery reports while
    ``app`` runs and closes it (unless ``close_publisher`` is False) when ``app`` stops."""
    app[PUBLISHER_KEY] = publisher
    app[CONFIG_KEY] = config
    app[STATE_KEY] = IntakeState()
    app[ACKS_KEY] = Acknowledgements()

    async def start_polling(app: web.Application) -> None:
        publisher.start_polling()

    async def close(app: web.Application) -> None:
        if close_publisher:
            await asyncio.get_running_loop().run_in_executor(None, publisher.close)

    app.on_startup.append(start_polling)
    app.on_cleanup.append(close)


# --------------------------------------------------------------------------- who, how much


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused before its body is read (each front-end words it its own way)."""

    status: int
    code: str
    reason: str
    retry_after: int | None = None


def admit(app: web.Application, token: str | None, remote: str | None, record_type: str,
          *, anonymous: bool = True) -> tuple[IntakeKey | None, Refusal | None]:
    """Who is speaking (None: anonymous) and whether within quota, for any front-end."""
    config, state = app[CONFIG_KEY], app[STATE_KEY]
    key = config.keys.authenticate(token) if token else None
    if token and key is None:
        metrics.REJECTED.labels(record_type, "bad_key").inc()
        return None, Refusal(403, "bad_key", "unknown, rotated or revoked API key")
    if key is None and not (anonymous and record_type == "Incident" and config.anonymous_municipalities):
        metrics.REJECTED.labels(record_type, "no_key").inc()
        return None, Refusal(401, "no_key", "an API key is required")
    principal, quota = (f"key:{key.id}", config.key_quota) if key else \
        (f"anon:{remote}", config.anonymous_quota)
    wait = state.buckets.take(principal, quota)
    if wait > 0:
        metrics.REJECTED.labels(record_type, "quota").inc()
        return key, Refusal(429, "quota", "request quota exceeded", max(1, round(wait)))
    return key, None


async def read_body(request: web.Request, record_type: str) -> bytes | Refusal:
    """The whole body, or why not: larger than the limit (413) or not received in time (408)."""
    config = request.app[CONFIG_KEY]
    try:
        async with asyncio.timeout(config.body_timeout):  # no task per request, as wait_for made
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return Refusal(413, "too_large", f"body larger than {config.max_body_bytes} bytes")
    except TimeoutError:
        metrics.REJECTED.labels(record_type, "slow_body").inc()
        return Refusal(408, "slow_body", f"body not received within {config.body_timeout:.0f}s")


# --------------------------------------------------------------------------- what it may say


def _forbidden(record_type: str, reason: str, detail: str, field: str = RECORD_FIELD) -> web.Response:
    metrics.REJECTED.labels(record_type, reason).inc()
    return web.json_response({"errors": [{"field": field, "reason": detail}], "code": reason}, status=403)


def authorise(key: IntakeKey | None, record_type: str, data: dict[str, Any],
              anonymous_municipalities: Collection[str]) -> web.Response | None:
    """None when ``key`` (None: anonymous) may publish this event, else the 403 answer."""
    if record_type == "Incident":
        allowed: Collection[str] = key.municipalities if key else anonymous_municipalities
        muni = data.get("municipality")
        if muni not in allowed:
            return _forbidden(record_type, "municipality_mismatch",
                              f"this key may not report incidents for municipality {muni!r}", "municipality")
    elif record_type == "StatusUpdate":
        agency = data.get("agency_id")
        if key is None or agency not in key.agencies:
            return _forbidden(record_type, "agency_mismatch",
                              f"this key may not post status updates as agency {agency!r}", "agency_id")
    elif key is None or not key.alerts:
        return _forbidden(record_type, "not_an_alerting_authority", "this key may not publish CAP alerts")
    return None


# --------------------------------------------------------------------------- delivery


async def deliver(app: web.Application, data: dict[str, Any] | Any,
                  record_type: str) -> tuple[Queued, DeliveryReport | None]:
    """Publish one event and wait for the broker's acknowledgement (None: not in time).

    Raises :class:`Rejected` (invalid), ``RecursionError`` (nested too deeply) and
    :class:`RegistryUnavailable` before anything is queued.
    """
    publisher, config = app[PUBLISHER_KEY], app[CONFIG_KEY]
    loop = asyncio.get_running_loop()
    delivered, on_result = app[ACKS_KEY].waiter(loop)
    queued = publisher.publish(data, record_type=record_type, on_result=on_result)
    # A timer rather than asyncio.wait_for(shield(...)): no task per request, and a request
    # that times out leaves its future resolved (None), which the late report then skips.
    timer = loop.call_later(config.ack_timeout, expire, delivered)
    try:
        return queued, await delivered
    finally:
        timer.cancel()

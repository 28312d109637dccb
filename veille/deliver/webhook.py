"""Webhook delivery: a dispatch POSTed as JSON, signed per Standard Webhooks 1.0.

Body: ``schemas/json/dispatch-webhook.v1.json`` (:func:`webhook_body`), the same bytes on every
attempt. Headers: ``webhook-id`` and ``Idempotency-Key`` = the dispatch id (a receiver that
de-duplicates on it sees each dispatch once), ``webhook-timestamp`` (this attempt) and
``webhook-signature``, made by the ``standardwebhooks`` library with the agency's secret
(``whsec_`` + base64, read from its file or environment variable at each attempt, so a rotated
secret is used at once). The request goes through the SSRF guard (:mod:`veille.deliver.ssrf`),
never follows a redirect, and has a whole-request timeout.

Logged: dispatch id, agency, destination (scheme, host, path), status, latency. Never the
secret, the signature, the body or the query string of the URL.
"""

from __future__ import annotations

import binascii
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from types import TracebackType
from typing import Any

import aiohttp
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook
from yarl import URL

from veille.deliver.cases import case_body
from veille.deliver.config import SecretUnavailable, WebhookDelivery
from veille.deliver.outcome import Attempt, Stopwatch, bounded, http_outcome
from veille.deliver.settings import DeliverySettings
from veille.deliver.ssrf import DestinationRefused, check_url, guarded_session
from veille.deliver.view import DispatchView, severity_label, view
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, Dispatch

SCHEMA = "dispatch-webhook.v1"
SCHEMA_FILE = files("veille.schemas") / "json" / f"{SCHEMA}.json"  # documents the body
USER_AGENT = "veille-deliver/1 (Standard Webhooks 1.0)"
REPLY_BYTES = 2048
log = logging.getLogger("veille.deliver.webhook")


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def webhook_body(v: DispatchView, *, include_reporter_contact: bool = False) -> dict[str, Any]:
    """The JSON body of ``dispatch-webhook.v1`` for a dispatch (every key always present)."""
    d = v.dispatch
    reporter = None
    if include_reporter_contact and v.reporter is not None:
        reporter = v.reporter.model_dump(mode="json")
    return {
        "schema": SCHEMA, "dispatch_id": str(d.id), "event_type": d.event_type.value,
        "event_id": d.event_id, "agency_id": d.agency_id, "service": d.service.value, "rule": d.rule,
        "cross_boundary": d.cross_boundary, "municipality": d.municipality, "category": d.category,
        "category_label": v.category_label, "severity": d.severity, "severity_label": v.severity_label,
        "reported_at": _time(d.reported_at), "routed_at": _time(d.routed_at),
        "occurred_at": _time(v.occurred_at),
        "location": None if v.location is None else {"lat": v.location.lat, "lon": v.location.lon},
        "address": v.address, "description": v.description, "headline": v.headline, "area": v.area,
        "reporter": reporter,
        "photos": [{"url": link.url, "media_type": link.media_type, "expires_at": _time(link.expires_at)}
                   for link in v.photo_links],
        # Optional since v1 grew it (docs/grouping.md): null unless the report is grouped into a
        # case; case.role "update" is a later report of the case, never a new dispatch.
        "case": case_body(d, severity_label),
    }


def encode_body(body: dict[str, Any]) -> bytes:
    """Stable bytes (sorted keys, no spaces, UTF-8): the signature covers exactly these."""
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def signed_headers(secret: str, dispatch_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers (and Idempotency-Key) for ``body``."""
    signature = Webhook(secret).sign(dispatch_id, at, body)
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": dispatch_id,
            "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature,
            "Idempotency-Key": dispatch_id}


def loggable(url: str) -> str:
    """scheme://host[:port]/path: no credentials, no query (tokens live there)."""
    try:
        u = URL(url)
        return str(u.with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return "<URL>"


class WebhookSender:
    """Sends dispatches to webhooks; one per deliverer (it keeps an HTTP session)."""

    def __init__(self, settings: DeliverySettings, *, session: aiohttp.ClientSession | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.clock = clock
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = guarded_session(self.settings.networks, self.settings.http_timeout_seconds)
        return self._session

    async def send(self, dispatch: Dispatch, config: WebhookDelivery, *,
                   dispatch_view: DispatchView | None = None) -> Attempt:
        clock = Stopwatch()
        url = config.url_for(dispatch.category)
        where = loggable(url)

        def result(outcome: DeliveryOutcome, reply: str | None, status: int | None = None) -> Attempt:
            attempt = Attempt(method=DeliveryMethod.webhook, outcome=outcome, status_code=status,
                              reply=bounded(reply), latency_ms=clock.ms())
            log.info("webhook dispatch=%s agency=%s to=%s outcome=%s status=%s latency_ms=%d",
                     dispatch.id, dispatch.agency_id, where, outcome.value, status, attempt.latency_ms)
            return attempt

        body = encode_body(webhook_body(dispatch_view or view(dispatch),
                                        include_reporter_contact=config.include_reporter_contact))
        try:
            await check_url(url, self.settings.networks, resolve=False)  # literal addresses
            secret = config.secret.reveal().get_secret_value()
        except DestinationRefused as exc:
            return result(DeliveryOutcome.failed, f"destination refused: {exc}")
        except SecretUnavailable as exc:
            return result(DeliveryOutcome.failed, str(exc))
        try:
            headers = signed_headers(secret, str(dispatch.id), body, self.clock())
        except (binascii.Error, EmptyWebhookSecretError, ValueError):
            return result(DeliveryOutcome.failed, f"the secret in {config.secret.where} is not a Standard "
                          "Webhooks secret (whsec_ followed by base64)")
        try:
            async with self._http().post(url, data=body, headers=headers, allow_redirects=False) as resp:
                snippet = (await resp.content.read(REPLY_BYTES)).decode("utf-8", "replace").strip()
                reply = f"HTTP {resp.status} {resp.reason or ''}".strip()
                reply += f": {snippet}" if snippet else ""
                return result(http_outcome(resp.status), reply, resp.status)
        except DestinationRefused as exc:
            return result(DeliveryOutcome.failed, f"destination refused: {exc}")
        except TimeoutError:
            return result(DeliveryOutcome.retry, f"no answer within {self.settings.http_timeout_seconds:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return result(DeliveryOutcome.retry, f"{type(exc).__name__}: {exc}")

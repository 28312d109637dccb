"""The bodies' own systems, for the demo and the tests: a webhook endpoint that verifies
Standard Webhooks signatures with the standard's library, an SMTP mailbox (an aiosmtpd handler),
and a GeoReport v2 endpoint written from the specification's examples. Local tooling: nothing on
the production path imports it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import email.policy
import itertools
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Mailbox:
    """aiosmtpd handler keeping every message it accepts; refuses recipients it is told to."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


SECRET = "whsec_" + base64.b64encode(b"the body's shared secret, 32 b.").decode()


@dataclass
class Receiver:
    """A body's webhook endpoint: verifies, records, answers as told."""

    secret: str = SECRET
    status: int = 204
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(self.delay)
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.refused.append(str(exc))
            return web.Response(status=401, text=f"signature: {exc}")
        self.received.append(payload)
        self.headers.append(dict(request.headers))
        return web.Response(status=self.status, text="gone" if self.status == 410 else "")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        app.router.add_post("/flood", self.handle)
        return app


KEY = "o311-key-3f9a"
# The specification's service notice example, as a body's server would answer.
NOTICE = ("The City will inspect and require the responsible party to correct within 24 hours and/or "
          "issue a Correction Notice or Notice of Violation of the Public Works Code")


def _error(status: int, description: str) -> web.Response:
    return web.json_response([{"code": status, "description": description}], status=status)


@dataclass
class GeoReport:
    """A body's GeoReport v2 endpoint, in memory."""

    services: frozenset[str] = frozenset({"VOI-02", "EP-01"})
    token_mode: bool = False
    offers_updates: bool = True
    fail_with: int | None = None
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    posted: list[dict[str, str]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(638344))

    async def post_request(self, request: web.Request) -> web.Response:
        if self.fail_with:
            return web.Response(status=self.fail_with, text="internal error")
        form = {k: str(v) for k, v in (await request.post()).items()}
        if form.get("api_key") != KEY:
            return _error(403, "Invalid api_key received -- can't proceed with create_request.")
        if form.get("service_code") not in self.services:
            return _error(404, f"service_code {form.get('service_code')} not found")
        if not ({"lat", "long"} <= set(form) or "address_string" in form):
            return _error(400, "a location (lat/long or address_string) is required")
        self.posted.append(form)
        sid = next(self.ids)  # an integer, as in the specification's examples
        self.requests[str(sid)] = {
            "service_request_id": sid, "status": "open", "status_notes": None,
            "service_code": form["service_code"], "description": form.get("description"),
            "agency_responsible": None, "service_notice": NOTICE,
            "requested_datetime": "2010-04-14T06:37:38-08:00",
            "updated_datetime": "2010-04-14T06:37:38-08:00",
            "expected_datetime": "2010-04-15T06:37:38-08:00", "address": form.get("address_string"),
            "address_id": 545483, "zipcode": 94122, "lat": float(form.get("lat", 0)),
            "long": float(form.get("long", 0)), "media_url": None,
        }
        if self.token_mode:
            token = f"tok{sid}"
            self.tokens[token] = str(sid)
            return web.json_response([{"token": token}], status=201)
        return web.json_response([{"service_request_id": sid, "service_notice": NOTICE, "account_id": None}],
                                 status=201)

    async def get_requests(self, request: web.Request) -> web.Response:
        ids = request.query.get("service_request_id", "").split(",")
        return web.json_response([self.requests[i] for i in ids if i in self.requests])

    async def get_token(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self.tokens:
            return web.json_response([])
        return web.json_response([{"service_request_id": int(self.tokens[token]), "token": token}])

    async def get_updates(self, request: web.Request) -> web.Response:
        if not self.offers_updates:
            return _error(404, "not found")
        if request.query.get("api_key") != KEY:
            return _error(403, "Invalid api_key")
        start = dt.datetime.fromisoformat(request.query["start_date"])
        end = dt.datetime.fromisoformat(request.query["end_date"])
        return web.json_response([u for u in self.updates
                                  if start <= dt.datetime.fromisoformat(u["updated_datetime"]) <= end])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/open311/v2/requests.json", self.post_request)
        app.router.add_get("/open311/v2/requests.json", self.get_requests)
        app.router.add_get("/open311/v2/tokens/{token}.json", self.get_token)
        app.router.add_get("/open311/v2/servicerequestupdates.json", self.get_updates)
        return app

"""Who may open the console: loopback only by default; a token or basic auth when bound elsewhere.

The store holds incident-level data (places, times, pseudonyms). Bound to another interface
without credentials, the sink still serves ``/metrics`` and ``/healthz`` (Prometheus and probes;
no personal data) but answers 403 on the console and data routes, rather than exposing them.
Credentials come from the environment (``VEILLE_CONSOLE_TOKEN``, or ``VEILLE_CONSOLE_USER`` and
``VEILLE_CONSOLE_PASSWORD``); behind a reverse proxy, the proxy terminates TLS and may inject the
token (README, "The console").
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from veille.reads.console.sso import ROUTES_PREFIX, signed_in

# Probes and Prometheus carry no credentials; metrics have no personal data (labels are agencies,
# services, reasons).
OPEN_PATHS = frozenset({"/healthz", "/metrics"})


@dataclass(frozen=True)
class Credentials:
    token: str = ""
    user: str = ""
    password: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.token or (self.user and self.password))

    def accepts(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if self.token and scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if self.user and self.password and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return (hmac.compare_digest(user.encode(), self.user.encode())
                    & hmac.compare_digest(password.encode(), self.password.encode()))
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(credentials: Credentials, host: str, sso: bool = False) -> Middleware:
    """``sso``: single sign-on is on (``veille.reads.console.sso``; its session middleware
    runs before this one): its session, or the credentials, on every interface."""
    exposed = not is_loopback(host)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if sso:
            return await _single_sign_on(request, handler, credentials)
        if not credentials.configured and exposed:
            return web.json_response({"error": f"the console is bound to {host} without credentials: "
                                      "set VEILLE_CONSOLE_TOKEN or VEILLE_CONSOLE_USER and "
                                      "VEILLE_CONSOLE_PASSWORD, or bind to 127.0.0.1"}, status=403)
        if credentials.configured and not credentials.accepts(request.headers.get("Authorization", "")):
            headers = {"WWW-Authenticate": 'Basic realm="veille", charset="UTF-8"'} \
                if credentials.user else {"WWW-Authenticate": "Bearer"}
            return web.json_response({"error": "authentication required"}, status=401, headers=headers)
        return await handler(request)

    return check


async def _single_sign_on(request: web.Request, handler: Handler,
                          credentials: Credentials) -> web.StreamResponse:
    if request.path.startswith(ROUTES_PREFIX) or await signed_in(request):
        return await handler(request)
    if credentials.configured and credentials.accepts(request.headers.get("Authorization", "")):
        return await handler(request)
    if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPSeeOther(URL(f"{ROUTES_PREFIX}login").with_query(next=request.path_qs))
    return web.json_response({"error": "authentication required: log in at /console/oidc/login"},
                             status=401)

"""The single sign-on's routes, mounted by the agency desk on its sub-application (``/agence``)::

    GET  /agence/oidc/             who is signed in, or the provider's button
    GET  /agence/oidc/login        to the provider (state, nonce, PKCE S256 kept in the session)
    GET  /agence/oidc/callback     back from it: the code exchanged, the tokens checked, the
                                   claims mapped to a body (identity.yaml), the session opened
    POST /agence/oidc/deconnexion  the session forgotten, then the provider's logout if it has one

and, with the ``CONSOLE`` audience, the same under ``/console/oidc/`` on the console's app
(``veille.reads.console.sso``), where identity.yaml's ``console`` rules give a console role.

The session (aiohttp-session, encrypted cookie, SameSite=Lax so that the provider's redirect
back carries it) holds the pending login, then the :class:`Identity` the desk authorizes every
request from (or the :class:`ConsoleIdentity`). Nothing else is stored: no token outlives the
session, and the ID token is kept only as the provider's logout hint.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from aiohttp import web
from aiohttp_session import get_session, new_session
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import Counter
from yarl import URL

from veille.config import Settings
from veille.territory.identity_map import IdentityMap, console_grant, grant_for, read_identity_map
from veille.territory.model import Territory, TerritoryError
from veille.web.i18n import page_texts
from veille.web.identity import (
    CONSOLE_SESSION_KEY,
    ConsoleIdentity,
    Identity,
    forget,
    recall,
    recall_console,
    remember,
    remember_console,
)
from veille.web.oidc.config import OidcSettings
from veille.web.oidc.provider import OidcError, Pending, Provider

log = logging.getLogger(__name__)

PENDING_KEY = "oidc_pending"
ID_TOKEN_KEY = "oidc_id_token"

LOGINS = Counter("veille_oidc_logins", "Single sign-on attempts by outcome (signed_in, refused: "
                 "no rule of identity.yaml admits the person, failed: the provider or a token "
                 "check said no, expired: no pending login matched)", ["outcome", "reason"])

PROVIDER_KEY = web.AppKey("oidc_provider", Provider)
MAP_KEY = web.AppKey("oidc_identity_map", IdentityMap)
OIDC_SETTINGS_KEY = web.AppKey("oidc_settings", OidcSettings)
AGENCIES_KEY = web.AppKey("oidc_agency_names", dict)
AUDIENCE_KEY = web.AppKey("oidc_audience", object)

_ENV = Environment(loader=PackageLoader("veille.web.oidc", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
_CSS = files("veille.web.oidc").joinpath("style.css").read_text(encoding="utf-8")
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                      "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"}


def with_provider_form_action(app: web.Application, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` whose CSP lets a form's answer redirect to the identity provider (the logout
    form of an app where the sign-on's routes are mounted); unchanged elsewhere."""
    oidc = app.get(OIDC_SETTINGS_KEY)
    csp = headers.get("Content-Security-Policy", "")
    if oidc is None or "form-action 'self'" not in csp:
        return headers
    origin = URL(oidc.issuer).origin()
    return {**headers,
            "Content-Security-Policy": csp.replace("form-action 'self'", f"form-action 'self' {origin}")}


@dataclass(frozen=True)
class Audience:
    """Whom the routes log in: the desk's people (on its sub-app, ``identity.yaml``'s ``rules``)
    or the console's (on the sink's app, its ``console`` rules)."""

    console: bool
    base: str  # the routes' path on the app they are mounted on
    default_next: str  # where a login lands, and the only paths it may be sent to

    @property
    def back_route(self) -> str:  # after logout: the desk's login page (both ways in), or ours
        return "oidc-home" if self.console else "desk-login"


DESK = Audience(console=False, base="/oidc", default_next="/agence/")
CONSOLE = Audience(console=True, base="/console/oidc", default_next="/console/")


def oidc_routes(settings: Settings, territory: Territory | None = None,
                oidc: OidcSettings | None = None,
                audience: Audience = DESK) -> Callable[[web.Application], None] | None:
    """The ``extra_routes`` the desk's ``register`` mounts (or, with ``CONSOLE``, what the
    console mounts on its app), None when no provider is configured. Reads identity.yaml now:
    a deployment with a broken file does not start."""
    oidc = oidc or OidcSettings()
    if not oidc.configured:
        return None
    path = oidc.identity_path(settings)
    identity_map = read_identity_map(path)
    if territory is not None:
        unknown = sorted({r.agency for r in identity_map.rules} - set(territory.agencies))
        if unknown:
            raise TerritoryError(f"{path}: agencies not in the territory: {', '.join(unknown)}")
    names = {a.id: a.name for a in territory.agencies.values()} if territory is not None else {}
    provider = Provider(oidc)

    def mount(app: web.Application) -> None:
        app[PROVIDER_KEY] = provider
        app[MAP_KEY] = identity_map
        app[OIDC_SETTINGS_KEY] = oidc
        app[AGENCIES_KEY] = names
        app[AUDIENCE_KEY] = audience
        base = audience.base
        app.router.add_get(f"{base}/", home, name="oidc-home")
        app.router.add_get(f"{base}/login", login, name="oidc-login")
        app.router.add_get(f"{base}/callback", callback, name="oidc-callback")
        app.router.add_post(f"{base}/deconnexion", logout, name="oidc-logout")
        app.router.add_get(f"{base}/style.css", style, name="oidc-style")

    return mount


def _render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    router = request.app.router

    def url(route: str) -> str:
        return str(router[route].url_for())

    body = _ENV.get_template(name).render(
        t=page_texts("oidc"), common=page_texts("common"), url=url,
        provider=request.app[OIDC_SETTINGS_KEY].provider_name, configured=True, **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=with_provider_form_action(request.app, HEADERS))


def _redirect_uri(request: web.Request) -> str:
    base = request.app[OIDC_SETTINGS_KEY].redirect_base.rstrip("/")
    path = str(request.app.router["oidc-callback"].url_for())
    return f"{base}{path}" if base else str(request.url.with_path(path).with_query(None))


def _safe_next(value: str | None, audience: Audience = DESK) -> str:
    """Only a path of the desk (or the console): never another site (an open redirect would
    lend it our name)."""
    home = audience.default_next
    if value and value.startswith(home) and "//" not in value and "\\" not in value:
        return value
    return home


def _audience(request: web.Request) -> Audience:
    audience = request.app[AUDIENCE_KEY]
    assert isinstance(audience, Audience)
    return audience


async def style(request: web.Request) -> web.Response:
    return web.Response(text=_CSS, content_type="text/css", headers={"Cache-Control": "max-age=3600"})


async def home(request: web.Request) -> web.Response:
    session = await get_session(request)
    audience = _audience(request)
    name, where = "", ""
    if audience.console:
        console = recall_console(session)
        if console is not None:
            name, where = console.display_name or console.subject, page_texts("oidc")["console"]
    else:
        identity = recall(session)
        if identity is not None:
            name = identity.display_name or identity.subject
            where = request.app[AGENCIES_KEY].get(identity.agency_id, identity.agency_id)
            where += f" ({page_texts('oidc')['role.' + identity.role]})"
    message = page_texts("oidc")["logged_out"] if request.query.get("fin") == "1" else ""
    return _render(request, "home.html", signed_in=bool(name), who=name, where=where,
                   next=audience.default_next, message=message)


async def login(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER_KEY]
    try:
        after = _safe_next(request.query.get("next"), _audience(request))
        url, pending = await provider.authorization_url(_redirect_uri(request), after)
    except OidcError as exc:
        log.warning("single sign-on: provider unavailable: %s", exc)
        LOGINS.labels("failed", exc.reason).inc()
        return _render(request, "failed.html", status=502, message=page_texts("oidc")["failed_provider"])
    session = await get_session(request)
    session[PENDING_KEY] = pending.dump()
    raise web.HTTPSeeOther(url)


async def callback(request: web.Request) -> web.Response:
    t = page_texts("oidc")
    session = await get_session(request)
    raw = session.pop(PENDING_KEY, None)  # one use only: a replayed callback finds nothing
    state = request.query.get("state", "")
    if not isinstance(raw, dict) or not hmac.compare_digest(str(raw.get("state", "")).encode(),
                                                            state.encode()):
        LOGINS.labels("expired", "state").inc()
        return _render(request, "failed.html", status=400, message=t["failed_expired"])
    pending = Pending(**{k: str(raw.get(k, "")) for k in ("state", "nonce", "code_verifier", "next")})
    if "error" in request.query or "code" not in request.query:
        error = request.query.get("error", "no_code")[:60]
        LOGINS.labels("failed", "provider_error").inc()
        log.info("single sign-on: the provider answered %s", error)
        return _render(request, "failed.html", status=400,
                       message=t["failed_denied"] if error == "access_denied" else t["failed_provider"])
    provider = request.app[PROVIDER_KEY]
    try:
        signed = await provider.sign_in(request.query["code"], _redirect_uri(request), pending)
    except OidcError as exc:
        log.warning("single sign-on refused: %s", exc)
        LOGINS.labels("failed", exc.reason).inc()
        return _render(request, "failed.html", status=403, message=t["failed_provider"])
    audience = _audience(request)
    oidc = request.app[OIDC_SETTINGS_KEY]
    expires_at = int(time.time() + oidc.session_hours * 3600) if oidc.session_hours > 0 else signed.expires_at
    subject = f"{signed.issuer} {signed.subject}"[:600]
    if audience.console:
        role = console_grant(request.app[MAP_KEY], signed.claims)
        admitted: Identity | ConsoleIdentity | None = None if role is None else ConsoleIdentity(
            role=role.value, subject=subject, display_name=_display_name(signed.claims),
            expires_at=expires_at)
    else:
        grant = grant_for(request.app[MAP_KEY], signed.claims)
        admitted = None if grant is None else Identity(
            agency_id=grant.agency_id, role=grant.role, subject=subject,
            display_name=_display_name(signed.claims), via="oidc", expires_at=expires_at)
    if admitted is None:
        email = signed.claims.get("email") if isinstance(signed.claims.get("email"), str) else ""
        # The log names the organisation (domain, SIRET), not the person.
        log.info("single sign-on: no rule of identity.yaml for domain %s, siret %s",
                 (email or "").rpartition("@")[2] or "-", signed.claims.get("siret") or "-")
        LOGINS.labels("refused", "unmapped").inc()
        session[ID_TOKEN_KEY] = signed.id_token  # "another account" logs out at the provider too
        return _render(request, "refused.html", status=403, email=email)
    fresh = await new_session(request)  # a new session at each login: none fixed beforehand
    if isinstance(admitted, ConsoleIdentity):
        remember_console(fresh, admitted)
        log.info("single sign-on: signed in to the console as %s", admitted.role)
    else:
        remember(fresh, admitted)
        log.info("single sign-on: signed in for %s as %s", admitted.agency_id, admitted.role)
    fresh[ID_TOKEN_KEY] = signed.id_token
    LOGINS.labels("signed_in", "").inc()
    raise web.HTTPSeeOther(_safe_next(pending.next, audience))


def _display_name(claims: dict[str, Any]) -> str:
    given = claims.get("given_name")
    family = claims.get("usual_name") or claims.get("family_name")
    parts = [p for p in (given, family) if isinstance(p, str) and p.strip()]
    name = " ".join(parts) or claims.get("name") or claims.get("email") or ""
    return str(name)[:200]


async def logout(request: web.Request) -> web.Response:
    """POST only, and the cookie is SameSite=Lax: another site cannot log someone out."""
    session = await get_session(request)
    id_token = session.pop(ID_TOKEN_KEY, None)
    forget(session)
    session.pop(CONSOLE_SESSION_KEY, None)
    session.pop(PENDING_KEY, None)
    after = str(request.app.router[_audience(request).back_route].url_for().with_query(fin="1"))
    base = request.app[OIDC_SETTINGS_KEY].redirect_base.rstrip("/")
    after_abs = f"{base}{after}" if base else str(request.url.join(URL(after)))
    provider_logout = await request.app[PROVIDER_KEY].logout_url(
        id_token if isinstance(id_token, str) else None, after_abs)
    raise web.HTTPSeeOther(provider_logout or after)

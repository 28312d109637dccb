"""Single sign-on on the monitoring cells' console, when a deployment configures it: the same
provider as the desk (``VEILLE_OIDC_*``) and ``identity.yaml``'s ``console`` rules.

Its own session (aiohttp-session, Fernet-encrypted cookie ``veille_console``, path ``/`` for the static files,
SameSite=Lax for the provider's redirect back, the relays' session key: one secret to manage)
holds a :class:`ConsoleIdentity` until the token's expiry. With single sign-on on, every
console route wants that identity or the configured token/basic credentials (scripts), on
loopback too: a page asked without either goes to the provider's login, data gets a 401.
A deployment without ``console`` rules keeps the console's access as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_session import get_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from veille.config import Settings
from veille.producers.relay.session import session_key
from veille.territory.identity_map import read_identity_map
from veille.territory.model import Territory
from veille.web.identity import recall_console
from veille.web.oidc import OidcSettings, oidc_routes
from veille.web.oidc.views import CONSOLE

COOKIE_NAME = "veille_console"
ROUTES_PREFIX = CONSOLE.base + "/"


@dataclass(frozen=True)
class ConsoleSso:
    middleware: Middleware  # the session's: before the access check
    mount: Callable[[web.Application], None]  # the routes under /console/oidc/


def console_sso(settings: Settings, territory: Territory,
                oidc: OidcSettings | None = None) -> ConsoleSso | None:
    """None when no provider is configured or identity.yaml has no ``console`` rules; raises
    TerritoryError when the file is broken (the caller keeps the console closed)."""
    oidc = oidc or OidcSettings()
    if not oidc.configured or not read_identity_map(oidc.identity_path(settings)).console:
        return None
    mount = oidc_routes(settings, territory, oidc, CONSOLE)
    assert mount is not None
    storage = EncryptedCookieStorage(
        Fernet(session_key(settings)), cookie_name=COOKIE_NAME, path="/", httponly=True,
        samesite="Lax", secure=settings.relay_cookie_secure, max_age=int(settings.relay_session_hours * 3600))
    return ConsoleSso(session_middleware(storage), mount)


async def signed_in(request: web.Request) -> bool:
    return recall_console(await get_session(request)) is not None

"""Sessions of the agencies' desk: aiohttp-session's Fernet-encrypted cookie, as the relays' form.

The cookie holds the :class:`veille.web.identity.Identity` (whatever the login: a local
account or an identity provider, whose routes under ``/agence/oidc/`` share this session) and
the CSRF secret. It is HttpOnly, Secure when ``VEILLE_RELAY_COOKIE_SECURE`` is set, expires
after ``VEILLE_RELAY_SESSION_HOURS``, and **SameSite=Lax**, not Strict like the relays': an
OpenID Connect callback is a cross-site top-level redirect, and a Strict cookie would not come
back with it. Lax still keeps it off cross-site POSTs, and every POST carries a CSRF token.

Its path is ``/`` so that the e-mails' response page (``/reponse/…``) can tell that the person
opening a signed link has a desk session for that body (:func:`peek`) and send them to the
desk's page of that dispatch: one set of pages, not two. The key is the relays' session key
(``VEILLE_RELAY_SESSION_KEY`` or the state dir's): one secret to manage; the CSRF key is
derived from it for this use.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from aiohttp import web
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet, InvalidToken

from veille.config import Settings
from veille.producers.relay.session import session_key
from veille.web.identity import Identity, recall

COOKIE_NAME = "veille_agence"


def csrf_secret(key: bytes) -> bytes:
    return hmac.new(key, b"veille-desk-csrf", hashlib.sha256).digest()


def install(app: web.Application, settings: Settings) -> bytes:
    """Add the session middleware to ``app`` (the desk's sub-application); the CSRF secret."""
    key = session_key(settings)
    storage = EncryptedCookieStorage(
        Fernet(key), cookie_name=COOKIE_NAME, path="/", httponly=True, samesite="Lax",
        secure=settings.relay_cookie_secure, max_age=int(settings.relay_session_hours * 3600))
    setup_sessions(app, storage)
    return csrf_secret(key)


def peek(request: web.Request, settings: Settings) -> Identity | None:
    """The desk identity in ``request``'s cookie, read outside the desk (the response page)."""
    raw = request.cookies.get(COOKIE_NAME)
    if not raw:
        return None
    try:
        data = json.loads(Fernet(session_key(settings)).decrypt(
            raw.encode(), ttl=int(settings.relay_session_hours * 3600)))
        session = data.get("session") if isinstance(data, dict) else None
    except (InvalidToken, ValueError):
        return None
    return recall(session) if isinstance(session, dict) else None

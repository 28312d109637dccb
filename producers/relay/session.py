"""Sessions of the relays' form: aiohttp-session with Fernet-encrypted cookie storage.

Why an encrypted cookie (aiohttp-session's ``EncryptedCookieStorage``, on cryptography's
Fernet: AES-128-CBC + HMAC-SHA256, with a timestamp) rather than a server-side store: the
intake keeps no database, and a session holds only the account id, the password
generation it was opened with and the CSRF secret. The cookie is HttpOnly, SameSite=Strict
(on top of the CSRF tokens), Secure when ``VEILLE_RELAY_COOKIE_SECURE`` is set, and expires
after ``VEILLE_RELAY_SESSION_HOURS``. A rotated or revoked account ends its sessions at the
next request (the generation no longer matches). The key comes from
``VEILLE_RELAY_SESSION_KEY``, else from ``state_dir/relay_session.key`` (created once, mode
0600), so a restarted intake keeps its relays logged in and their offline reports sendable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from aiohttp import web
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from veille.config import Settings

COOKIE_NAME = "veille_relais"
KEY_FILE = "relay_session.key"


def session_key(settings: Settings) -> bytes:
    configured = settings.relay_session_key.get_secret_value()
    if configured:
        return configured.encode()
    path: Path = settings.state_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another intake of this state dir made it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def csrf_secret(key: bytes) -> bytes:
    """A key for the CSRF HMACs derived from the session key (one secret to manage, two uses)."""
    return hmac.new(key, b"veille-relay-csrf", hashlib.sha256).digest()


def install(app: web.Application, settings: Settings, path: str) -> bytes:
    """Add the session middleware to ``app`` (the relays' sub-application); the CSRF secret."""
    key = session_key(settings)
    storage = EncryptedCookieStorage(
        Fernet(key), cookie_name=COOKIE_NAME, path=path, httponly=True, samesite="Strict",
        secure=settings.relay_cookie_secure, max_age=int(settings.relay_session_hours * 3600))
    setup_sessions(app, storage)
    return csrf_secret(key)

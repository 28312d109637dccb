"""What the single sign-on's tests share: the real desk with the sign-on's routes on a real
aiohttp server, and a scripted login at Keycloak's real form (for
the tests that need the raw tokens of a login)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from response_helpers import routed_dispatch

from veille.config import Settings
from veille.local.keycloak import KeycloakInfo, LocalKeycloak
from veille.producers import desk
from veille.producers.desk.book import DeskBook
from veille.producers.desk.session import COOKIE_NAME
from veille.producers.relay.session import session_key
from veille.schemas.models import Dispatch, ServiceKind
from veille.territory.files import read_territory
from veille.web.identity import Identity, recall
from veille.web.oidc import OidcSettings, oidc_routes

EXAMPLE = Path(__file__).resolve().parents[2] / "veille" / "territories" / "example"
CLIENT_ID = "veille-desk"
CLIENT_SECRET = "secret-de-test-veille-desk"
SHORT_CLIENT_ID = "veille-desk-short"
SHORT_CLIENT_SECRET = "secret-de-test-court"
REALM = "veille-test"
OTHER_REALM = "veille-autre"


@dataclass(frozen=True)
class KeycloakFixture:
    info: KeycloakInfo
    keycloak: LocalKeycloak

    @property
    def issuer(self) -> str:
        return self.info.issuer(REALM)

    @property
    def other_issuer(self) -> str:
        return self.info.issuer(OTHER_REALM)


def password(username: str) -> str:
    return f"mot-de-passe-{username}"


def oidc_settings(issuer: str, **overrides: Any) -> OidcSettings:
    return OidcSettings(issuer=issuer, client_id=overrides.pop("client_id", CLIENT_ID),
                        client_secret=overrides.pop("client_secret", CLIENT_SECRET),
                        provider_name="Keycloak de test", **overrides)


def two_bodies_book(settings: Settings) -> tuple[DeskBook, dict[str, Dispatch]]:
    """A dispatch for Montveille's town hall (Alice's body) and one for the stormwater
    syndicate (Bruno's), each with its own words."""
    book = DeskBook()
    town = routed_dispatch(settings, description="Plaque d'égout descellée rue de la Mairie")
    syndicate = routed_dispatch(settings, agency="syndicat-eaux-veille", service=ServiceKind.stormwater,
                                category="blocked_drain", description="Avaloir bouché au lavoir")
    for d in (town, syndicate):
        book.apply(d)
    book.caught_up.set()
    return book, {"mairie-35401": town, "syndicat-eaux-veille": syndicate}


@dataclass(frozen=True)
class Desk:
    app: web.Application
    settings: Settings
    dispatches: dict[str, Dispatch]  # by agency id

    def identity(self, context: Any) -> Identity | None:
        """The identity in a browser context's desk cookie, read as the desk reads it."""
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        raw = cookies.get(COOKIE_NAME)
        if not raw:
            return None
        # The browser keeps the quotes the server put around a value with "=" in it.
        data = json.loads(Fernet(session_key(self.settings)).decrypt(raw.strip('"').encode()))
        return recall(data.get("session") or {})


def build_app(oidc: OidcSettings, state_dir: Path) -> Desk:
    """``oidc`` as the environment of the deployment: the desk reads it too (its login button)."""
    env = {f"VEILLE_OIDC_{k.upper()}": str(v.get_secret_value() if hasattr(v, "get_secret_value") else v)
           for k, v in oidc.model_dump().items() if v not in ("", None)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return _build_app(OidcSettings(), state_dir)


def _build_app(oidc: OidcSettings, state_dir: Path) -> Desk:
    """An intake app with the real desk on it (its read model filled here, no broker) and the
    sign-on's routes mounted by the desk's ``extra_routes``, as ``veille intake serve`` does."""
    settings = Settings(state_dir=state_dir, territory_dir=EXAMPLE)
    territory = read_territory(EXAMPLE)
    mount = oidc_routes(settings, territory, oidc)
    assert mount is not None
    book, dispatches = two_bodies_book(settings)
    app = web.Application()
    desk.register(app, territory, settings, book=book, feed=False, extra_routes=mount)
    return Desk(app, settings, dispatches)


@dataclass(frozen=True)
class Served:
    url: str  # http://127.0.0.1:PORT


@contextmanager
def serve(app: web.Application) -> Iterator[Served]:
    """``app`` on a free loopback port, in a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield Served(f"http://127.0.0.1:{port}")
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@dataclass(frozen=True)
class Login:
    tokens: dict[str, Any]
    nonce: str

    @property
    def id_token(self) -> str:
        return str(self.tokens["id_token"])


def scripted_login(issuer: str, username: str, client_id: str = CLIENT_ID,
                   client_secret: str = CLIENT_SECRET) -> Login:
    """The authorization-code flow at Keycloak's real login form, without a browser: the raw
    token response of ``username``'s login and the nonce it was asked with."""
    redirect_uri = "http://127.0.0.1:9/callback"  # never fetched: the code is read off the redirect
    nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with httpx.Client(timeout=30, follow_redirects=False) as http:
        meta = http.get(f"{issuer}/.well-known/openid-configuration").json()
        page = http.get(meta["authorization_endpoint"], params={
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": "openid email profile", "state": "s" * 32, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        assert page.status_code == 200, page.text[:500]
        action = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text)
        assert action, page.text[:2000]
        # Keycloak marks its cookies Secure (a browser keeps them for 127.0.0.1, httpx does not
        # over http): hand them back as a browser would.
        cookies = "; ".join(c.split(";")[0] for c in page.headers.get_list("set-cookie"))
        done = http.post(html.unescape(action.group(1)), headers={"Cookie": cookies},
                         data={"username": username, "password": password(username), "credentialId": ""})
        assert done.status_code == 302, re.findall(r"(?:alert|error)[^<]{0,300}<[^>]*>[^<]{0,300}", done.text)
        code = parse_qs(urlparse(done.headers["location"]).query)["code"][0]
        tokens = http.post(meta["token_endpoint"], auth=(client_id, client_secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier})
        assert tokens.status_code == 200, tokens.text
        return Login(tokens.json(), nonce)


def authorization_page_status(issuer: str, **params: str) -> tuple[int, str]:
    """What Keycloak answers an authorization request (to show what the realm demands)."""
    with httpx.Client(timeout=30, follow_redirects=False) as http:
        meta = http.get(f"{issuer}/.well-known/openid-configuration").json()
        resp = http.get(meta["authorization_endpoint"], params=params)
        return resp.status_code, resp.headers.get("location", "") + resp.text[:2000]

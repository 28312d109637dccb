"""What the single sign-on's tests share: the desk's session set-up with the sign-on's routes on
a real aiohttp server (until the desk's own sub-application is merged, a stand-in answers
``/agence/`` with the session's identity), and a scripted login at Keycloak's real form (for
the tests that need the raw tokens of a login)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
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
from aiohttp import web
from aiohttp_session import get_session
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from veille.config import Settings
from veille.local.keycloak import KeycloakInfo, LocalKeycloak
from veille.territory.files import read_territory
from veille.web.assets import add_vendor_routes
from veille.web.identity import recall
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


async def _stand_in_inbox(request: web.Request) -> web.Response:
    identity = recall(await get_session(request))
    if identity is None:
        return web.json_response({"identity": None}, status=401)
    return web.json_response({"identity": identity.model_dump(mode="json")})


def build_app(oidc: OidcSettings, state_dir: Path) -> web.Application:
    """The intake's ``/agence`` sub-application as the desk sets it up: encrypted cookie
    sessions (SameSite=Lax), the sign-on's routes mounted by ``extra_routes``."""
    mount = oidc_routes(Settings(state_dir=state_dir, territory_dir=EXAMPLE), read_territory(EXAMPLE), oidc)
    assert mount is not None
    desk = web.Application()
    setup_sessions(desk, EncryptedCookieStorage(Fernet(Fernet.generate_key()), cookie_name="veille_agence",
                                                path="/agence/", httponly=True, samesite="Lax"))
    mount(desk)
    add_vendor_routes(desk)  # as the desk does: axe-core for the tests comes from there
    desk.router.add_get("/", _stand_in_inbox)
    app = web.Application()
    app.add_subapp("/agence", desk)
    return app


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

"""The sign-on's routes when things go wrong, without a provider: off when not configured, a
provider that does not answer, a callback with no login pending, the provider's own error, a
login's ``next`` that points elsewhere, a non-https issuer. Nothing crashes: a French page,
a metric."""

from __future__ import annotations

import asyncio
import html
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from oidc_helpers import EXAMPLE, build_app, oidc_settings

from veille.config import Settings
from veille.territory.files import read_territory
from veille.territory.model import TerritoryError
from veille.web.oidc import OidcSettings, oidc_routes
from veille.web.oidc.provider import OidcError, Provider
from veille.web.oidc.views import LOGINS, _safe_next

Scenario = Callable[[TestClient], Awaitable[None]]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(issuer: str, tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(oidc_settings(issuer), tmp_path).app)) as client:
            await scenario(client)

    asyncio.run(main())


def count(outcome: str, reason: str) -> float:
    return float(LOGINS.labels(outcome, reason)._value.get())


def test_off_when_not_configured(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, territory_dir=EXAMPLE)
    assert oidc_routes(settings, read_territory(EXAMPLE), OidcSettings(issuer="", client_id="")) is None


def test_an_identity_file_naming_unknown_bodies_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "identity.yaml").write_text("rules: [{agency: mairie-99999, email_domains: [x.fr]}]\n")
    oidc = OidcSettings(issuer="https://idp.example", client_id="c",
                        identity_file=str(tmp_path / "identity.yaml"))
    with pytest.raises(TerritoryError, match="mairie-99999"):
        oidc_routes(Settings(state_dir=tmp_path, territory_dir=EXAMPLE), read_territory(EXAMPLE), oidc)


def test_a_provider_that_does_not_answer_gives_a_french_page(tmp_path: Path) -> None:
    before = count("failed", "discovery")

    async def scenario(client: TestClient) -> None:
        login_page = await (await client.get("/agence/connexion")).text()
        assert "/agence/oidc/login" in login_page  # the desk shows the provider's button
        resp = await client.get("/agence/oidc/login", allow_redirects=False)
        assert resp.status == 502
        page = html.unescape(await resp.text())
        assert "Le fournisseur d'identité n'a pas confirmé votre connexion" in page

    run(f"http://127.0.0.1:{closed_port()}/realms/x", tmp_path, scenario)
    assert count("failed", "discovery") - before == 1


def test_callbacks_without_a_pending_login_or_with_the_provider_s_error(tmp_path: Path) -> None:
    async def scenario(client: TestClient) -> None:
        for query in ("", "?code=x&state=y", "?error=access_denied&state=y"):
            resp = await client.get(f"/agence/oidc/callback{query}", allow_redirects=False)
            assert resp.status == 400
            assert "La demande de connexion a expiré ou a déjà servi." in html.unescape(await resp.text())
        resp = await client.get("/agence/", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/agence/connexion"
        # Logging out with no session is harmless, and needs POST.
        assert (await client.get("/agence/oidc/deconnexion", allow_redirects=False)).status == 405

    run(f"http://127.0.0.1:{closed_port()}/realms/x", tmp_path, scenario)


@pytest.mark.parametrize("issuer", ["http://idp.example/realms/x", "http://10.0.0.1/x"])
def test_an_issuer_off_this_machine_must_be_https(issuer: str) -> None:
    with pytest.raises(OidcError) as err:
        asyncio.run(Provider(OidcSettings(issuer=issuer, client_id="c")).metadata())
    assert err.value.reason == "insecure_issuer"


@pytest.mark.parametrize(("asked", "kept"), [
    ("/agence/dispatches/abc", "/agence/dispatches/abc"), (None, "/agence/"),
    ("https://evil.example/", "/agence/"), ("//evil.example/agence/", "/agence/"),
    ("/agence//evil.example", "/agence/"), ("/agence/\\evil", "/agence/"), ("/console/", "/agence/")])
def test_after_login_only_a_desk_path(asked: str | None, kept: str) -> None:
    assert _safe_next(asked) == kept

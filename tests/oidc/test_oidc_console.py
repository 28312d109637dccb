"""The monitoring cells' console with single sign-on (identity.yaml's ``console`` rules) through
the real Keycloak in a real Chromium: a page asked without a session goes to the provider and
back; the cell's member gets the console, a desk agent does not; data without a session or
credentials is a 401; the configured token still opens it for scripts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import AXE_TAGS, axe_violations, launch_browser, screenshot
from oidc_helpers import EXAMPLE, KeycloakFixture, oidc_settings, password, serve
from sink_helpers import chdb_store

from veille.config import Settings
from veille.reads.app import make_app
from veille.reads.console.access import Credentials
from veille.reads.console.sso import console_sso
from veille.territory.files import read_territory

TOKEN = "jeton-des-scripts-de-la-cellule"


@pytest.fixture(scope="module")
def console(keycloak: KeycloakFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("console")
    settings = Settings(state_dir=state, territory_dir=EXAMPLE)
    territory = read_territory(EXAMPLE)
    sso = console_sso(settings, territory, oidc_settings(keycloak.issuer))
    assert sso is not None
    with chdb_store(Path(state) / "store") as store:
        app = make_app(store, territory, Credentials(token=TOKEN), "127.0.0.1", sso=sso)
        with serve(app) as served:
            yield served.url


def log_in(browser: Any, console: str, username: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.goto(f"{console}/console/?period=30d")
    page.wait_for_selector("#username")  # sent to the provider
    page.fill("#username", username)
    page.fill("#password", password(username))
    page.click("#kc-login")
    return page


def no_axe_violations(page: Any, console: str) -> None:
    page.add_script_tag(url="/static/vendor/axe.min.js")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    assert [v["id"] for v in result["violations"]] == []


def test_the_cell_s_member_gets_the_console_a_desk_agent_does_not(console: str) -> None:
    with launch_browser() as browser:
        page = log_in(browser, console, "veilleur")
        page.wait_for_url(f"{console}/console/?period=30d")  # back where the login started
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.reload()
        page.wait_for_selector(".leaflet-container")  # its scripts and styles came too
        screenshot(page, "oidc-console")
        assert errors == []
        assert page.request.get(f"{console}/console/api/territory").status == 200
        page.goto(f"{console}/console/oidc/")
        assert "Connecté : Véra Veilleur, console de la cellule de veille" in page.inner_text("main")
        no_axe_violations(page, console)
        page.click("text=Se déconnecter")
        page.wait_for_url(f"{console}/console/oidc/?fin=1*")
        assert page.request.get(f"{console}/console/api/territory").status == 401

        # Refused, she has no session for the console's own copy of axe-core: the page's CSP
        # is set aside to inject it (the CSP is checked on the desk's pages).
        agent = log_in(browser, console, "alice", bypass_csp=True)
        agent.wait_for_selector("h1")
        assert agent.inner_text("h1") == "Accès refusé"
        assert axe_violations(agent) == []
        assert agent.request.get(f"{console}/console/api/territory").status == 401


def test_without_a_session_data_is_refused_and_the_token_still_works(console: str) -> None:
    with httpx.Client(base_url=console, follow_redirects=False, timeout=30) as http:
        assert http.get("/console/api/territory").status_code == 401
        page = http.get("/console/", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/console/oidc/login?next=/console/"
        assert http.get("/metrics").status_code == 200  # Prometheus carries no session
        scripted = http.get("/console/api/territory", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scripted.status_code == 200

"""Logging in to the desk through a real Keycloak in a real Chromium: the session's identity is
the body identity.yaml maps the person to, and its inbox holds that body's dispatches only;
one body's login never lands in another's session; someone no rule admits is refused with a
French page; the session ends at the token's expiry; logging out ends the provider's session
too. axe-core clean on the sign-on's pages (the desk's own are checked by its tests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import AXE_TAGS, launch_browser, screenshot
from oidc_helpers import (
    SHORT_CLIENT_ID,
    SHORT_CLIENT_SECRET,
    Desk,
    KeycloakFixture,
    build_app,
    oidc_settings,
    password,
    serve,
)

BUTTON = "Se connecter avec ProConnect / fournisseur d'identité"  # the desk's login page's


@dataclass(frozen=True)
class Site:
    url: str
    desk: Desk


@pytest.fixture(scope="module")
def site(keycloak: KeycloakFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    desk = build_app(oidc_settings(keycloak.issuer), tmp_path_factory.mktemp("desk"))
    with serve(desk.app) as served:
        yield Site(served.url, desk)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_browser() as b:
        yield b


def keycloak_form(page: Any, username: str) -> None:
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", password(username))
    page.click("#kc-login")


def log_in(browser: Any, site: Site, username: str) -> tuple[Any, Any]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site.url}/agence/oidc/login")
    keycloak_form(page, username)
    page.wait_for_url(f"{site.url}/agence/")
    return context, page


def no_axe_violations(page: Any, name: str) -> None:
    """axe-core loaded from the desk itself: the pages' Content-Security-Policy forbids the inline
    script tag that browser_helpers.axe_violations adds (and must stay on under test)."""
    page.add_script_tag(url="/agence/static/vendor/axe.min.js")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    violations = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                   "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]
    assert violations == [], (name, violations)


def sees(page: Any, site: Site, agency_id: str) -> bool:
    """Whether the page's session opens the dispatch of ``agency_id`` (404 otherwise)."""
    d = site.desk.dispatches[agency_id]
    answer = page.goto(f"{site.url}/agence/dispatches/{d.id}")
    return bool(answer.status == 200)


def test_keyboard_login_gives_the_mapped_body_s_inbox_and_logout_ends_both_sessions(
        site: Site, browser: Any, keycloak: KeycloakFixture) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    errors: list[str] = []
    other = str(site.desk.dispatches["syndicat-eaux-veille"].id)  # its 404 is the point
    page.on("console", lambda m: errors.append(f"{m.text} at {m.location['url']}")
            if m.type == "error" and other not in m.location["url"] else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{site.url}/agence/")
    page.wait_for_url(f"{site.url}/agence/connexion")
    for _ in range(10):  # keyboard only: to the provider's button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == BUTTON:
            break
    assert page.evaluate("document.activeElement.textContent") == BUTTON
    page.keyboard.press("Enter")
    page.wait_for_url(f"{keycloak.issuer}/**")
    assert "code_challenge_method=S256" in page.url and "nonce=" in page.url
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type(password("alice"))
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site.url}/agence/")
    identity = site.desk.identity(context)
    assert identity is not None
    assert (identity.agency_id, identity.role, identity.via, identity.display_name) == (
        "mairie-35401", "agent", "oidc", "Alice Martin")
    assert identity.subject.startswith(keycloak.issuer + " ")
    # The realm's tokens live 300 s: the session ends with the ID token.
    assert identity.expires_at is not None and time.time() + 200 < identity.expires_at <= time.time() + 301
    text = page.inner_text("body")
    assert "Signalements de Mairie de Montveille" in text
    assert "Connecté : Alice Martin (Mairie de Montveille, agent)" in text
    screenshot(page, "oidc-desk-inbox")
    assert sees(page, site, "mairie-35401") and not sees(page, site, "syndicat-eaux-veille")

    page.goto(f"{site.url}/agence/oidc/")
    assert "Connecté : Alice Martin, Mairie de Montveille (agent)" in page.inner_text("main")
    no_axe_violations(page, "signed in")
    screenshot(page, "oidc-signed-in")

    page.goto(f"{site.url}/agence/")
    page.click("text=Se déconnecter")  # the desk's button: through the provider's logout and back
    page.wait_for_url(f"{site.url}/agence/connexion?fin=1*")
    assert site.desk.identity(context) is None
    page.goto(f"{site.url}/agence/")
    page.wait_for_url(f"{site.url}/agence/connexion")
    # The provider's session ended too: logging in again asks for the password.
    page.goto(f"{site.url}/agence/oidc/login")
    page.wait_for_selector("#password")
    assert errors == []
    context.close()


def test_the_dst_is_the_chef_and_the_syndicate_s_agent_is_mapped_by_siret(site: Site, browser: Any) -> None:
    context, page = log_in(browser, site, "dst")
    identity = site.desk.identity(context)
    assert identity is not None and (identity.agency_id, identity.role) == ("mairie-35401", "chef")
    assert page.request.get(f"{site.url}/agence/export.csv").status == 200  # the chef's export
    context.close()
    context, page = log_in(browser, site, "bruno")
    identity = site.desk.identity(context)
    assert identity is not None and (identity.agency_id, identity.role) == ("syndicat-eaux-veille", "agent")
    assert "Signalements de Syndicat mixte des eaux pluviales de la Veille" in page.inner_text("body")
    assert sees(page, site, "syndicat-eaux-veille") and not sees(page, site, "mairie-35401")
    assert page.request.get(f"{site.url}/agence/export.csv").status == 403  # an agent's is not
    context.close()


def test_one_body_s_login_never_lands_in_another_s_session(site: Site, browser: Any) -> None:
    """Login CSRF: the callback (code and state) of Alice's login, opened in Bruno's browser,
    is refused there (the state is not his session's) and leaves him in his own body."""
    bruno, bruno_page = log_in(browser, site, "bruno")
    alice = browser.new_context()
    alice_page = alice.new_page()
    captured: list[str] = []

    def hold_callback(route: Any) -> None:
        """Keycloak's answer to her password is the redirect to the callback: keep its URL,
        do not follow it (as an attacker who got it would)."""
        answer = route.fetch(max_redirects=0)
        if answer.status in (302, 303) and "/agence/oidc/callback" in answer.headers.get("location", ""):
            captured.append(answer.headers["location"])
            route.fulfill(status=200, body="held", content_type="text/plain")
        else:
            route.fulfill(response=answer)

    alice_page.route("**/login-actions/authenticate*", hold_callback)
    alice_page.goto(f"{site.url}/agence/oidc/login")
    keycloak_form(alice_page, "alice")
    alice_page.wait_for_selector("text=held")
    assert captured, "Alice's login never came back"
    answer = bruno_page.goto(captured[0])
    assert answer.status == 400
    assert "La demande de connexion a expiré ou a déjà servi." in bruno_page.inner_text("main")
    no_axe_violations(bruno_page, "failed")
    screenshot(bruno_page, "oidc-failed")
    identity = site.desk.identity(bruno)
    assert identity is not None and identity.agency_id == "syndicat-eaux-veille"
    assert sees(bruno_page, site, "syndicat-eaux-veille") and not sees(bruno_page, site, "mairie-35401")

    # In her own browser the same callback opens her session, once.
    alice_page.unroute("**/login-actions/authenticate*")
    alice_page.goto(captured[0])
    alice_page.wait_for_url(f"{site.url}/agence/")
    identity = site.desk.identity(alice)
    assert identity is not None and identity.agency_id == "mairie-35401"
    assert alice_page.goto(captured[0]).status == 400  # replayed
    identity = site.desk.identity(alice)
    assert identity is not None and identity.agency_id == "mairie-35401"
    bruno.close()
    alice.close()


def test_someone_no_rule_admits_is_refused_in_french(site: Site, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site.url}/agence/oidc/login")
    keycloak_form(page, "eve")
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "Accès refusé"
    text = page.inner_text("main")
    assert "eve@ailleurs.example" in text and "n'est rattaché à aucun service de ce territoire" in text
    no_axe_violations(page, "refused")
    screenshot(page, "oidc-refused")
    assert site.desk.identity(context) is None
    assert page.goto(f"{site.url}/agence/dispatches/{site.desk.dispatches['mairie-35401'].id}").url.endswith(
        "/agence/connexion")
    # "Another account" logs out at the provider too: its form asks for a password again.
    page.goto(f"{site.url}/agence/oidc/login")
    page.wait_for_selector("h1")
    page.click("text=Se connecter avec un autre compte")
    page.wait_for_url(f"{site.url}/agence/connexion?fin=1*")
    page.goto(f"{site.url}/agence/oidc/login")
    page.wait_for_selector("#password")
    context.close()


def test_the_session_ends_at_the_token_s_expiry(keycloak: KeycloakFixture, browser: Any,
                                               tmp_path: Path) -> None:
    # The realm's veille-desk-short client issues tokens that live five seconds.
    oidc = oidc_settings(keycloak.issuer, client_id=SHORT_CLIENT_ID, client_secret=SHORT_CLIENT_SECRET)
    desk = build_app(oidc, tmp_path)
    with serve(desk.app) as served:
        site = Site(served.url, desk)
        context, page = log_in(browser, site, "alice")
        identity = site.desk.identity(context)
        assert identity is not None and identity.expires_at is not None
        while time.time() <= identity.expires_at:  # until the token's exp has passed
            page.wait_for_timeout(200)
        page.goto(f"{site.url}/agence/")
        page.wait_for_url(f"{site.url}/agence/connexion")
        context.close()

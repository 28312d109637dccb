"""Logging in to the desk through a real Keycloak in a real Chromium: the session's identity is
the body identity.yaml maps the person to; one body's login never lands in another's session;
someone no rule admits is refused with a French page; the session ends at the token's expiry;
logging out ends the provider's session too. axe-core clean on the sign-on's pages."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import AXE_TAGS, launch_browser, screenshot
from oidc_helpers import (
    SHORT_CLIENT_ID,
    SHORT_CLIENT_SECRET,
    KeycloakFixture,
    Served,
    build_app,
    oidc_settings,
    password,
    serve,
)


@pytest.fixture(scope="module")
def desk(keycloak: KeycloakFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(build_app(oidc_settings(keycloak.issuer), tmp_path_factory.mktemp("desk"))) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_browser() as b:
        yield b


def identity_of(page: Any, desk: Served) -> dict[str, Any] | None:
    """What the desk's session says (the stand-in of its inbox answers the identity)."""
    resp = page.request.get(f"{desk.url}/agence/")
    return json.loads(resp.text())["identity"]  # type: ignore[no-any-return]


def keycloak_form(page: Any, username: str) -> None:
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", password(username))
    page.click("#kc-login")


def no_axe_violations(page: Any, name: str) -> None:
    """axe-core loaded from the desk itself: the pages' Content-Security-Policy forbids the inline
    script tag that browser_helpers.axe_violations adds (and must stay on under test)."""
    page.add_script_tag(url="/agence/static/vendor/axe.min.js")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    violations = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                   "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]
    assert violations == [], (name, violations)


def test_keyboard_login_gives_the_mapped_body_and_logout_ends_both_sessions(
        desk: Served, browser: Any, keycloak: KeycloakFixture) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    errors: list[str] = []
    # The stand-in's JSON page makes the browser ask for /favicon.ico, which it does not serve.
    page.on("console", lambda m: errors.append(f"{m.text} at {m.location['url']}")
            if m.type == "error" and not m.location["url"].endswith("/favicon.ico") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{desk.url}/agence/oidc/")
    no_axe_violations(page, "home")
    screenshot(page, "oidc-home")
    assert identity_of(page, desk) is None
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Se connecter avec Keycloak de test"
    page.keyboard.press("Enter")
    page.wait_for_url(f"{keycloak.issuer}/**")
    assert "code_challenge_method=S256" in page.url and "nonce=" in page.url
    keycloak_form(page, "alice")
    page.wait_for_url(f"{desk.url}/agence/")
    identity = identity_of(page, desk)
    assert identity is not None
    assert {k: identity[k] for k in ("agency_id", "role", "via", "display_name")} == {
        "agency_id": "mairie-35401", "role": "agent", "via": "oidc", "display_name": "Alice Martin"}
    assert identity["subject"].startswith(keycloak.issuer + " ")
    # The realm's tokens live 300 s: the session ends with the ID token.
    assert time.time() + 200 < identity["expires_at"] <= time.time() + 301
    page.goto(f"{desk.url}/agence/oidc/")
    assert "Connecté : Alice Martin, Mairie de Montveille (agent)" in page.inner_text("main")
    no_axe_violations(page, "signed in")
    screenshot(page, "oidc-signed-in")

    page.click("text=Se déconnecter")
    # Through the provider's end_session_endpoint (which adds its state) and back.
    page.wait_for_url(f"{desk.url}/agence/oidc/?fin=1*")
    assert "Vous êtes déconnecté." in page.inner_text("main")
    assert identity_of(page, desk) is None
    # The provider's session ended too: logging in again asks for the password.
    page.goto(f"{desk.url}/agence/oidc/login")
    page.wait_for_selector("#password")
    assert errors == []
    context.close()


def test_the_dst_is_the_chef_and_the_syndicate_s_agent_is_mapped_by_siret(desk: Served, browser: Any) -> None:
    for username, agency, role in (("dst", "mairie-35401", "chef"),
                                   ("bruno", "syndicat-eaux-veille", "agent")):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{desk.url}/agence/oidc/login")
        keycloak_form(page, username)
        page.wait_for_url(f"{desk.url}/agence/")
        identity = identity_of(page, desk)
        assert identity is not None and (identity["agency_id"], identity["role"]) == (agency, role)
        context.close()


def test_one_body_s_login_never_lands_in_another_s_session(desk: Served, browser: Any) -> None:
    """Login CSRF: a callback (code and state) of Alice's login, opened in Bruno's browser,
    is refused there (the state is not his session's) and leaves his identity his own."""
    bruno = browser.new_context()
    bruno_page = bruno.new_page()
    bruno_page.goto(f"{desk.url}/agence/oidc/login")
    keycloak_form(bruno_page, "bruno")
    bruno_page.wait_for_url(f"{desk.url}/agence/")

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
    alice_page.goto(f"{desk.url}/agence/oidc/login")
    keycloak_form(alice_page, "alice")
    alice_page.wait_for_selector("text=held")
    assert captured, "Alice's login never came back"
    answer = bruno_page.goto(captured[0])
    assert answer.status == 400
    assert "La demande de connexion a expiré ou a déjà servi." in bruno_page.inner_text("main")
    no_axe_violations(bruno_page, "failed")
    screenshot(bruno_page, "oidc-failed")
    identity = identity_of(bruno_page, desk)
    assert identity is not None and identity["agency_id"] == "syndicat-eaux-veille"

    # In her own browser the same callback opens her session, once.
    alice_page.unroute("**/login-actions/authenticate*")
    alice_page.goto(captured[0])
    alice_page.wait_for_url(f"{desk.url}/agence/")
    identity = identity_of(alice_page, desk)
    assert identity is not None and identity["agency_id"] == "mairie-35401"
    replay = alice_page.goto(captured[0])
    assert replay.status == 400
    identity = identity_of(alice_page, desk)
    assert identity is not None and identity["agency_id"] == "mairie-35401"
    bruno.close()
    alice.close()


def test_someone_no_rule_admits_is_refused_in_french(desk: Served, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{desk.url}/agence/oidc/login")
    keycloak_form(page, "eve")
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "Accès refusé"
    text = page.inner_text("main")
    assert "eve@ailleurs.example" in text and "n'est rattaché à aucun service de ce territoire" in text
    no_axe_violations(page, "refused")
    screenshot(page, "oidc-refused")
    assert identity_of(page, desk) is None
    # "Another account" logs out at the provider too: its form asks for a password again.
    page.click("text=Se connecter avec un autre compte")
    page.wait_for_url("**/agence/oidc/?fin=1*")
    page.goto(f"{desk.url}/agence/oidc/login")
    page.wait_for_selector("#password")
    context.close()


def test_the_session_ends_at_the_token_s_expiry(keycloak: KeycloakFixture, browser: Any,
                                               tmp_path: Path) -> None:
    # The realm's veille-desk-short client issues tokens that live five seconds.
    oidc = oidc_settings(keycloak.issuer, client_id=SHORT_CLIENT_ID, client_secret=SHORT_CLIENT_SECRET)
    with serve(build_app(oidc, tmp_path)) as short_desk:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{short_desk.url}/agence/oidc/login")
        keycloak_form(page, "alice")
        page.wait_for_url(f"{short_desk.url}/agence/")
        expires_at = json.loads(page.inner_text("body"))["identity"]["expires_at"]
        while time.time() <= expires_at:  # until the token's exp has passed
            page.wait_for_timeout(200)
        assert identity_of(page, short_desk) is None
        context.close()

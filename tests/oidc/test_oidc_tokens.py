"""The relying party's checks on real tokens from a real Keycloak: what a login yields is
accepted; a token of another issuer, one tampered with, one for another client, one with
another nonce, one whose exp passed are refused, each for its reason."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from oidc_helpers import (
    SHORT_CLIENT_ID,
    SHORT_CLIENT_SECRET,
    KeycloakFixture,
    authorization_page_status,
    oidc_settings,
    scripted_login,
)

from veille.web.oidc.provider import OidcError, Provider


def check(provider: Provider, id_token: str, nonce: str) -> dict[str, object]:
    return asyncio.run(provider.check_id_token(id_token, nonce))


def refusal(provider: Provider, id_token: str, nonce: str) -> str:
    with pytest.raises(OidcError) as err:
        check(provider, id_token, nonce)
    return err.value.reason


def test_a_login_id_token_is_accepted_with_its_claims(keycloak: KeycloakFixture) -> None:
    login = scripted_login(keycloak.issuer, "bruno")
    claims = check(Provider(oidc_settings(keycloak.issuer)), login.id_token, login.nonce)
    assert claims["iss"] == keycloak.issuer and claims["aud"] == "veille-desk"
    assert claims["email"] == "bruno.le-goff@eaux-veille.bzh" and claims["siret"] == "25350123400017"


def test_the_realm_demands_pkce(keycloak: KeycloakFixture) -> None:
    """The client cannot log in without a S256 code challenge: our flow passing shows it sends one."""
    status, body = authorization_page_status(
        keycloak.issuer, response_type="code", client_id="veille-desk", scope="openid",
        redirect_uri="http://127.0.0.1:9/callback", state="s" * 32, nonce="n" * 32)
    assert status == 302 and "error=invalid_request" in body, (status, body)
    assert "Missing+parameter%3A+code_challenge_method" in body


def test_a_token_of_another_issuer_is_refused_though_its_signature_is_good(keycloak: KeycloakFixture) -> None:
    login = scripted_login(keycloak.other_issuer, "alice")
    # Same signing key, so only the issuer tells them apart: the other realm's own RP accepts it.
    assert check(Provider(oidc_settings(keycloak.other_issuer)), login.id_token, login.nonce)
    assert refusal(Provider(oidc_settings(keycloak.issuer)), login.id_token, login.nonce) == "iss"


def test_a_tampered_token_is_refused(keycloak: KeycloakFixture) -> None:
    login = scripted_login(keycloak.issuer, "eve")
    header, payload, signature = login.id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["email"] = "eve@montveille.fr"  # what an attacker would want the map to read
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    provider = Provider(oidc_settings(keycloak.issuer))
    assert refusal(provider, f"{header}.{forged_payload}.{signature}", login.nonce) == "signature"
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert refusal(provider, f"{header}.{payload}.{flipped}", login.nonce) == "signature"
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    assert refusal(provider, f"{unsigned}.{payload}.", login.nonce) == "signature"


def test_a_token_for_another_client_or_another_login_is_refused(keycloak: KeycloakFixture) -> None:
    provider = Provider(oidc_settings(keycloak.issuer))
    other_client = scripted_login(keycloak.issuer, "alice", SHORT_CLIENT_ID, SHORT_CLIENT_SECRET)
    assert refusal(provider, other_client.id_token, other_client.nonce) == "aud"
    login = scripted_login(keycloak.issuer, "alice")
    assert refusal(provider, login.id_token, "another-login-s-nonce") == "nonce"


def test_an_expired_token_is_refused(keycloak: KeycloakFixture) -> None:
    # The realm's veille-desk-short client issues tokens that live five seconds.
    login = scripted_login(keycloak.issuer, "alice", SHORT_CLIENT_ID, SHORT_CLIENT_SECRET)
    payload = login.id_token.split(".")[1]
    exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    while time.time() <= exp + 1:  # until its exp has passed, whatever the machine's speed
        time.sleep(0.2)
    provider = Provider(oidc_settings(keycloak.issuer, client_id=SHORT_CLIENT_ID,
                                      client_secret=SHORT_CLIENT_SECRET, leeway_seconds=0))
    assert refusal(provider, login.id_token, login.nonce) == "expired"

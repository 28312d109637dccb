"""One real Keycloak for the session (like the broker), two realms: the test realm, and the same
realm under another name, signing with the same RSA key, as *another issuer* whose tokens
carry a valid signature (so the issuer check is what refuses them)."""

from __future__ import annotations

import atexit
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from oidc_helpers import OTHER_REALM, KeycloakFixture

from veille.config import Settings
from veille.local.keycloak import KeycloakError, LocalKeycloak, keycloak_java

REALM_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "keycloak" / "realm-veille.json"


def _shared_key_components() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    components = json.loads(REALM_FILE.read_text(encoding="utf-8")).get("components", {})
    # Priority above the realm's generated keys: every token of both realms is signed by it.
    return {**components, "org.keycloak.keys.KeyProvider": [
        {"name": "shared-rsa", "providerId": "rsa", "subComponents": {},
         "config": {"privateKey": [pem], "priority": ["500"], "algorithm": ["RS256"],
                    "active": ["true"], "enabled": ["true"]}}]}


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeycloakFixture]:
    try:
        keycloak_java()
    except KeycloakError as exc:
        pytest.skip(f"no Keycloak for this session: {exc}")
    local = LocalKeycloak(Settings(state_dir=tmp_path_factory.mktemp("veille-keycloak")))
    info = local.start(die_with_parent=True)
    atexit.register(local.stop, 5.0)
    try:
        components = _shared_key_components()
        local.import_realm(info, REALM_FILE, {"components": components})
        local.import_realm(info, REALM_FILE, {"realm": OTHER_REALM, "components": components})
        yield KeycloakFixture(info, local)
    finally:
        local.stop(timeout=15)
        atexit.unregister(local.stop)

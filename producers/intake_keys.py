"""Publisher credentials of the HTTP intake: API keys mapped to what they may publish.

A key is issued to one publishing organisation and says what it may speak for, with the
same rules as the broker's ACLs: incidents of its municipalities (``municipality_mismatch``
otherwise), status updates of its agencies, CAP alerts if it is an alerting authority.

The token is shown once, when issued or rotated: ``veille_<key id>_<secret>``. Only the
SHA-256 of the secret is kept (a fast hash is enough for 256 random bits: there is nothing
to brute-force), in ``state_dir/intake_keys.json`` (mode 0600). Rotating a key replaces its
secret at once; revoking it refuses it from the next request on. A running intake reloads
the file when it changes, so neither needs a restart. The storage, hashing, rotation and
revocation are the credential store's (``producers/credentials.py``); this module says what
a key may publish, how its token is spelled and words its commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from veille.config import get_settings
from veille.producers.credentials import Credential, CredentialStore, Sha256Tokens, add_actions, print_issued
from veille.schemas.models import InseeCode

TOKEN_PREFIX = "veille"
KEYS_FILE = "intake_keys.json"


class IntakeKey(Credential):
    SECRET_FIELD: ClassVar[str] = "secret_sha256"

    municipalities: list[InseeCode] = Field(default_factory=list)
    agencies: list[str] = Field(default_factory=list)
    alerts: bool = False
    secret_sha256: str

    def describe(self) -> str:
        rights = [f"incidents of {','.join(self.municipalities)}" if self.municipalities else "",
                  f"status of {','.join(self.agencies)}" if self.agencies else "",
                  "CAP alerts" if self.alerts else ""]
        state = "revoked" if not self.active else "active"
        return f"{self.id}  {self.name}  [{state}]  " + "; ".join(r for r in rights if r)


def _token(key_id: str, secret: str) -> str:
    return f"{TOKEN_PREFIX}_{key_id}_{secret}"


class KeyStore:
    """The intake's keys: the credential store with a token that names its key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = CredentialStore(path, IntakeKey, Sha256Tokens(), id_bytes=6)

    @classmethod
    def default(cls) -> KeyStore:
        return cls(get_settings().state_dir / KEYS_FILE)

    def keys(self) -> dict[str, IntakeKey]:
        return self.store.records()

    def authenticate(self, token: str) -> IntakeKey | None:
        """The active key of ``token``, or None. Constant time in the secret."""
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not key_id or not secret:
            return None
        return self.store.verify(self.store.find(key_id), secret)

    # ------------------------------------------------------------------ administration

    def issue(self, name: str, *, municipalities: Sequence[str] = (), agencies: Sequence[str] = (),
              alerts: bool = False) -> tuple[IntakeKey, str]:
        if not (municipalities or agencies or alerts):
            raise ValueError("a key must allow something: municipalities, agencies or alerts")
        key, secret = self.store.issue({"name": name, "municipalities": list(municipalities),
                                        "agencies": list(agencies), "alerts": alerts})
        return key, _token(key.id, secret)

    def rotate(self, key_id: str) -> str:
        key = self.store.find(key_id)
        if key is None or not key.active:
            raise KeyError(f"no active key {key_id}")
        _, secret = self.store.rotate(key)
        return _token(key_id, secret)

    def revoke(self, key_id: str) -> None:
        key = self.store.find(key_id)
        if key is None:
            raise KeyError(f"no key {key_id}")
        self.store.revoke(key)


# --------------------------------------------------------------------------- CLI


def _known(values: list[str], allowed: set[str], what: str) -> None:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (not in the territory)")


def _cmd_issue(args: argparse.Namespace) -> int:
    from veille.territory import load_territory  # the territory's geometry only for this command

    territory = load_territory(get_settings().territory_dir)
    munis = [m for m in (args.municipality or []) if m]
    agencies = [a for a in (args.agency or []) if a]
    _known(munis, set(territory.municipalities), "municipality")
    _known(agencies, set(territory.agencies), "agency")

    def issue() -> tuple[IntakeKey, list[str]]:
        key, token = KeyStore.default().issue(args.name, municipalities=munis, agencies=agencies,
                                              alerts=args.alerts)
        return key, [f"token (shown once, hand it over securely): {token}"]

    return print_issued(issue)


def _rotate(key_id: str) -> str:
    return f"new token (the old one no longer works): {KeyStore.default().rotate(key_id)}"


def _revoke(key_id: str) -> str:
    KeyStore.default().revoke(key_id)
    return f"revoked {key_id}"


def add_commands(isub: Any) -> None:
    keys = isub.add_parser("keys", help="API keys of the HTTP intake's publishers",
                           description="Issue, list, rotate and revoke the intake's API keys.")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    issue = ksub.add_parser("issue", help="issue a key (the token is printed once)")
    issue.add_argument("--name", required=True, help="who holds it, e.g. 'Mairie de Trémel - app'")
    issue.add_argument("--municipality", action="append", help="INSEE code it reports for (repeatable)")
    issue.add_argument("--agency", action="append", help="agency id it posts status updates as (repeatable)")
    issue.add_argument("--alerts", action="store_true", help="may publish CAP alerts")
    issue.set_defaults(func=_cmd_issue)
    add_actions(ksub, ref="key_id", ref_help=None, records=lambda: KeyStore.default().keys().values(),
                rotate=_rotate, revoke=_revoke, list_help="list keys (never their secrets)",
                rotate_help="replace a key's secret; the old token stops at once",
                revoke_help="refuse a key from now on")


def add_open311_commands(sub: Any) -> None:
    """``veille open311 key``: an intake key for an Open311 app (the api_key IS an intake key)."""
    o311 = sub.add_parser("open311", help="Open311 GeoReport v2 apps (served by veille intake serve)",
                          description="Open311 apps authenticate with an intake key passed as api_key.")
    osub = o311.add_subparsers(dest="open311_command", metavar="ACTION", required=True)
    key = osub.add_parser("key", help="issue an api_key for an Open311 app (same as intake keys issue)")
    key.add_argument("--name", required=True, help="the app, e.g. 'Montveille - appli citoyenne'")
    key.add_argument("--municipality", action="append", required=True,
                     help="INSEE code it reports for (repeatable)")
    key.set_defaults(func=_cmd_issue, agency=None, alerts=False)

"""Publisher credentials of the HTTP intake: API keys mapped to what they may publish.

A key is issued to one publishing organisation and says what it may speak for, with the
same rules as the broker's ACLs: incidents of its municipalities (``municipality_mismatch``
otherwise), status updates of its agencies, CAP alerts if it is an alerting authority.

The token is shown once, when issued or rotated: ``veille_<key id>_<secret>``. Only the
SHA-256 of the secret is kept (a fast hash is enough for 256 random bits: there is nothing
to brute-force), in ``state_dir/intake_keys.json`` (mode 0600). Rotating a key replaces its
secret at once; revoking it refuses it from the next request on. A running intake reloads
the file when it changes, so neither needs a restart.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from veille.config import get_settings
from veille.schemas.models import InseeCode
from veille.statedir import RecordFile

TOKEN_PREFIX = "veille"
KEYS_FILE = "intake_keys.json"


class IntakeKey(BaseModel):
    id: str
    name: str = Field(min_length=1, max_length=200)
    municipalities: list[InseeCode] = Field(default_factory=list)
    agencies: list[str] = Field(default_factory=list)
    alerts: bool = False
    secret_sha256: str
    created_at: datetime
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def describe(self) -> str:
        rights = [f"incidents of {','.join(self.municipalities)}" if self.municipalities else "",
                  f"status of {','.join(self.agencies)}" if self.agencies else "",
                  "CAP alerts" if self.alerts else ""]
        state = "revoked" if not self.active else "active"
        return f"{self.id}  {self.name}  [{state}]  " + "; ".join(r for r in rights if r)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(key_id: str, secret: str) -> str:
    return f"{TOKEN_PREFIX}_{key_id}_{secret}"


class KeyStore:
    """The key file, reloaded when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = RecordFile(path, IntakeKey)

    @classmethod
    def default(cls) -> KeyStore:
        return cls(get_settings().state_dir / KEYS_FILE)

    def keys(self) -> dict[str, IntakeKey]:
        return self._file.load()

    def authenticate(self, token: str) -> IntakeKey | None:
        """The active key of ``token``, or None. Constant time in the secret."""
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not key_id or not secret:
            return None
        key = self.keys().get(key_id)
        if key is None or not key.active:
            _digest(secret)  # same work either way
            return None
        return key if hmac.compare_digest(_digest(secret), key.secret_sha256) else None

    # ------------------------------------------------------------------ administration

    def _save(self, keys: dict[str, IntakeKey]) -> None:
        self._file.save(keys)

    def issue(self, name: str, *, municipalities: Sequence[str] = (), agencies: Sequence[str] = (),
              alerts: bool = False) -> tuple[IntakeKey, str]:
        if not (municipalities or agencies or alerts):
            raise ValueError("a key must allow something: municipalities, agencies or alerts")
        keys = dict(self.keys())
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = IntakeKey(id=key_id, name=name, municipalities=list(municipalities), agencies=list(agencies),
                        alerts=alerts, secret_sha256=_digest(secret), created_at=datetime.now(UTC))
        keys[key_id] = key
        self._save(keys)
        return key, _token(key_id, secret)

    def rotate(self, key_id: str) -> str:
        keys = dict(self.keys())
        key = keys.get(key_id)
        if key is None or not key.active:
            raise KeyError(f"no active key {key_id}")
        secret = secrets.token_urlsafe(32)
        keys[key_id] = key.model_copy(update={"secret_sha256": _digest(secret),
                                              "rotated_at": datetime.now(UTC)})
        self._save(keys)
        return _token(key_id, secret)

    def revoke(self, key_id: str) -> None:
        keys = dict(self.keys())
        if key_id not in keys:
            raise KeyError(f"no key {key_id}")
        keys[key_id] = keys[key_id].model_copy(update={"revoked_at": datetime.now(UTC)})
        self._save(keys)


# --------------------------------------------------------------------------- CLI


def _known(values: list[str], allowed: set[str], what: str) -> None:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (not in the territory)")


def _cmd_issue(args: argparse.Namespace) -> int:
    from veille.territory import load_territory

    territory = load_territory(get_settings().territory_dir)
    munis = [m for m in (args.municipality or []) if m]
    agencies = [a for a in (args.agency or []) if a]
    _known(munis, set(territory.municipalities), "municipality")
    _known(agencies, set(territory.agencies), "agency")
    try:
        key, token = KeyStore.default().issue(args.name, municipalities=munis, agencies=agencies,
                                              alerts=args.alerts)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(key.describe())
    print(f"token (shown once, hand it over securely): {token}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for key in KeyStore.default().keys().values():
        print(key.describe())
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    try:
        token = KeyStore.default().rotate(args.key_id)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    print(f"new token (the old one no longer works): {token}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    try:
        KeyStore.default().revoke(args.key_id)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    print(f"revoked {args.key_id}")
    return 0


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
    ksub.add_parser("list", help="list keys (never their secrets)").set_defaults(func=_cmd_list)
    rot = ksub.add_parser("rotate", help="replace a key's secret; the old token stops at once")
    rot.add_argument("key_id")
    rot.set_defaults(func=_cmd_rotate)
    rev = ksub.add_parser("revoke", help="refuse a key from now on")
    rev.add_argument("key_id")
    rev.set_defaults(func=_cmd_revoke)


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

"""Accounts of the human relays: town-hall desks, phone operators, neighbourhood representatives.

An account is issued to one person or desk of one municipality (``veille relay accounts issue
--municipality 35401 --kind town_hall_desk --name …``) and reports only for its municipalities,
the same rule as the intake keys (``municipality_mismatch`` otherwise). Its kind is the
channel of every report it sends, so a desk cannot pass a report off as a phone call.

The password is shown once, at issue or rotation. People type it, so unlike an intake key's
256-bit secret it is short enough to be guessed offline from a fast hash: only its scrypt
hash is kept (``hashlib.scrypt``, standard library, memory-hard; parameters stored with each
hash so they can be raised later), in ``state_dir/relay_accounts.json`` (mode 0600).
Rotating replaces the password and ends the account's open sessions; revoking refuses it
from the next request on (a running intake reloads the file when it changes).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from veille.config import get_settings
from veille.schemas.models import Channel, InseeCode
from veille.statedir import RecordFile

ACCOUNTS_FILE = "relay_accounts.json"
RELAY_CHANNELS = (Channel.town_hall_desk, Channel.phone, Channel.neighbourhood_representative)
RelayKind = Literal["town_hall_desk", "phone", "neighbourhood_representative"]
LOGIN_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,62}$"
# 2**15 x 8 x 1: 32 MiB and ~0.1 s per check on this machine's cores: costly to guess, cheap to log in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# Read aloud or copied from a letter: no 0/o, 1/l/i. 16 of 31 symbols ~ 79 bits.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_password() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(chars[i:i + 4] for i in range(0, 16, 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * n * 2, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=128 * int(r) * int(n) * 2, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# Checked against when the login is unknown, so an unknown login costs the same time.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class RelayAccount(BaseModel):
    id: str
    login: str = Field(pattern=LOGIN_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: RelayKind
    municipalities: list[InseeCode] = Field(min_length=1)
    password_hash: str
    created_at: datetime
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def channel(self) -> Channel:
        return Channel(self.kind)

    @property
    def generation(self) -> str:
        """Changes when the password does: a session of an older generation is over."""
        return (self.rotated_at or self.created_at).isoformat()

    def describe(self) -> str:
        state = "revoked" if not self.active else "active"
        return (f"{self.id}  {self.login}  {self.name}  [{state}]  {self.kind} "
                f"for {','.join(self.municipalities)}")


class AccountStore:
    """The accounts file, reloaded when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = RecordFile(path, RelayAccount)

    @classmethod
    def default(cls) -> AccountStore:
        return cls(get_settings().state_dir / ACCOUNTS_FILE)

    def accounts(self) -> dict[str, RelayAccount]:
        return self._file.load()

    def get(self, account_id: str) -> RelayAccount | None:
        account = self.accounts().get(account_id)
        return account if account is not None and account.active else None

    def authenticate(self, login: str, password: str) -> RelayAccount | None:
        """The active account of this login and password, or None (same work either way)."""
        account = next((a for a in self.accounts().values() if a.login == login.strip().lower()), None)
        if account is None or not account.active:
            check_password(password, _DUMMY_HASH)
            return None
        return account if check_password(password, account.password_hash) else None

    # ------------------------------------------------------------------ administration

    def _save(self, accounts: dict[str, RelayAccount]) -> None:
        self._file.save(accounts)

    def issue(self, name: str, *, kind: str, municipalities: Sequence[str], login: str | None = None,
              password: str | None = None) -> tuple[RelayAccount, str]:
        """A new account and its password (``password`` only for demos and tests)."""
        accounts = dict(self.accounts())
        account_id = secrets.token_hex(4)
        login = (login or f"{municipalities[0] if municipalities else 'relais'}-{account_id}").lower()
        if not re.match(LOGIN_PATTERN, login):
            raise ValueError(f"login {login!r}: 3 to 63 of a-z 0-9 . _ -, starting with a letter or digit")
        if any(a.login == login for a in accounts.values()):
            raise ValueError(f"login {login!r} is taken")
        if kind not in {c.value for c in RELAY_CHANNELS}:
            raise ValueError(f"kind must be one of {', '.join(c.value for c in RELAY_CHANNELS)}")
        password = password or new_password()
        account = RelayAccount(id=account_id, login=login, name=name, kind=kind,
                               municipalities=list(municipalities), password_hash=hash_password(password),
                               created_at=datetime.now(UTC))
        accounts[account_id] = account
        self._save(accounts)
        return account, password

    def _find(self, accounts: dict[str, RelayAccount], ref: str) -> RelayAccount:
        found = accounts.get(ref) or next((a for a in accounts.values() if a.login == ref), None)
        if found is None:
            raise KeyError(f"no account {ref}")
        return found

    def rotate(self, ref: str) -> tuple[RelayAccount, str]:
        accounts = dict(self.accounts())
        account = self._find(accounts, ref)
        if not account.active:
            raise KeyError(f"account {ref} is revoked")
        password = new_password()
        accounts[account.id] = account.model_copy(update={"password_hash": hash_password(password),
                                                          "rotated_at": datetime.now(UTC)})
        self._save(accounts)
        return accounts[account.id], password

    def revoke(self, ref: str) -> RelayAccount:
        accounts = dict(self.accounts())
        account = self._find(accounts, ref)
        accounts[account.id] = account.model_copy(update={"revoked_at": datetime.now(UTC)})
        self._save(accounts)
        return accounts[account.id]


# --------------------------------------------------------------------------- CLI


def _cmd_issue(args: argparse.Namespace) -> int:
    from veille.territory import load_territory

    territory = load_territory(get_settings().territory_dir)
    unknown = sorted(set(args.municipality) - set(territory.municipalities))
    if unknown:
        print(f"unknown municipality: {', '.join(unknown)} (not in the territory)", file=sys.stderr)
        return 2
    try:
        account, password = AccountStore.default().issue(args.name, kind=args.kind,
                                                         municipalities=args.municipality, login=args.login)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(account.describe())
    print(f"login: {account.login}")
    print(f"password (shown once, hand it over in person): {password}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for account in AccountStore.default().accounts().values():
        print(account.describe())
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    try:
        account, password = AccountStore.default().rotate(args.account)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    print(f"new password for {account.login} (the old one and its open sessions stop now): {password}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    try:
        account = AccountStore.default().revoke(args.account)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    print(f"revoked {account.id} ({account.login})")
    return 0


def add_commands(sub: Any) -> None:
    relay = sub.add_parser("relay", help="the relays' reporting form (served by veille intake serve)",
                           description="Accounts of the people who take reports for others: town-hall "
                                       "desks, phone operators, neighbourhood representatives.")
    rsub = relay.add_subparsers(dest="relay_command", metavar="ACTION", required=True)
    acc = rsub.add_parser("accounts", help="issue, list, rotate and revoke relay accounts")
    asub = acc.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    issue = asub.add_parser("issue", help="issue an account (the password is printed once)")
    issue.add_argument("--name", required=True, help="who holds it, e.g. 'Accueil mairie de Montveille'")
    issue.add_argument("--municipality", action="append", required=True,
                       help="INSEE code it reports for (repeatable)")
    issue.add_argument("--kind", required=True, choices=[c.value for c in RELAY_CHANNELS],
                       help="the channel of its reports")
    issue.add_argument("--login", help="login (default: <INSEE>-<account id>)")
    issue.set_defaults(func=_cmd_issue)
    asub.add_parser("list", help="list accounts (never their passwords)").set_defaults(func=_cmd_list)
    rot = asub.add_parser("rotate", help="new password; the old one and open sessions stop at once")
    rot.add_argument("account", help="account id or login")
    rot.set_defaults(func=_cmd_rotate)
    rev = asub.add_parser("revoke", help="refuse an account from now on")
    rev.add_argument("account", help="account id or login")
    rev.set_defaults(func=_cmd_revoke)

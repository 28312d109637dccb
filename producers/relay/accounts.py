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
from the next request on (a running intake reloads the file when it changes). The storage,
hashing, rotation and revocation are the credential store's (``producers/credentials.py``);
this module says what a relay account is and words its commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from veille.config import get_settings
from veille.producers.credentials import (
    LoginStore,
    PasswordAccount,
    ScryptPasswords,
    add_actions,
    print_issued,
)
from veille.schemas.models import Channel, InseeCode

ACCOUNTS_FILE = "relay_accounts.json"
RELAY_CHANNELS = (Channel.town_hall_desk, Channel.phone, Channel.neighbourhood_representative)
RelayKind = Literal["town_hall_desk", "phone", "neighbourhood_representative"]
# Shared by every relay account store of the process: its unknown-login hash is made once, at import.
PASSWORDS = ScryptPasswords()


class RelayAccount(PasswordAccount):
    kind: RelayKind
    municipalities: list[InseeCode] = Field(min_length=1)

    @property
    def channel(self) -> Channel:
        return Channel(self.kind)

    def describe(self) -> str:
        state = "revoked" if not self.active else "active"
        return (f"{self.id}  {self.login}  {self.name}  [{state}]  {self.kind} "
                f"for {','.join(self.municipalities)}")


class AccountStore:
    """The relays' accounts: the credential store with a login, a password and a kind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = LoginStore(path, RelayAccount, PASSWORDS, id_bytes=4)

    @classmethod
    def default(cls) -> AccountStore:
        return cls(get_settings().state_dir / ACCOUNTS_FILE)

    def accounts(self) -> dict[str, RelayAccount]:
        return self.store.records()

    def get(self, account_id: str) -> RelayAccount | None:
        return self.store.get(account_id)

    def authenticate(self, login: str, password: str) -> RelayAccount | None:
        """The active account of this login and password, or None (same work either way)."""
        return self.store.authenticate(login, password)

    # ------------------------------------------------------------------ administration

    def issue(self, name: str, *, kind: str, municipalities: Sequence[str], login: str | None = None,
              password: str | None = None) -> tuple[RelayAccount, str]:
        """A new account and its password (``password`` only for demos and tests)."""
        account_id = self.store.new_id()
        login = (login or f"{municipalities[0] if municipalities else 'relais'}-{account_id}").lower()
        self.store.check_login(login)
        if kind not in {c.value for c in RELAY_CHANNELS}:
            raise ValueError(f"kind must be one of {', '.join(c.value for c in RELAY_CHANNELS)}")
        fields = {"login": login, "name": name, "kind": kind, "municipalities": list(municipalities)}
        return self.store.issue(fields, record_id=account_id, secret=password)

    def rotate(self, ref: str) -> tuple[RelayAccount, str]:
        return self.store.rotate_ref(ref)

    def revoke(self, ref: str) -> RelayAccount:
        return self.store.revoke_ref(ref)


# --------------------------------------------------------------------------- CLI


def _cmd_issue(args: argparse.Namespace) -> int:
    from veille.territory import load_territory  # the territory's geometry only for this command

    territory = load_territory(get_settings().territory_dir)
    unknown = sorted(set(args.municipality) - set(territory.municipalities))
    if unknown:
        print(f"unknown municipality: {', '.join(unknown)} (not in the territory)", file=sys.stderr)
        return 2

    def issue() -> tuple[RelayAccount, list[str]]:
        account, password = AccountStore.default().issue(args.name, kind=args.kind,
                                                         municipalities=args.municipality, login=args.login)
        return account, [f"login: {account.login}",
                         f"password (shown once, hand it over in person): {password}"]

    return print_issued(issue)


def _rotate(ref: str) -> str:
    account, password = AccountStore.default().rotate(ref)
    return f"new password for {account.login} (the old one and its open sessions stop now): {password}"


def _revoke(ref: str) -> str:
    account = AccountStore.default().revoke(ref)
    return f"revoked {account.id} ({account.login})"


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
    add_actions(asub, ref="account", ref_help="account id or login",
                records=lambda: AccountStore.default().accounts().values(), rotate=_rotate, revoke=_revoke,
                list_help="list accounts (never their passwords)",
                rotate_help="new password; the old one and open sessions stop at once",
                revoke_help="refuse an account from now on")

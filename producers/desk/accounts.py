"""Accounts of the agencies' desks: the people of a body with no incident system of its own.

An account belongs to one body (``veille agency accounts issue --agency voirie-montveille
--role agent --name …``) and sees and acts on that body's dispatches only. Its role is
``agent`` (sees, takes and closes them) or ``chef`` (also exports them to CSV). The storage,
scrypt hashing, rotation and revocation are the credential store's
(``producers/credentials.py``), as for the relays' accounts: the password is shown once,
only its hash is kept in ``state_dir/agency_accounts.json`` (mode 0600), rotating or
revoking ends the account's open sessions at their next request (a running intake reloads
the file when it changes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import Field

from veille.config import get_settings
from veille.producers.credentials import (
    LoginStore,
    PasswordAccount,
    ScryptPasswords,
    add_actions,
    print_issued,
)
from veille.web.identity import Identity, Role

ACCOUNTS_FILE = "agency_accounts.json"
# Shared by every desk account store of the process: its unknown-login hash is made once, at import.
PASSWORDS = ScryptPasswords()


class DeskAccount(PasswordAccount):
    agency_id: str = Field(min_length=1, max_length=100)
    role: Role = Role.agent

    def describe(self) -> str:
        state = "revoked" if not self.active else "active"
        return f"{self.id}  {self.login}  {self.name}  [{state}]  {self.role.value} of {self.agency_id}"

    def identity(self) -> Identity:
        return Identity(agency_id=self.agency_id, role=self.role, subject=f"account:{self.id}",
                        display_name=self.name, via="password", generation=self.generation)


class AccountStore:
    """The desks' accounts: the credential store with a login, a password, a body and a role."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = LoginStore(path, DeskAccount, PASSWORDS, id_bytes=4)

    @classmethod
    def default(cls) -> AccountStore:
        return cls(get_settings().state_dir / ACCOUNTS_FILE)

    def accounts(self) -> dict[str, DeskAccount]:
        return self.store.records()

    def get(self, account_id: str) -> DeskAccount | None:
        return self.store.get(account_id)

    def authenticate(self, login: str, password: str) -> DeskAccount | None:
        """The active account of this login and password, or None (same work either way)."""
        return self.store.authenticate(login, password)

    def still_valid(self, identity: Identity) -> bool:
        """A password session is over once its account was rotated or revoked."""
        if identity.via != "password":
            return True
        account = self.get(identity.subject.removeprefix("account:"))
        return (account is not None and account.active and account.generation == identity.generation
                and account.agency_id == identity.agency_id and account.role == identity.role)

    # ------------------------------------------------------------------ administration

    def issue(self, name: str, *, agency_id: str, role: str = Role.agent.value, login: str | None = None,
              password: str | None = None) -> tuple[DeskAccount, str]:
        """A new account and its password (``password`` only for demos and tests)."""
        if role not in {r.value for r in Role}:
            raise ValueError(f"role must be one of {', '.join(r.value for r in Role)}")
        account_id = self.store.new_id()
        login = (login or f"{agency_id[:40]}-{account_id}").lower()
        self.store.check_login(login)
        fields = {"login": login, "name": name, "agency_id": agency_id, "role": role}
        return self.store.issue(fields, record_id=account_id, secret=password)

    def rotate(self, ref: str) -> tuple[DeskAccount, str]:
        return self.store.rotate_ref(ref)

    def revoke(self, ref: str) -> DeskAccount:
        return self.store.revoke_ref(ref)


# --------------------------------------------------------------------------- CLI


def _cmd_issue(args: argparse.Namespace) -> int:
    from veille.territory import load_territory  # the territory's agencies only for this command

    territory = load_territory(get_settings().territory_dir)
    if args.agency not in territory.agencies:
        print(f"unknown agency: {args.agency} (not in the territory)", file=sys.stderr)
        return 2

    def issue() -> tuple[DeskAccount, list[str]]:
        account, password = AccountStore.default().issue(args.name, agency_id=args.agency, role=args.role,
                                                         login=args.login)
        return account, [f"login: {account.login}",
                         f"password (shown once, hand it over in person): {password}"]

    return print_issued(issue)


def _cmd_list(args: argparse.Namespace) -> int:
    for account in AccountStore.default().accounts().values():
        if args.agency in (None, account.agency_id):
            print(account.describe())
    return 0


def _rotate(ref: str) -> str:
    account, password = AccountStore.default().rotate(ref)
    return f"new password for {account.login} (the old one and its open sessions stop now): {password}"


def _revoke(ref: str) -> str:
    account = AccountStore.default().revoke(ref)
    return f"revoked {account.id} ({account.login})"


def add_commands(sub: Any) -> None:
    agency = sub.add_parser("agency", help="the agencies' desk (veille intake serve, under /agence/)",
                            description="Accounts of the people of a body who see, take and close its "
                                        "dispatches on the desk.")
    gsub = agency.add_subparsers(dest="agency_command", metavar="ACTION", required=True)
    acc = gsub.add_parser("accounts", help="issue, list, rotate and revoke desk accounts")
    asub = acc.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    issue = asub.add_parser("issue", help="issue an account (the password is printed once)")
    issue.add_argument("--agency", required=True, help="the body's id (jurisdiction.yaml)")
    issue.add_argument("--role", default=Role.agent.value, choices=[r.value for r in Role],
                       help="agent: sees and acts; chef: also exports to CSV (default: agent)")
    issue.add_argument("--name", required=True, help="who holds it, e.g. 'Astreinte voirie'")
    issue.add_argument("--login", help="login (default: <agency>-<account id>)")
    issue.set_defaults(func=_cmd_issue)
    add_actions(asub, ref="account", ref_help="account id or login",
                records=lambda: AccountStore.default().accounts().values(), rotate=_rotate, revoke=_revoke,
                list_help="list accounts (never their passwords)",
                rotate_help="new password; the old one and open sessions stop at once",
                revoke_help="refuse an account from now on")
    # ``list --agency``: one body's accounts (replaces the shared list action's handler).
    listing = asub.choices["list"]
    listing.add_argument("--agency", help="only this body's accounts")
    listing.set_defaults(func=_cmd_list)

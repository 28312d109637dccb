"""One credential store for whoever proves who they are to the hub with a secret it issued.

Uses: the intake's API keys (``intake_keys``: random tokens, SHA-256) and the relays' accounts
(``relay/accounts``: a login and a password, scrypt); the agencies' accounts will be a third.
What they share lives here, so each use only says what is its own (its record's fields and
scopes, how a secret is presented, the wording of its commands):

- a record per credential (:class:`Credential`: id, name, when issued, rotated, revoked), in a
  private JSON file per use (:class:`veille.statedir.RecordFile`: mode 0600, replaced
  atomically, read again when it changes, so a running server sees at once what the command
  line issued, rotated or revoked);
- the secret is shown once, at issue or rotation, and only its hash is kept; a
  :class:`SecretScheme` says how a secret is made, hashed and checked (in constant time, and
  with the same work for an unknown or revoked credential, so timing tells nothing);
- issue, rotate (a new secret at once) and revoke (refused from the next request on);
- for accounts people log into (:class:`PasswordAccount`, :class:`LoginStore`): the login
  rules, login by login, and a generation that ends older sessions;
- the commands' shape: list, rotate and revoke, a refusal on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from veille.statedir import RecordFile

LOGIN_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,62}$"
# 2**15 x 8 x 1: 32 MiB and ~0.1 s per check on this machine's cores: costly to guess, cheap to log in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# Read aloud or copied from a letter: no 0/o, 1/l/i. 16 of 31 symbols ~ 79 bits.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


# --------------------------------------------------------------------------- secrets


class SecretScheme(Protocol):
    """How one use makes, hashes and checks its secrets."""

    def new(self) -> str: ...

    def hash(self, secret: str) -> str: ...

    def check(self, secret: str, stored: str) -> bool: ...

    def waste(self, secret: str) -> None:
        """The work of a check when there is nothing to check against (same time either way)."""


class Sha256Tokens:
    """256 random bits: a fast hash is enough, there is nothing to brute-force."""

    def new(self) -> str:
        return secrets.token_urlsafe(32)

    def hash(self, secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def check(self, secret: str, stored: str) -> bool:
        return hmac.compare_digest(self.hash(secret), stored)

    def waste(self, secret: str) -> None:
        self.hash(secret)


def new_password() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(chars[i:i + 4] for i in range(0, 16, 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """scrypt (standard library, memory-hard), its parameters stored with the hash so they can be
    raised later without making older hashes unreadable."""
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


class ScryptPasswords:
    """Passwords people type: short enough to be guessed offline from a fast hash, so scrypt."""

    def __init__(self) -> None:
        # Checked against when the login is unknown, so an unknown login costs the same time.
        # Made here, once per use, so that no login pays for it.
        self._dummy = hash_password(secrets.token_urlsafe(16))

    def new(self) -> str:
        return new_password()

    def hash(self, secret: str) -> str:
        return hash_password(secret)

    def check(self, secret: str, stored: str) -> bool:
        return check_password(secret, stored)

    def waste(self, secret: str) -> None:
        check_password(secret, self._dummy)


# --------------------------------------------------------------------------- records


class Credential(BaseModel):
    """What every credential record holds; each use adds its scopes and its secret's hash."""

    # The field holding the secret's hash, as each use's file has always named it.
    SECRET_FIELD: ClassVar[str]

    id: str
    name: str = Field(min_length=1, max_length=200)
    created_at: datetime
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def secret_hash(self) -> str:
        return str(getattr(self, self.SECRET_FIELD))

    def describe(self) -> str:
        """One line of ``list``: never the secret nor its hash."""
        raise NotImplementedError


class PasswordAccount(Credential):
    """An account a person logs into with a login and a password."""

    SECRET_FIELD: ClassVar[str] = "password_hash"

    login: str = Field(pattern=LOGIN_PATTERN)
    password_hash: str

    @property
    def generation(self) -> str:
        """Changes when the password does: a session of an older generation is over."""
        return (self.rotated_at or self.created_at).isoformat()


C = TypeVar("C", bound=Credential)
A = TypeVar("A", bound=PasswordAccount)


class CredentialStore(Generic[C]):
    """The credentials of one use, in their file; ``id_bytes``: random bytes of a new id."""

    def __init__(self, path: Path, model: type[C], scheme: SecretScheme, *, id_bytes: int) -> None:
        self.path = path
        self.model = model
        self.scheme = scheme
        self.id_bytes = id_bytes
        self._file = RecordFile(path, model)

    def records(self) -> dict[str, C]:
        return self._file.load()

    def find(self, ref: str) -> C | None:
        """The record ``ref`` names (its id), active or not."""
        return self.records().get(ref)

    def first(self, match: Callable[[C], bool]) -> C | None:
        return next((r for r in self.records().values() if match(r)), None)

    def get(self, record_id: str) -> C | None:
        """The active record of this id."""
        record = self.records().get(record_id)
        return record if record is not None and record.active else None

    def verify(self, record: C | None, secret: str) -> C | None:
        """``record`` if it is active and ``secret`` is its own, else None (same work either way)."""
        if record is None or not record.active:
            self.scheme.waste(secret)
            return None
        return record if self.scheme.check(secret, record.secret_hash) else None

    def new_id(self) -> str:
        return secrets.token_hex(self.id_bytes)

    def issue(self, fields: Mapping[str, Any], *, record_id: str | None = None,
              secret: str | None = None) -> tuple[C, str]:
        """A new record of ``fields`` and its secret, to show once (``secret`` only for demos and
        tests). Raises ValueError (pydantic's ValidationError) when ``fields`` are not valid."""
        record_id = record_id or self.new_id()
        secret = secret or self.scheme.new()
        record = self.model.model_validate({**fields, "id": record_id, "created_at": datetime.now(UTC),
                                            self.model.SECRET_FIELD: self.scheme.hash(secret)})
        self._put(record)
        return record, secret

    def rotate(self, record: C) -> tuple[C, str]:
        """A new secret for ``record``: the old one stops working at once."""
        secret = self.scheme.new()
        rotated = record.model_copy(update={record.SECRET_FIELD: self.scheme.hash(secret),
                                            "rotated_at": datetime.now(UTC)})
        self._put(rotated)
        return rotated, secret

    def revoke(self, record: C) -> C:
        revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
        self._put(revoked)
        return revoked

    def _put(self, record: C) -> None:
        records = dict(self.records())
        records[record.id] = record
        self._file.save(records)


class LoginStore(CredentialStore[A]):
    """Accounts people log into: named by their id or their login, logged in by login."""

    def find(self, ref: str) -> A | None:
        return self.records().get(ref) or self.first(lambda a: a.login == ref)

    def existing(self, ref: str) -> A:
        """The account named ``ref`` (id or login); KeyError if there is none."""
        found = self.find(ref)
        if found is None:
            raise KeyError(f"no account {ref}")
        return found

    def rotate_ref(self, ref: str) -> tuple[A, str]:
        """A new password for the active account ``ref`` (KeyError if unknown or revoked)."""
        account = self.existing(ref)
        if not account.active:
            raise KeyError(f"account {ref} is revoked")
        return self.rotate(account)

    def revoke_ref(self, ref: str) -> A:
        return self.revoke(self.existing(ref))

    def authenticate(self, login: str, password: str) -> A | None:
        """The active account of this login and password, or None (logins are case-blind)."""
        login = login.strip().lower()
        return self.verify(self.first(lambda a: a.login == login), password)

    def check_login(self, login: str) -> None:
        """ValueError unless ``login`` (lower case) is well formed and free."""
        if not re.match(LOGIN_PATTERN, login):
            raise ValueError(f"login {login!r}: 3 to 63 of a-z 0-9 . _ -, starting with a letter or digit")
        if self.first(lambda a: a.login == login) is not None:
            raise ValueError(f"login {login!r} is taken")


# --------------------------------------------------------------------------- CLI

Command = Callable[[argparse.Namespace], int]


def print_issued(issue: Callable[[], tuple[Credential, list[str]]]) -> int:
    """``issue`` a credential (its ValueError is the refusal: stderr, exit 2), then print it and
    the lines that show its secret, once."""
    try:
        record, lines = issue()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(record.describe())
    for line in lines:
        print(line)
    return 0


def list_command(records: Callable[[], Iterable[Credential]]) -> Command:
    def run(args: argparse.Namespace) -> int:
        for record in records():
            print(record.describe())
        return 0

    return run


def change_command(change: Callable[[str], str], ref: str) -> Command:
    """``rotate`` or ``revoke`` of the record named by argument ``ref``: ``change`` does it and
    gives the line to print; its KeyError is the refusal."""

    def run(args: argparse.Namespace) -> int:
        try:
            line = change(getattr(args, ref))
        except KeyError as exc:
            print(exc.args[0], file=sys.stderr)
            return 2
        print(line)
        return 0

    return run


def add_actions(sub: Any, *, ref: str, ref_help: str | None, records: Callable[[], Iterable[Credential]],
                rotate: Callable[[str], str], revoke: Callable[[str], str],
                list_help: str, rotate_help: str, revoke_help: str) -> None:
    """The ``list``, ``rotate REF`` and ``revoke REF`` actions, added after the use's own ``issue``
    (argparse lists the actions in the order they are added)."""
    sub.add_parser("list", help=list_help).set_defaults(func=list_command(records))
    for action, change, text in (("rotate", rotate, rotate_help), ("revoke", revoke, revoke_help)):
        parser = sub.add_parser(action, help=text)
        parser.add_argument(ref, help=ref_help)
        parser.set_defaults(func=change_command(change, ref))

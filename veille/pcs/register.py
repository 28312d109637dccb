"""The vulnerable-persons register: the most sensitive data the hub holds.

Opt-in entries (name, address, needs, the representative who checks on the person) kept per
municipality in one file, ``<state_dir>/pcs-register/<insee>.fernet``, readable by its owner
only, its whole content a Fernet token (AES-128-CBC + HMAC-SHA256, authenticated) under the
key in ``VEILLE_PCS_REGISTER_KEY``: the bytes on disk name nobody, a modified file is refused.
Nothing of it goes to Kafka, the shared store or a log line: the cascade carries only entry
ids and counts (:func:`counts_by_representative`); names are decrypted for two readers only,
the municipality's safeguard service (every entry of the town) and the assigned representative
(their own), by :func:`entries_for`. Deleting an entry (on request, or when consent ends)
rewrites the file without it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from veille.pcs.settings import PcsSettings
from veille.schemas.models import InseeCode
from veille.statedir import write_private

KEY_ENV = "VEILLE_PCS_REGISTER_KEY"
REGISTER_DIR = "pcs-register"


class RegisterError(ValueError):
    """No key, a wrong key, or a file that does not decrypt: never shows the content."""


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=300)
    needs: str = Field(default="", max_length=500)
    representative: str = Field(min_length=1)

    def __repr__(self) -> str:  # a stray repr in a traceback or log must not name anyone
        return f"Person(id={self.id!r}, representative={self.representative!r})"

    __str__ = __repr__


_ENTRIES = TypeAdapter(list[Person])


@dataclass(frozen=True)
class Reader:
    """Who asks: the town's safeguard service (``representative`` None) or one representative."""

    municipality: str
    representative: str | None = None


def key_from_env() -> bytes:
    key = PcsSettings().register_key.get_secret_value()
    if not key:
        raise RegisterError(f"{KEY_ENV} is not set (generate one: veille pcs register key)")
    return key.encode("ascii")


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


class Register:
    """One directory of per-municipality encrypted files."""

    def __init__(self, directory: Path, key: bytes) -> None:
        self.directory = directory
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise RegisterError(f"{KEY_ENV} is not a Fernet key (32 url-safe base64 bytes)") from None

    def path(self, insee: InseeCode) -> Path:
        return self.directory / f"{insee}.fernet"

    def _load(self, insee: InseeCode) -> list[Person]:
        file = self.path(insee)
        if not file.is_file():
            return []
        try:
            plain = self._fernet.decrypt(file.read_bytes())
        except InvalidToken:
            raise RegisterError(f"{file}: does not decrypt with {KEY_ENV} (wrong key or "
                                "modified file)") from None
        return _ENTRIES.validate_json(plain)

    def _save(self, insee: InseeCode, entries: list[Person]) -> None:
        token = self._fernet.encrypt(_ENTRIES.dump_json(entries))
        write_private(self.path(insee), token.decode("ascii"))

    def add(self, insee: InseeCode, *, name: str, address: str, needs: str,
            representative: str) -> Person:
        person = Person(id=str(uuid.uuid4()), name=name, address=address, needs=needs,
                        representative=representative)
        self._save(insee, [*self._load(insee), person])
        return person

    def delete(self, insee: InseeCode, person_id: str) -> bool:
        entries = self._load(insee)
        kept = [p for p in entries if p.id != person_id]
        if len(kept) == len(entries):
            return False
        self._save(insee, kept)
        return True

    def entries_for(self, reader: Reader) -> list[Person]:
        """Decrypted entries this reader may see: all of the town for its safeguard service,
        only their own for a representative."""
        entries = self._load(reader.municipality)
        if reader.representative is None:
            return entries
        return [p for p in entries if p.representative == reader.representative]

    def counts_by_representative(self, insee: InseeCode) -> dict[str, int]:
        """How many persons each representative checks on: what the cascade may carry."""
        return dict(Counter(p.representative for p in self._load(insee)))


def default_register() -> Register:
    from veille.config import get_settings

    return Register(get_settings().state_dir / REGISTER_DIR, key_from_env())


__all__ = ["KEY_ENV", "REGISTER_DIR", "Person", "Reader", "Register", "RegisterError",
           "default_register", "key_from_env", "new_key"]

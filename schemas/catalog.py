"""The schema catalog: every released Avro schema version shipped in ``schemas/avro``.

Layout: ``avro/<RecordName>/v<N>.avsc``. Released versions are never edited or removed,
so data written by any older publisher stays readable; the highest version of each
record is the reader schema. Each version is identified on the wire by the CRC-64-AVRO
fingerprint of its Parsing Canonical Form (Avro single-object encoding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

AVRO_DIR = Path(__file__).parent / "avro"


@dataclass(frozen=True)
class SchemaVersion:
    name: str  # record name without namespace, e.g. "Incident"
    version: int
    parsed: Any  # fastavro parsed schema
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as written on the wire
    # The .avsc as compact JSON, docs and defaults included: what a schema registry is given.
    schema_json: str = field(default="", compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


class Catalog:
    def __init__(self, root: Path = AVRO_DIR) -> None:
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._versions: dict[str, list[SchemaVersion]] = {}
        for path in sorted(root.glob("*/v*.avsc")):
            name, version = path.parent.name, int(path.stem[1:])
            # _write_hint=False keeps the parsed schema reusable as reader and writer.
            raw = json.loads(path.read_text())
            parsed = fastavro.parse_schema(raw, _force=True)
            fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
            if fp in self.by_fingerprint:
                raise ValueError(f"{path}: same canonical schema as {self.by_fingerprint[fp].label}")
            sv = SchemaVersion(name, version, parsed, fp, json.dumps(raw, separators=(",", ":")))
            self.by_fingerprint[fp] = sv
            self._versions.setdefault(name, []).append(sv)
        for versions in self._versions.values():
            versions.sort(key=lambda v: v.version)

    @property
    def names(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, name: str) -> list[SchemaVersion]:
        return list(self._versions[name])

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self._versions[name][-1]
        except KeyError:
            raise KeyError(f"no schema named {name!r} in the catalog") from None

    def version(self, name: str, version: int) -> SchemaVersion:
        for sv in self._versions[name]:
            if sv.version == version:
                return sv
        raise KeyError(f"{name} has no version {version}")


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return Catalog()

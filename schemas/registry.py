"""Confluent Schema Registry framing: the registry client, the id cache, the framed encoder.

    00 | 4-byte big-endian schema id | Avro binary body

A schema id is resolved once through the registry's Confluent API (``GET /schemas/ids/<id>``)
to a *released catalog version* (matched by its canonical-form fingerprint): the catalog stays
the contract, the registry only names its versions with ids. Ids are immutable, so a resolved
id is cached for the life of the process and keeps working while the registry is down.

Two failures, kept apart on purpose:
* the registry answers that it has no such id, or the id names a schema that is not a
  released version of a catalog record → ``DecodeError("unknown_schema")`` (the message is
  dead-lettered, naming the id);
* the registry cannot be reached (refused, timeout, 5xx) → ``RegistryUnavailable``, which is
  *not* a ``DecodeError``: consumers retry with backoff, never dead-letter a message because
  the registry blinked.

Credentials (basic auth) come from the settings (``VEILLE_SCHEMA_REGISTRY_USERNAME`` /
``_PASSWORD``) and are only ever sent over HTTPS, or to a registry on the loopback interface.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from prometheus_client import Counter, Gauge

from veille.schemas import codec
from veille.schemas.catalog import Catalog, SchemaVersion, catalog
from veille.topics import Topics

if TYPE_CHECKING:
    from veille.config import Settings

log = logging.getLogger("veille.schemas.registry")
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
NEGATIVE_TTL = 30.0  # seconds an id the registry does not know is not asked again
FRAMINGS = ("single_object", "confluent")

REGISTRY_ERRORS = Counter("veille_schema_registry_errors_total",
                          "Requests to the schema registry that failed to get an answer "
                          "(refused, timeout, 5xx)", ["operation"])
REGISTRY_WAITING = Gauge("veille_schema_registry_unreachable",
                         "1 while a consumer waits for an unreachable schema registry to resolve a "
                         "schema id it has not cached (nothing is dead-lettered meanwhile)")
IDS_RESOLVED = Counter("veille_schema_registry_ids_resolved_total",
                       "Schema ids resolved through the registry (then cached)")


class RegistryUnavailable(Exception):
    """The registry could not be reached: retriable, never a reason to dead-letter."""


class RegistryRefused(RuntimeError):
    """The registry answered with an error (4xx): the request itself is wrong."""

    def __init__(self, status: int, error_code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status} ({error_code}): {message}")
        self.status = status
        self.error_code = error_code


def _is_loopback(host: str | None) -> bool:
    return host in ("localhost", "::1") or bool(host and host.startswith("127."))


class RegistryClient:
    """The few calls of the Confluent API the hub makes, with the standard library only."""

    def __init__(self, url: str, *, username: str = "", password: str = "", timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"schema registry URL must be http(s)://..., not {url!r}")
        self._auth: str | None = None
        if username:
            if parsed.scheme != "https" and not _is_loopback(parsed.hostname):
                raise ValueError("refusing to send schema registry credentials over plain HTTP to "
                                 f"{parsed.hostname}: use an https:// URL")
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._auth = f"Basic {token}"

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                operation: str = "other") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if self._auth:
            headers["Authorization"] = self._auth
        req = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                REGISTRY_ERRORS.labels(operation).inc()
                raise RegistryUnavailable(f"schema registry {self.url}: HTTP {exc.code}") from exc
            try:
                err = json.loads(exc.read())
                code, message = err.get("error_code"), str(err.get("message", ""))
            except (ValueError, AttributeError, OSError):
                code, message = None, exc.reason
            raise RegistryRefused(exc.code, code, message) from exc
        except (OSError, ValueError) as exc:  # URLError, refused, timeout, reset, bad JSON
            REGISTRY_ERRORS.labels(operation).inc()
            raise RegistryUnavailable(f"schema registry {self.url} unreachable: {exc}") from exc

    def schema_by_id(self, schema_id: int) -> str | None:
        """The schema text of ``schema_id``; None if the registry does not know it."""
        try:
            answer = self.request("GET", f"/schemas/ids/{schema_id}", operation="schema_by_id")
        except RegistryRefused as exc:
            if exc.status == 404:
                return None
            # 401/403 (credentials), 429...: the registry's state, not the message's fault.
            REGISTRY_ERRORS.labels("schema_by_id").inc()
            raise RegistryUnavailable(f"schema registry {self.url} refused to resolve id {schema_id}: "
                                      f"{exc}") from exc
        return str(answer["schema"])

    def register(self, subject: str, schema: str) -> int:
        answer = self.request("POST", f"/subjects/{_q(subject)}/versions",
                              {"schemaType": "AVRO", "schema": schema}, operation="register")
        return int(answer["id"])

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of ``schema`` under ``subject`` if registered there, else None."""
        try:
            answer = self.request("POST", f"/subjects/{_q(subject)}",
                                  {"schemaType": "AVRO", "schema": schema}, operation="lookup")
        except RegistryRefused as exc:
            if exc.status == 404:
                return None
            raise
        return int(answer["id"])

    def set_compatibility(self, subject: str, level: str) -> None:
        self.request("PUT", f"/config/{_q(subject)}", {"compatibility": level}, operation="config")

    def compatibility(self, subject: str) -> str:
        answer = self.request("GET", f"/config/{_q(subject)}", operation="config")
        return str(answer.get("compatibilityLevel") or answer.get("compatibility"))

    def versions(self, subject: str) -> list[int]:
        try:
            return [int(v) for v in self.request("GET", f"/subjects/{_q(subject)}/versions")]
        except RegistryRefused as exc:
            if exc.status == 404:
                return []
            raise


def _q(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def schema_text(sv: SchemaVersion) -> str:
    """What is registered for a catalog version: its .avsc, defaults and docs included (the
    registry's compatibility checks need the defaults, which the canonical form drops)."""
    return sv.schema_json


def full_name(sv: SchemaVersion) -> str:
    return str(sv.parsed["name"])  # fastavro's parsed schema carries the full (namespaced) name


class SchemaResolver:
    """Schema id → catalog version, cached; (subject, version) → id for framed writers."""

    def __init__(self, client: RegistryClient, topics: Topics, cat: Catalog | None = None,
                 clock: Any = time.monotonic) -> None:
        self.client = client
        self.topics = topics
        self.cat = cat or catalog()
        self.clock = clock
        self._by_id: dict[int, SchemaVersion] = {}
        self._unknown: dict[int, tuple[float, str]] = {}
        self._ids: dict[tuple[str, bytes], int] = {}
        self._lock = threading.Lock()

    # -- readers (codec.decode calls this for every Confluent-framed message) --------------
    def writer(self, schema_id: int) -> SchemaVersion:
        sv = self._by_id.get(schema_id)
        if sv is not None:
            return sv
        negative = self._unknown.get(schema_id)
        if negative is not None and negative[0] > self.clock():
            raise codec.DecodeError("unknown_schema", negative[1])
        text = self.client.schema_by_id(schema_id)  # RegistryUnavailable propagates
        if text is None:
            return self._refuse(schema_id, f"schema id {schema_id} is not in the schema registry")
        try:
            parsed = fastavro.parse_schema(json.loads(text), _force=True)
            fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        except Exception as exc:
            return self._refuse(schema_id, f"schema id {schema_id} is not a readable Avro schema: {exc}")
        sv = self.cat.by_fingerprint.get(fp)
        if sv is None:
            name = parsed.get("name", "?") if isinstance(parsed, dict) else "?"
            return self._refuse(schema_id, f"schema id {schema_id} ({name}) is not a released version "
                                           "of a catalog record")
        with self._lock:
            self._by_id[schema_id] = sv
        IDS_RESOLVED.inc()
        return sv

    def _refuse(self, schema_id: int, why: str) -> SchemaVersion:
        self._unknown[schema_id] = (self.clock() + NEGATIVE_TTL, why)
        raise codec.DecodeError("unknown_schema", why)

    # -- writers ---------------------------------------------------------------------------
    def id_for(self, topic: str, sv: SchemaVersion) -> int:
        """The id of ``sv`` under the subject of ``topic``; it must have been registered."""
        key = (topic, sv.fingerprint)
        found = self._ids.get(key)
        if found is not None:
            return found
        subject = self.topics.subject(topic, full_name(sv))
        found = self.client.lookup(subject, schema_text(sv))
        if found is None:
            raise codec.EncodeError(f"{sv.label} is not registered under {subject}: run "
                                    "`veille schemas register` against this registry first")
        with self._lock:
            self._ids[key] = found
            self._by_id.setdefault(found, sv)
        return found

    def encode(self, topic: str, record_type: str, value: Mapping[str, Any]) -> bytes:
        sv = self.cat.latest(record_type)
        return codec.encode_confluent(record_type, value, self.id_for(topic, sv), cat=self.cat)


def resolver_from_settings(settings: Settings) -> SchemaResolver | None:
    """The resolver for ``VEILLE_SCHEMA_REGISTRY_URL``; None when no registry is configured."""
    if settings.framing not in FRAMINGS:
        raise ValueError(f"VEILLE_FRAMING must be one of {', '.join(FRAMINGS)}, not {settings.framing!r}")
    if not settings.schema_registry_url:
        if settings.framing == "confluent":
            raise ValueError("VEILLE_FRAMING=confluent needs VEILLE_SCHEMA_REGISTRY_URL")
        return None
    client = RegistryClient(settings.schema_registry_url, username=settings.schema_registry_username,
                            password=settings.schema_registry_password.get_secret_value(),
                            timeout=settings.schema_registry_timeout)
    return SchemaResolver(client, Topics(settings.topic_prefix))


def output_resolver(settings: Settings) -> SchemaResolver | None:
    """The resolver to frame outputs with, when ``VEILLE_FRAMING=confluent``; else None."""
    resolver = resolver_from_settings(settings)
    return resolver if resolver is not None and settings.framing == "confluent" else None

"""An agency's ``delivery:`` section of ``jurisdiction.yaml``: how its dispatches reach it.

    agencies:
      - id: mairie-35401
        ...
        delivery:
          webhook:
            url: https://sig.montveille.fr/veille/dispatch
            secret: {file: /run/secrets/veille-webhook-mairie-35401}   # or {env: VAR_NAME}
            category_urls: {flood: https://astreinte.montveille.fr/veille}
          email:
            to: [services.techniques@montveille.fr]
          open311:
            base_url: https://gmao.montveille.fr/open311/v2
            api_key: {env: VEILLE_OPEN311_KEY_MAIRIE_35401}
            service_codes: {broken_streetlight: EP-01, damaged_road: VOI-02}

Kafka (the agency's ``<prefix>.dispatch.<agency>`` topic) is always on: it is every body's
replayable record, whatever else it receives. Secrets are never in the YAML: a ``secret`` or
``api_key`` names a file or an environment variable, read when delivering
(:meth:`SecretRef.reveal`). :func:`parse_delivery` turns one agency's mapping into a
:class:`DeliveryConfig` or raises :class:`DeliveryConfigError` listing every problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from veille.deliver.ssrf import DestinationRefused, parse_destination
from veille.schemas.models import CapCategory, DeliveryMethod, IncidentCategory

# A dispatch's category is an incident category, or a CAP category for an alert.
CATEGORIES = frozenset(c.value for c in IncidentCategory) | frozenset(c.value for c in CapCategory)
# One address, no display name: nothing a header could be injected through.
EMAIL_PATTERN = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                           r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
MAX_RECIPIENTS = 20


class DeliveryConfigError(ValueError):
    """An agency's delivery section is invalid; ``problems`` has one line per error."""

    def __init__(self, agency_id: str, problems: list[str]) -> None:
        super().__init__(f"agency {agency_id}: invalid delivery section:\n  " + "\n  ".join(problems))
        self.agency_id = agency_id
        self.problems = tuple(problems)


class SecretUnavailable(RuntimeError):
    """A configured secret cannot be read (the message names where, never a value)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Spec):
    """Where a secret is: a file (its content, trailing newline removed) or an environment variable."""

    file: Path | None = None
    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file: PATH or env: VARIABLE")
        return self

    @property
    def where(self) -> str:
        return f"file {self.file}" if self.file is not None else f"environment variable {self.env}"

    def reveal(self) -> SecretStr:
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretUnavailable(f"secret {self.where} cannot be read: {exc.strerror}") from None
        else:
            value = os.environ.get(self.env or "", "")
        if not value.strip():
            raise SecretUnavailable(f"secret {self.where} is empty or not set")
        return SecretStr(value)


def _secret_ref(value: Any) -> Any:
    if isinstance(value, str | bytes | int):
        raise ValueError("never write a secret in the YAML: use {file: PATH} or {env: VARIABLE}")
    return value


def _destination(url: str) -> str:
    try:
        parse_destination(url)
    except DestinationRefused as exc:
        raise ValueError(str(exc)) from None
    return url


def _categories(mapping: Mapping[str, Any]) -> None:
    unknown = sorted(set(mapping) - CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories: {', '.join(unknown)}")


class WebhookDelivery(_Spec):
    url: str
    secret: SecretRef
    category_urls: dict[str, str] = Field(default_factory=dict)
    # The reporter's contact, when the dispatch carries it, goes in the body only if set.
    include_reporter_contact: bool = False

    @field_validator("secret", mode="before")
    @classmethod
    def _secret_not_inline(cls, value: Any) -> Any:
        return _secret_ref(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _destination(value)

    @field_validator("category_urls")
    @classmethod
    def _category_urls(cls, value: dict[str, str]) -> dict[str, str]:
        _categories(value)
        for url in value.values():
            _destination(url)
        return value

    def url_for(self, category: str) -> str:
        return self.category_urls.get(category, self.url)


class EmailDelivery(_Spec):
    to: tuple[str, ...] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    include_reporter_contact: bool = False

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if len(a) > 254 or not EMAIL_PATTERN.match(a)]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(repr(a) for a in bad)}")
        return tuple(dict.fromkeys(a.strip() for a in value))


class Open311Delivery(_Spec):
    base_url: str  # the endpoint's root: requests.json is base_url + "/requests.json"
    api_key: SecretRef
    service_codes: dict[str, str] = Field(min_length=1)
    default_service_code: str | None = None  # categories not in service_codes; None: not sent
    jurisdiction_id: str | None = None
    # Read status changes with mySociety's servicerequestupdates extension as well.
    request_updates: bool = False
    include_reporter_contact: bool = False

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_not_inline(cls, value: Any) -> Any:
        return _secret_ref(value)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _destination(value).rstrip("/")

    @field_validator("service_codes")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        _categories(value)
        if any(not str(code).strip() for code in value.values()):
            raise ValueError("a service_code is empty")
        return value

    def service_code_for(self, category: str) -> str | None:
        return self.service_codes.get(category, self.default_service_code)


class DeliveryConfig(_Spec):
    kafka: Literal[True] = True
    webhook: WebhookDelivery | None = None
    email: EmailDelivery | None = None
    open311: Open311Delivery | None = None

    @field_validator("kafka", mode="before")
    @classmethod
    def _kafka_stays(cls, value: Any) -> Any:
        if value is False:
            raise ValueError("cannot be turned off: the dispatch topic is every body's replayable record")
        return value

    @property
    def methods(self) -> tuple[DeliveryMethod, ...]:
        """Kafka first, then every other method configured."""
        extra = [m for m in (DeliveryMethod.webhook, DeliveryMethod.email, DeliveryMethod.open311)
                 if getattr(self, m.value) is not None]
        return (DeliveryMethod.kafka, *extra)

    def secrets(self) -> list[SecretRef]:
        refs = []
        if self.webhook is not None:
            refs.append(self.webhook.secret)
        if self.open311 is not None:
            refs.append(self.open311.api_key)
        return refs


def parse_delivery(agency_id: str, raw: Mapping[str, Any] | None) -> DeliveryConfig:
    """One agency's ``delivery:`` mapping (absent or null: Kafka only)."""
    if raw is None:
        return DeliveryConfig()
    if not isinstance(raw, Mapping):
        got = type(raw).__name__
        raise DeliveryConfigError(agency_id, [f"delivery: expected a mapping of methods, got {got}"])
    try:
        return DeliveryConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()]
    # Raised outside the handler: the ValidationError, which quotes the input (a secret written
    # inline), is not even kept as the new error's context.
    raise DeliveryConfigError(agency_id, problems)


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in ("delivery", *error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{where}: {message}"


def check_secrets(agency_id: str, config: DeliveryConfig) -> list[str]:
    """What is wrong with the secrets ``config`` names, as they are now (empty when all read)."""
    problems = []
    for ref in config.secrets():
        try:
            ref.reveal()
        except SecretUnavailable as exc:
            problems.append(f"agency {agency_id}: {exc}")
    return problems

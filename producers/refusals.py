"""Why a publisher's event is refused before Kafka: the field, and the reason, never the value.

Shared by the SDK, the HTTP intake's front-ends and file import (re-exported by ``sdk``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

RECORD_FIELD = "(record)"  # field path of errors about the event as a whole


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. "location.lat" or "infos.0.areas"
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class Rejected(ValueError):
    """An event refused before Kafka; ``errors`` says which field is wrong and why."""

    def __init__(self, record_type: str, errors: list[FieldError], reason: str = "validation") -> None:
        self.record_type = record_type
        self.errors = errors
        self.reason = reason
        super().__init__(f"{record_type} rejected ({reason}): "
                         + "; ".join(f"{e.field}: {e.reason}" for e in errors))

    @classmethod
    def from_validation(cls, record_type: str, exc: ValidationError) -> Rejected:
        return cls(record_type, field_errors(exc))


def field_errors(exc: ValidationError) -> list[FieldError]:
    """(path, reason) for each error; the input is left out as it may hold personal data."""
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        path = ".".join(str(p) for p in err["loc"]) or RECORD_FIELD
        reason = err["msg"].removeprefix("Value error, ")
        out.append(FieldError(path, reason))
    return out

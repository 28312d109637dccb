"""Why the router refuses a message: the reason code a dead letter and a metric label carry.

Bad input never raises out of ``Router.process``: it raises :class:`Rejected` inside, which
becomes a dead-letter record with the reason and a readable message.
"""

from __future__ import annotations

from pydantic import ValidationError


class Rejected(Exception):
    """Bad input: becomes a dead-letter record with this reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @classmethod
    def invalid(cls, exc: ValidationError) -> Rejected:
        """A record Avro accepted and the model refused: which kind of field, and every error."""
        return cls(_validation_reason(exc), _validation_message(exc))


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in exc.errors())


_TIME_FIELDS = frozenset({"occurred_at", "reported_at", "sent", "at", "effective", "onset", "expires"})


def _validation_reason(exc: ValidationError) -> str:
    """A reason code precise enough for a metric label: what kind of field was wrong."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    if field in _TIME_FIELDS:
        return "invalid_timestamp"
    if field == "location":
        return "invalid_coordinates"
    if first["type"] == "too_complex" or (field == "infos" and first["type"] == "too_long"):
        return "too_complex"
    if first["type"] in ("string_too_long", "too_long"):
        return "oversized_field"
    return "validation_error"


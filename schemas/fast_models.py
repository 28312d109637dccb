"""An ``Incident`` from its decoded Avro value without pydantic's validator, where a plain
check proves the value valid: the router's hot path (issue 26).

Building the model through pydantic cost ~10 µs per incident, a seventh of the router's work.
:func:`incident_from_avro` checks what Avro cannot express (INSEE code, WGS84 ranges, bounded
text, sane times, the model's cross-field rule) in plain Python and, when every check passes,
builds the model as pydantic's ``model_construct`` does (attributes set, no validation).

The guarantee is the model's, by construction: each check here is *at least as strict* as the
model's (ASCII-only patterns where the model's allow Unicode classes, exact ``str`` and
``float`` types where the model would coerce, the exact set of fields), and anything it does
not accept returns None, for the caller to validate with pydantic, which accepts or refuses
it with its own words. So no value passes here that pydantic refuses, and one that passes
gets the model pydantic would have built (``tests/schemas/test_fast_models.py`` compares the
two on generated and hostile values).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from veille.schemas.enums import Channel, IncidentCategory, Severity
from veille.schemas.models import (
    HUB_EPOCH,
    MAX_ATTACHMENTS,
    MAX_CLOCK_SKEW,
    MAX_DESCRIPTION,
    MAX_PHOTOS,
    Attachment,
    GeoPoint,
    Incident,
    PhotoRef,
    ReporterContact,
)

M = TypeVar("M", bound=BaseModel)

_INCIDENT_FIELDS = frozenset(Incident.model_fields)
_CATEGORIES = {m.value: m for m in IncidentCategory}
_SEVERITIES = {m.value: m for m in Severity}
_CHANNELS = {m.value: m for m in Channel}
# ASCII subsets of the model's patterns (pydantic's regex engine reads \d and \w as Unicode
# classes, and its $ as the very end): what matches here matches there.
_INSEE = re.compile(r"[0-9]{5}|2[AB][0-9]{3}").fullmatch
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+").fullmatch
_IMAGE_TYPE = re.compile(r"image/[A-Za-z0-9_.+-]+").fullmatch
_SHA256 = re.compile(r"[0-9a-f]{64}").fullmatch
_new = object.__new__
_set = object.__setattr__


def _built(model: type[M], fields: dict[str, Any]) -> M:
    """``model`` holding ``fields`` (every one of its fields, all given): what
    ``model_construct`` does, without its per-field defaults pass."""
    obj = _new(model)
    _set(obj, "__dict__", fields)
    _set(obj, "__pydantic_fields_set__", set(fields))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _text(value: Any, longest: int) -> bool:
    return type(value) is str and len(value) <= longest


def _optional_text(value: Any, longest: int) -> bool:
    return value is None or (type(value) is str and len(value) <= longest)


def _time(value: Any, now: datetime) -> bool:
    return (type(value) is datetime and value.tzinfo is UTC and value.microsecond % 1000 == 0
            and HUB_EPOCH <= value <= now + MAX_CLOCK_SKEW)


def _location(value: Any) -> GeoPoint | bool | None:
    """The point, None for none, False when it is not plainly valid."""
    if value is None:
        return None
    if type(value) is not dict or len(value) != 2:
        return False
    lat, lon = value.get("lat"), value.get("lon")
    if type(lat) is not float or type(lon) is not float:
        return False
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return False  # NaN fails the comparisons too
    return _built(GeoPoint, {"lat": lat, "lon": lon})


def _reporter(value: Any) -> ReporterContact | bool | None:
    if value is None:
        return None
    if type(value) is not dict or len(value) != 3:
        return False
    name, phone, email = value.get("name"), value.get("phone"), value.get("email")
    if not (_optional_text(name, 200) and _optional_text(phone, 40) and _optional_text(email, 254)):
        return False
    return _built(ReporterContact, {"name": name, "phone": phone, "email": email})


def _attachments(value: Any) -> list[Attachment] | None:
    if type(value) is not list or len(value) > MAX_ATTACHMENTS:
        return None
    out = []
    for item in value:
        if type(item) is not dict or len(item) != 2:
            return None
        uri, media_type = item.get("uri"), item.get("media_type")
        if not (_text(uri, 2000) and uri and type(media_type) is str and _MEDIA_TYPE(media_type)):
            return None
        out.append(_built(Attachment, {"uri": uri, "media_type": media_type}))
    return out


def _photos(value: Any) -> list[PhotoRef] | None:
    if type(value) is not list or len(value) > MAX_PHOTOS:
        return None
    out = []
    for item in value:
        if type(item) is not dict or len(item) != 2:
            return None
        digest, media_type = item.get("sha256"), item.get("media_type")
        if not (type(digest) is str and _SHA256(digest)
                and type(media_type) is str and _IMAGE_TYPE(media_type)):
            return None
        out.append(_built(PhotoRef, {"sha256": digest, "media_type": media_type}))
    return out


def incident_from_avro(value: dict[str, Any]) -> Incident | None:
    """The model of a plainly valid incident, or None: then pydantic decides (see above)."""
    try:
        return _incident(value)
    except (TypeError, KeyError, AttributeError, ValueError):  # an unhashable symbol, say
        return None


def _incident(value: dict[str, Any]) -> Incident | None:
    if type(value) is not dict or value.keys() != _INCIDENT_FIELDS:
        return None
    incident_id, municipality = value["id"], value["municipality"]
    category = _CATEGORIES.get(value["category"])
    severity = _SEVERITIES.get(value["severity"])
    channel = _CHANNELS.get(value["channel"])
    if (type(incident_id) is not UUID or type(municipality) is not str or not _INSEE(municipality)
            or category is None or severity is None or channel is None):
        return None
    occurred_at, reported_at = value["occurred_at"], value["reported_at"]
    now = datetime.now(UTC)
    if not (_time(occurred_at, now) and _time(reported_at, now)
            and occurred_at <= reported_at + MAX_CLOCK_SKEW):
        return None
    location = _location(value["location"])
    reporter = _reporter(value["reporter"])
    if location is False or reporter is False:
        return None
    address, description = value["address"], value["description"]
    if not (_optional_text(address, 500) and _text(description, MAX_DESCRIPTION)):
        return None
    attachments = _attachments(value["attachments"])
    photos = _photos(value["photos"])
    if attachments is None or photos is None:
        return None
    return _built(Incident, {
        "id": incident_id, "municipality": municipality, "category": category, "severity": severity,
        "location": location, "address": address, "occurred_at": occurred_at, "reported_at": reported_at,
        "channel": channel, "reporter": reporter, "description": description,
        "attachments": attachments, "photos": photos,
    })


__all__ = ["incident_from_avro"]

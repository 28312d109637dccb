"""Photos on the intake's JSON API: ``POST /v1/photos``, and the incidents that refer to them.

    POST /v1/photos    the image as the body (any Content-Type: the content decides), or a
                       multipart/form-data part named ``photo`` or ``media``; the same API key
                       as for incidents. 201 {"sha256", "media_type", "width", "height"}: what
                       was kept (stripped, re-encoded: veille.photos.sanitise); 422 refused,
                       with ``code`` (unsupported_type, markup, polyglot, malformed,
                       too_many_pixels, too_small, empty) and a French reason; 413 too_large.

The relays' form and Open311 send the photo with the report, as multipart/form-data:
:func:`read_form` reads it part by part without the intake's body limit (which bounds a JSON
event, not a photo): text fields bounded (``MAX_FIELD_BYTES`` each, ``MAX_FIELDS`` in all), the
photo by ``VEILLE_PHOTOS_MAX_BYTES`` (:meth:`PhotoIntake.read`).

An incident then refers to it: ``"photos": [{"sha256": "<digest>"}]`` (Incident v3). The
intake publishes it only if the store holds each photo (422 ``photos`` otherwise), and records
the reference first, for the retention (veille.photos.retention).
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from aiohttp import BodyPartReader, web
from multidict import MultiDict

from veille.photos.intake import PHOTOS_KEY, PhotoIntake, refusal_json
from veille.photos.sanitise import CleanPhoto, PhotoRefused
from veille.producers.gate import CONFIG_KEY, Refusal, admit

PART_NAMES = ("photo", "media")
MAX_FIELDS = 50
MAX_FIELD_BYTES = 16 * 1024


class FormTooLarge(ValueError):
    pass


def photos_of(app: web.Application) -> PhotoIntake | None:
    return app.get(PHOTOS_KEY)


def described(photo: CleanPhoto) -> dict[str, Any]:
    return {"sha256": photo.sha256, "media_type": photo.media_type, "width": photo.width,
            "height": photo.height}


def refused(exc: PhotoRefused, field: str = "photo") -> web.Response:
    return web.json_response(refusal_json(exc, field), status=413 if exc.code == "too_large" else 422)


async def upload(request: web.Request, token: str | None) -> web.Response:
    _key, refusal = admit(request.app, token, request.remote, "Incident")
    if refusal is not None:
        return web.json_response({"errors": [{"field": "api_key", "reason": refusal.reason}],
                                  "code": refusal.code}, status=refusal.status)
    photos = photos_of(request.app)
    if photos is None:
        return web.json_response({"errors": [{"field": "photo", "reason": "this intake keeps no photos"}]},
                                 status=404)
    try:
        data = await asyncio.wait_for(_body(request, photos), request.app[CONFIG_KEY].body_timeout)
        photo = await photos.keep(data)
    except PhotoRefused as exc:
        return refused(exc)
    except TimeoutError:
        return web.json_response({"errors": [{"field": "photo", "reason": "body not received in time"}]},
                                 status=408)
    return web.json_response(described(photo), status=201)


async def _body(request: web.Request, photos: PhotoIntake) -> bytes:
    if not request.content_type.startswith("multipart/"):
        return await photos.read(request.content)
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name in PART_NAMES:
            return await photos.read(part)
    raise PhotoRefused("empty")


async def check_references(app: web.Application, data: dict[str, Any]) -> Refusal | None:
    """For an incident that refers to photos: refused unless each is kept; else the references
    are recorded (before publishing: a published incident's photos are always accounted for)."""
    refs = data.get("photos")
    if not refs:
        return None
    photos = photos_of(app)
    if photos is None:
        return Refusal(422, "photos", "this intake keeps no photos")
    if not isinstance(refs, list) or not all(isinstance(r, dict) and isinstance(r.get("sha256"), str)
                                             for r in refs):
        return Refusal(422, "photos", 'photos: a list of {"sha256": "<digest from POST /v1/photos>"}')
    digests = [r["sha256"] for r in refs]
    missing = await photos.missing(digests)
    if missing:
        return Refusal(422, "photos", f"unknown photo {missing[0][:16]}…: upload it to /v1/photos first")
    try:
        incident = UUID(str(data.get("id")))
    except ValueError:
        return None  # the model refuses the id itself
    await photos.refer(incident, digests)
    return None


async def read_form(request: web.Request, photos: PhotoIntake | None,
                    photo_field: str = "photo") -> tuple[MultiDict[str], bytes | None]:
    """A form's text fields, and its photo's bytes (None when no file was chosen); a form that is
    not multipart is read as before (``request.post()``, the intake's limit).

    PhotoRefused for a photo past the size bound (or sent where no photo store is set up),
    FormTooLarge for text fields past theirs."""
    if not request.content_type.startswith("multipart/"):
        return MultiDict((k, v) for k, v in (await request.post()).items() if isinstance(v, str)), None
    fields: MultiDict[str] = MultiDict()
    photo: bytes | None = None
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if len(fields) >= MAX_FIELDS:
            raise FormTooLarge("too many fields")
        if part.name == photo_field:
            if photos is None:
                raise PhotoRefused("unsupported_type")
            photo = await photos.read(part) or None  # an empty file input sends an empty part
            continue
        value = bytearray()
        while chunk := await part.read_chunk(4096):
            value += chunk
            if len(value) > MAX_FIELD_BYTES:
                raise FormTooLarge(part.name)
        fields.add(part.name, value.decode(part.get_charset(default="utf-8"), errors="replace"))
    return fields, photo

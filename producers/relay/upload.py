"""The report form's body, with its photo: read as multipart without the intake's body limit.

The intake's ``client_max_size`` bounds a JSON event, not a photo: a multipart report is read
part by part, the text fields bounded (``MAX_FIELD_BYTES`` each, ``MAX_FIELDS`` in all) and the
photo by ``VEILLE_PHOTOS_MAX_BYTES`` (:meth:`PhotoIntake.read`). A form without a photo arrives
URL-encoded, read as before.
"""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from multidict import MultiDict

from veille.photos.intake import PhotoIntake
from veille.photos.sanitise import PhotoRefused

MAX_FIELDS = 50
MAX_FIELD_BYTES = 16 * 1024
PHOTO_FIELD = "photo"


class FormTooLarge(ValueError):
    pass


async def read_report(request: web.Request,
                      photos: PhotoIntake | None) -> tuple[MultiDict[str], bytes | None]:
    """The form's text fields, and the photo's bytes (None when no file was chosen).

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
        if part.name == PHOTO_FIELD:
            if photos is None:
                raise PhotoRefused("unsupported_type")
            data = await photos.read(part)
            photo = data or None  # an empty file input sends an empty part
            continue
        value = bytearray()
        while chunk := await part.read_chunk(4096):
            value += chunk
            if len(value) > MAX_FIELD_BYTES:
                raise FormTooLarge(part.name)
        fields.add(part.name, value.decode(part.get_charset(default="utf-8"), errors="replace"))
    return fields, photo

"""The photos on the HTTP intake: keeping an upload, and serving ``/photos/<token>``.

Every front-end (``/v1/photos``, the relays' form, Open311's ``media``) reads the upload with
:meth:`PhotoIntake.read` (bounded while it arrives: a body past ``max_bytes`` is refused before
it is all read), keeps it with :meth:`PhotoIntake.keep` (sanitised and stored off the event loop)
and records which incident refers to it with :meth:`PhotoIntake.refer`, before the incident is
published. ``GET /photos/<token>`` serves a photo to whoever holds a valid signed URL
(:mod:`veille.photos.links`): 403 forged, 410 expired or past retention. The answer cannot
become a page: ``image/jpeg`` with ``nosniff``, a CSP of ``default-src 'none'``, no referrer,
never cached by a shared cache. The access log leaves the token out
(``producers/access_log.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from aiohttp import BodyPartReader, StreamReader, web
from prometheus_client import Counter

from veille.photos.links import PATH, PhotoLinkRefused, PhotoLinks
from veille.photos.sanitise import CleanPhoto, PhotoRefused, sanitise
from veille.photos.settings import PhotoSettings
from veille.photos.store import DIGEST, PhotoStore, open_store

log = logging.getLogger("veille.photos")
UPLOADS = Counter("veille_intake_photos_total",
                  "Photo uploads, by outcome: kept, duplicate (already stored), or the refusal's code",
                  ["outcome"])
VIEWS = Counter("veille_intake_photo_views_total",
                "Requests of /photos/<token>, by outcome: served, forged, expired, gone", ["outcome"])
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'",
                "Referrer-Policy": "no-referrer", "Cache-Control": "private, no-store",
                "X-Robots-Tag": "noindex"}
GONE = "Cette photo n'est plus conservée : sa durée de conservation est écoulée."
CHUNK = 64 * 1024


class PhotoIntake:
    def __init__(self, settings: PhotoSettings, store: PhotoStore) -> None:
        self.settings = settings
        self.store = store
        self.links = PhotoLinks.from_settings(settings)

    async def read(self, stream: StreamReader | BodyPartReader) -> bytes:
        """The upload's bytes, refused as soon as they pass ``max_bytes``."""
        limit, parts, size = self.settings.max_bytes, [], 0
        while True:
            chunk = await (stream.read_chunk(CHUNK) if isinstance(stream, BodyPartReader)
                           else stream.read(CHUNK))
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                UPLOADS.labels("too_large").inc()
                raise PhotoRefused("too_large", size=f"> {limit / 2**20:g}", limit=f"{limit / 2**20:g}")
            parts.append(chunk)
        return b"".join(parts)

    async def keep(self, data: bytes) -> CleanPhoto:
        """Sanitised and stored (once per digest); PhotoRefused says why not."""
        loop = asyncio.get_running_loop()
        try:
            photo = await loop.run_in_executor(None, sanitise, data, self.settings)
        except PhotoRefused as exc:
            UPLOADS.labels(exc.code).inc()
            raise
        new = await loop.run_in_executor(None, self.store.put, photo.sha256, photo.data)
        UPLOADS.labels("kept" if new else "duplicate").inc()
        return photo

    async def missing(self, digests: Sequence[str]) -> list[str]:
        """The digests the store does not hold (an incident may only refer to kept photos)."""
        loop = asyncio.get_running_loop()
        out = []
        for digest in digests:
            if not DIGEST.match(digest) or \
                    await loop.run_in_executor(None, self.store.stored_at, digest) is None:
                out.append(digest)
        return out

    async def refer(self, incident_id: UUID, digests: Sequence[str]) -> None:
        loop = asyncio.get_running_loop()
        for digest in digests:
            await loop.run_in_executor(None, self.store.refer, incident_id, digest)

    async def serve(self, request: web.Request) -> web.Response:
        try:
            claim = self.links.verify(request.match_info["token"])
        except PhotoLinkRefused as exc:
            VIEWS.labels(exc.reason).inc()
            return web.Response(status=403 if exc.reason == "forged" else 410, text=str(exc),
                                headers=SAFE_HEADERS)
        data = await asyncio.get_running_loop().run_in_executor(None, self.store.get, claim.digest)
        if data is None or hashlib.sha256(data).hexdigest() != claim.digest:
            VIEWS.labels("gone").inc()
            return web.Response(status=410, text=GONE, headers=SAFE_HEADERS)
        VIEWS.labels("served").inc()
        log.info("photo served dispatch=%s photo=%s", claim.dispatch_id, claim.digest[:12])
        return web.Response(body=data, content_type="image/jpeg", headers={
            **SAFE_HEADERS, "Content-Disposition": f'inline; filename="photo-{claim.digest[:12]}.jpg"'})


PHOTOS_KEY = web.AppKey("photos", PhotoIntake)


def install(app: web.Application, settings: PhotoSettings, state_dir: Path,
            store: PhotoStore | None = None) -> PhotoIntake:
    """Keep photos for ``app``'s front-ends (``app[PHOTOS_KEY]``) and serve ``/photos/<token>``."""
    intake = PhotoIntake(settings, store or open_store(settings, state_dir))
    app[PHOTOS_KEY] = intake
    app.router.add_get(PATH + "/{token}", intake.serve, name="photo")
    return intake


def refusal_json(exc: PhotoRefused, field: str = "photo") -> dict[str, object]:
    return {"errors": [{"field": field, "reason": str(exc)}], "code": exc.code}

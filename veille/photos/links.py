"""Signed, expiring photo URLs: who was dispatched an incident sees its photos, nobody else.

``<base_url>/photos/<token>``: the token (itsdangerous' URL-safe timed serializer, its own
salt) carries the photo's digest and the dispatch it was sent with, signed with
``VEILLE_PHOTOS_URL_KEY`` (former keys in ``VEILLE_PHOTOS_URL_PREVIOUS_KEYS`` still accepted).
The deliverer puts such URLs in the webhook body and the e-mail of each dispatch of an
incident with photos; the agencies' desk makes them with :func:`photo_url`. The intake's
``/photos/<token>`` serves the photo while the token is younger than
``VEILLE_PHOTOS_URL_MAX_AGE_HOURS`` and the photo is kept (:mod:`veille.photos.retention`).
A URL is a bearer capability: the page, the shared store and the public tracking page never
get one. The token is signed, not encrypted: a digest and a dispatch id, nothing personal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from veille.photos.settings import PhotoSettings
from veille.photos.store import DIGEST

SALT = "veille.photos.url.v1"
PATH = "/photos"
MESSAGES = {
    "forged": "Ce lien de photo n'est pas valide : il a été modifié ou recopié incomplètement.",
    "expired": "Ce lien de photo a expiré : demandez-le de nouveau à la cellule de veille.",
}


class PhotoLinkRefused(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True)
class PhotoClaim:
    digest: str
    dispatch_id: UUID
    signed_at: datetime


@dataclass(frozen=True)
class PhotoLink:
    """A photo's URL for one dispatch, and until when it works."""

    url: str
    expires_at: datetime
    media_type: str = "image/jpeg"


class PhotoLinks:
    """Makes and checks photo tokens; ``clock`` (seconds since the epoch) is for tests."""

    def __init__(self, keys: Sequence[str], max_age: timedelta,
                 clock: Callable[[], float] = time.time) -> None:
        if not keys or not all(keys):
            raise ValueError("photo URLs need a non-empty key")
        self.max_age = max_age

        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self._keys = list(keys)
        self._serializer = URLSafeTimedSerializer(self._keys, salt=SALT, signer=_Signer)

    @classmethod
    def from_settings(cls, settings: PhotoSettings) -> PhotoLinks:
        return cls(settings.url_keys, settings.url_max_age)

    def token(self, digest: str, dispatch_id: UUID, issued_at: datetime | None = None) -> str:
        """Signed now, or at ``issued_at``: the deliverer signs at the dispatch's routing time,
        so that every attempt of a webhook carries the same bytes (and the URL expires
        ``max_age`` after routing)."""
        if not DIGEST.match(digest):
            raise ValueError("not a photo digest")
        serializer = self._serializer
        if issued_at is not None:
            at = int(issued_at.timestamp())

            class _Fixed(TimestampSigner):
                def get_timestamp(self) -> int:
                    return at

            serializer = URLSafeTimedSerializer(self._keys, salt=SALT, signer=_Fixed)
        return str(serializer.dumps({"p": digest, "d": dispatch_id.hex}))

    def url(self, base_url: str, digest: str, dispatch_id: UUID, issued_at: datetime | None = None) -> str:
        return f"{base_url.rstrip('/')}{PATH}/{self.token(digest, dispatch_id, issued_at)}"

    def for_dispatch(self, base_url: str, digests: Sequence[str], dispatch_id: UUID,
                     routed_at: datetime) -> tuple[PhotoLink, ...]:
        """The links of an incident's photos for one of its dispatches (same on every attempt)."""
        expires = datetime.fromtimestamp(int(routed_at.timestamp()), UTC) + self.max_age
        return tuple(PhotoLink(self.url(base_url, d, dispatch_id, routed_at), expires) for d in digests)

    def verify(self, token: str) -> PhotoClaim:
        try:
            payload, signed_at = self._serializer.loads(
                token, max_age=int(self.max_age.total_seconds()), return_timestamp=True)
        except SignatureExpired:
            raise PhotoLinkRefused("expired") from None
        except BadSignature:
            raise PhotoLinkRefused("forged") from None
        if not isinstance(payload, dict) or not DIGEST.match(str(payload.get("p", ""))):
            raise PhotoLinkRefused("forged")
        try:
            dispatch = UUID(str(payload.get("d")))
        except ValueError:
            raise PhotoLinkRefused("forged") from None
        return PhotoClaim(str(payload["p"]), dispatch, signed_at)


def photo_url(settings: PhotoSettings, digest: str, dispatch_id: UUID) -> str:
    """The signed, expiring URL of a photo for the body of ``dispatch_id`` (the agencies' desk
    calls it for the dispatches it shows). Needs ``VEILLE_PHOTOS_BASE_URL``."""
    if not settings.base_url:
        raise ValueError("VEILLE_PHOTOS_BASE_URL is not set: no photo URL can be made")
    return PhotoLinks.from_settings(settings).url(settings.base_url, digest, dispatch_id)

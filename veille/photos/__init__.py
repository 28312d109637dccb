"""Photos of reports: validated by content, stripped and re-encoded, kept by digest, shown by signed URL.

``settings``: bounds, store, URL key, retention (``VEILLE_PHOTOS_*``); ``sanitise``: type by
content, size and pixel bounds, polyglots refused, EXIF/GPS stripped by re-encoding (Pillow);
``store``: the object store by SHA-256 (a private directory, or an S3-compatible bucket through
boto3); ``links``: the signed, expiring URLs of the dispatched bodies, and :func:`photo_url`
for the agencies' desk; ``intake``: what the intake's front-ends call to keep an upload and
serve ``/photos/<token>``; ``retention``: deletion after the incident closes (``veille photos
purge``).
"""

from __future__ import annotations

from veille.photos.links import PhotoLinkRefused, PhotoLinks, photo_url
from veille.photos.sanitise import CleanPhoto, PhotoRefused, sanitise
from veille.photos.settings import PhotoSettings
from veille.photos.store import LocalStore, PhotoStore, S3Store, open_store

__all__ = ["CleanPhoto", "LocalStore", "PhotoLinkRefused", "PhotoLinks", "PhotoRefused", "PhotoSettings",
           "PhotoStore", "S3Store", "open_store", "photo_url", "sanitise"]

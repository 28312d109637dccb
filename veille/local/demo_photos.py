"""The demo's report with a photo: a phone's photo (EXIF with a GPS position and a serial number)
is stripped and kept as the intake keeps one, a blocked drain in Montveille refers to it, and the
body that receives it (the town hall's webhook) gets a signed URL that the demo then follows.

In the demo the intake's ``/photos/`` is served beside the bodies' systems (``/intake/photos/``
on the same loopback server, :func:`mount`), from the state dir's photo store; the deliverer
learns where from ``VEILLE_PHOTOS_BASE_URL`` (``LocalBodies.env``).
"""

from __future__ import annotations

import io
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import ExifTags, Image, ImageDraw

from veille.config import Settings
from veille.photos.intake import install
from veille.photos.sanitise import sanitise
from veille.photos.settings import PhotoSettings
from veille.photos.store import open_store
from veille.schemas.models import Channel, GeoPoint, Incident, IncidentCategory, PhotoRef, Severity

PREFIX = "/intake"


def camera_photo() -> bytes:
    """A drain under water, as a phone saves it: with where and on what it was taken."""
    image = Image.new("RGB", (1200, 900), (120, 120, 115))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 600, 1200, 900), fill=(60, 90, 140))  # water on the pavement
    draw.rectangle((450, 520, 750, 620), fill=(30, 30, 30))  # the drain's grate
    for x in range(470, 740, 30):
        draw.line((x, 525, x, 615), fill=(90, 90, 90), width=8)
    exif = image.getexif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "Fairphone", "FP5"
    exif[ExifTags.Base.BodySerialNumber] = "FP5-SERIAL-0042"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = "N", (48.0, 9.0, 0.0)
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = "W", (1.0, 42.0, 0.72)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def keep_photo(settings: Settings) -> str:
    """The demo phone's photo, stripped and kept in the state dir's photo store: its digest."""
    photos = PhotoSettings()
    clean = sanitise(camera_photo(), photos)
    open_store(photos, settings.state_dir).put(clean.sha256, clean.data)
    return clean.sha256


def photo_report(settings: Settings) -> Incident:
    """The demo's report with a photo, the photo already kept (stripped) in the state dir."""
    digest = keep_photo(settings)
    store = open_store(PhotoSettings(), settings.state_dir)
    now = datetime.now(UTC)
    incident = Incident(
        id=uuid.uuid4(), municipality="35401", category=IncidentCategory.blocked_drain,
        severity=Severity.moderate, location=GeoPoint(lat=48.15, lon=-1.7002), address="rue des Lavoirs",
        occurred_at=now - timedelta(minutes=30), reported_at=now, channel=Channel.town_hall_desk,
        description="Avaloir bouché rue des Lavoirs : l'eau monte sur le trottoir (photo de l'habitante).",
        photos=[PhotoRef(sha256=digest)])
    store.refer(incident.id, digest)
    return incident


def mount(app: web.Application, state_dir: Path) -> None:
    """The intake's /photos/ under ``PREFIX`` of the demo's loopback server."""
    intake = web.Application()
    install(intake, PhotoSettings(), state_dir)
    app.add_subapp(PREFIX + "/", intake)


def summary(webhook_bodies: list[dict[str, Any]]) -> list[str]:
    """What the body received of the photo, and what its signed URL serves."""
    lines = []
    for body in webhook_bodies:
        for photo in body.get("photos") or []:
            with urllib.request.urlopen(photo["url"], timeout=10) as reply:
                data = reply.read()
                kind = reply.headers.get("Content-Type")
            image = Image.open(io.BytesIO(data))
            lines += [f"  photo of « {body['category_label']} » → {body['agency_id']} (webhook): "
                      f"signed URL valid until {photo['expires_at']}",
                      f"    {photo['url']}",
                      f"    served: {kind}, {len(data)} bytes, {image.size[0]}x{image.size[1]}, "
                      f"{len(image.getexif())} EXIF tags (GPS and serial stripped)"]
    return lines or ["  photo: no delivered dispatch carried one (yet)"]

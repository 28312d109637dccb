"""The relays' form without its script: a multipart POST with a photo (what the browser sends with
enctype="multipart/form-data") publishes the report with the photo's digest and keeps the photo
stripped; a hostile photo is refused next to the field, the report not published."""

from __future__ import annotations

import asyncio
import io
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from photo_helpers import camera_jpeg, gif_html_polyglot
from PIL import Image
from producer_helpers import consume, isolated_settings
from relay_helpers import accounts, form_tokens, log_in, report

from veille.config import Settings
from veille.photos.intake import install
from veille.photos.settings import PhotoSettings
from veille.photos.store import LocalStore
from veille.producers import relay
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.sdk import Publisher
from veille.schemas.models import Incident
from veille.territory import load_territory
from veille.topics import Topics


@pytest.fixture(scope="module")
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "relayphoto")


def _multipart(fields: dict[str, str], photo: bytes, name: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for k, v in fields.items():
        data.add_field(k, v)
    data.add_field("photo", photo, filename=name, content_type="image/jpeg")
    return data


def test_a_multipart_report_with_a_photo_without_the_script(settings: Settings, tmp_path: Path) -> None:
    store, ids = accounts(settings), []
    _, password = store.issue("Accueil", kind="town_hall_desk", municipalities=["35401"], login="accueil-p")
    photos = LocalStore(tmp_path / "photos")
    config = replace(intake_config(settings, KeyStore(settings.state_dir / "no-keys.json")), ack_timeout=10)

    async def main() -> None:
        publisher = Publisher(settings, client_id="test-relay-photo", known_municipalities={"35401"})
        app = make_app(publisher, config)
        install(app, PhotoSettings(), tmp_path, photos)
        relay.register(app, load_territory(), settings, store)
        async with TestClient(TestServer(app)) as client:
            assert (await log_in(client, "accueil-p", password)).status == 303
            csrf, report_id = await form_tokens(client)
            polyglot = _multipart(report(csrf, report_id), gif_html_polyglot(), "a.gif")
            hostile = await client.post("/relais/signalements", data=polyglot)
            page = await hostile.text()
            assert hostile.status == 422 and "Ce fichier contient autre chose qu&#39;une image" in page
            assert 'id="photo-error"' in page
            sent = await client.post("/relais/signalements",
                                     data=_multipart(report(csrf, report_id), camera_jpeg(), "IMG_1.jpg"))
            assert sent.status == 201, await sent.text()
            ids.append(report_id)

    asyncio.run(main())
    topic = Topics(settings.topic_prefix).intake("35401")
    (event,) = [i for i in (Incident.decode(m.value()) for m in consume(settings, [topic], 1))
                if str(i.id) == ids[0]]
    (ref,) = event.photos
    kept = photos.get(ref.sha256)
    assert kept is not None and len(Image.open(io.BytesIO(kept)).getexif()) == 0
    assert photos.photos_of(uuid.UUID(ids[0])) == [ref.sha256]

"""Photos through the intake's front-ends, on the real broker: the JSON API (POST /v1/photos, then
an incident that refers to it) and Open311's ``media`` upload. What is published carries the
photo's digest only; what is stored is stripped; hostile uploads are refused with their code."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from photo_helpers import SVG, camera_jpeg, gif_html_polyglot, jpeg_with_zip
from PIL import Image
from producer_helpers import consume, incident, isolated_settings, jsonable

from veille.config import Settings
from veille.photos.intake import install
from veille.photos.settings import PhotoSettings
from veille.photos.store import LocalStore
from veille.producers import open311
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.open311_requests import RequestBook
from veille.producers.sdk import Publisher
from veille.schemas.models import Incident
from veille.territory import load_territory
from veille.topics import Topics

Client = TestClient[Any, Any]
Scenario = Callable[[Client, str, LocalStore], Awaitable[None]]


@pytest.fixture(scope="module")
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "photos")


def run(settings: Settings, tmp_path: Path, scenario: Scenario, photos: PhotoSettings | None = None) -> None:
    keys = KeyStore(settings.state_dir / f"keys-{uuid.uuid4().hex[:6]}.json")
    _, token = keys.issue("appli Montveille", municipalities=["35401"])
    config = replace(intake_config(settings, keys), ack_timeout=10)
    store = LocalStore(tmp_path / "photos")

    async def main() -> None:
        publisher = Publisher(settings, client_id="test-photos", known_municipalities={"35401"})
        app = make_app(publisher, config)
        install(app, photos or PhotoSettings(), tmp_path, store)
        open311.register(app, load_territory(), RequestBook(settings))
        async with TestClient(TestServer(app)) as client:
            await scenario(client, token, store)

    asyncio.run(main())


def _stripped(data: bytes | None) -> bool:
    assert data is not None
    image = Image.open(io.BytesIO(data))
    return image.format == "JPEG" and len(image.getexif()) == 0 and b"SN-0042-SECRET" not in data


def test_json_api_uploads_a_photo_then_an_incident_refers_to_it(settings: Settings, tmp_path: Path) -> None:
    ids: list[str] = []

    async def scenario(client: Client, token: str, store: LocalStore) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await client.post("/v1/photos", data=camera_jpeg())).status == 401  # a key is needed
        # Declared as a PDF: the content decides.
        reply = await client.post("/v1/photos", data=camera_jpeg(),
                                  headers={**auth, "Content-Type": "application/pdf"})
        assert reply.status == 201, await reply.text()
        kept = await reply.json()
        assert kept["media_type"] == "image/jpeg" and (kept["width"], kept["height"]) == (800, 600)
        again = await (await client.post("/v1/photos", data=camera_jpeg(), headers=auth)).json()
        assert again["sha256"] == kept["sha256"]  # same photo twice: one object
        assert len(list((tmp_path / "photos" / "photos").iterdir())) == 1
        assert _stripped(store.get(kept["sha256"]))
        # Refused, each with its code.
        for data, code in ((jpeg_with_zip(), "polyglot"), (SVG, "markup"), (gif_html_polyglot(), "polyglot"),
                           (b"%PDF-1.7 not a photo", "unsupported_type")):
            reply = await client.post("/v1/photos", data=data, headers=auth)
            body = await reply.json()
            assert reply.status == 422 and body["code"] == code and body["errors"][0]["field"] == "photo"
        # An incident with a photo the store does not hold is refused; with the kept one, published.
        unknown = incident(municipality="35401", photos=[{"sha256": "0" * 64}])
        reply = await client.post("/v1/incidents", data=jsonable(unknown), headers=auth)
        assert reply.status == 422 and (await reply.json())["errors"][0]["field"] == "photos"
        event = incident(municipality="35401", photos=[{"sha256": kept["sha256"]}])
        reply = await client.post("/v1/incidents", data=jsonable(event), headers=auth)
        assert reply.status == 202, await reply.text()
        ids.append(event["id"])
        assert store.photos_of(uuid.UUID(event["id"])) == [kept["sha256"]]  # for the retention

    run(settings, tmp_path, scenario)
    topic = Topics(settings.topic_prefix).intake("35401")
    published = [Incident.decode(m.value()) for m in consume(settings, [topic], 1)]
    (event,) = [i for i in published if str(i.id) == ids[0]]
    assert len(event.photos) == 1 and event.photos[0].media_type == "image/jpeg"
    assert b"Exif" not in event.encode() and len(event.encode()) < 2000  # a digest, never the photo


def test_json_api_refuses_an_oversized_upload(settings: Settings, tmp_path: Path) -> None:
    async def scenario(client: Client, token: str, store: LocalStore) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        reply = await client.post("/v1/photos", data=camera_jpeg(), headers=auth)
        body = await reply.json()
        assert reply.status == 413 and body["code"] == "too_large"
        assert "trop lourde" in body["errors"][0]["reason"]

    run(settings, tmp_path, scenario, PhotoSettings(max_bytes=4_000))


def test_open311_media_upload_becomes_the_incidents_photo(settings: Settings, tmp_path: Path) -> None:
    ids: list[str] = []

    async def scenario(client: Client, token: str, store: LocalStore) -> None:
        def form(media: bytes, name: str = "IMG_0042.jpg") -> aiohttp.FormData:
            data = aiohttp.FormData()
            for k, v in {"api_key": token, "service_code": "blocked_drain", "lat": "48.15", "long": "-1.7002",
                         "description": "Avaloir bouché rue des Lavoirs"}.items():
                data.add_field(k, v)
            data.add_field("media", media, filename=name, content_type="image/jpeg")
            return data

        reply = await client.post("/open311/v2/requests.json", data=form(camera_jpeg()))
        assert reply.status == 201, await reply.text()
        ids.append((await reply.json())[0]["service_request_id"])
        reply = await client.post("/open311/v2/requests.json", data=form(SVG, "photo.jpg"))
        (err,) = await reply.json()
        assert reply.status == 400 and err["description"].startswith("media: markup: ")
        (digest,) = store.photos_of(uuid.UUID(ids[0]))
        assert _stripped(store.get(digest))

    run(settings, tmp_path, scenario)
    topic = Topics(settings.topic_prefix).intake("35401")
    published = {str(i.id): i for i in (Incident.decode(m.value()) for m in consume(settings, [topic], 2))}
    event = published[ids[0]]
    assert event.category.value == "blocked_drain" and len(event.photos) == 1

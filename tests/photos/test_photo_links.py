"""A photo is seen through its signed, expiring URL: served to the dispatched body that holds it,
refused when expired or tampered with, gone after its retention."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from photo_helpers import camera_jpeg

from veille.photos.intake import install
from veille.photos.links import PhotoLinkRefused, PhotoLinks, photo_url
from veille.photos.sanitise import sanitise
from veille.photos.settings import PhotoSettings
from veille.photos.store import LocalStore
from veille.producers.access_log import loggable_path

SETTINGS = PhotoSettings(base_url="https://veille.example.fr/")
Scenario = Callable[[TestClient[Any, Any], str], Awaitable[None]]


def _serve(tmp_path: Path, scenario: Scenario, links: PhotoLinks | None = None) -> None:
    store = LocalStore(tmp_path)
    clean = sanitise(camera_jpeg(), SETTINGS)
    store.put(clean.sha256, clean.data)

    async def main() -> None:
        app = web.Application()
        intake = install(app, SETTINGS, tmp_path, store)
        if links is not None:
            intake.links = links
        async with TestClient(TestServer(app)) as client:
            await scenario(client, clean.sha256)

    asyncio.run(main())


def _path(url: str) -> str:
    return url.removeprefix("https://veille.example.fr")


def test_signed_url_serves_the_photo_to_the_dispatched_body(tmp_path: Path) -> None:
    dispatch = uuid.uuid4()

    async def scenario(client: TestClient[Any, Any], digest: str) -> None:
        url = photo_url(SETTINGS, digest, dispatch)  # what the deliverer and the desk send
        assert url.startswith("https://veille.example.fr/photos/") and digest not in url.split(".")[0]
        reply = await client.get(_path(url))
        assert reply.status == 200 and reply.content_type == "image/jpeg"
        body = await reply.read()
        assert body == LocalStore(tmp_path).get(digest)
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Content-Security-Policy"] == "default-src 'none'"
        assert reply.headers["Cache-Control"] == "private, no-store"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        assert PhotoLinks.from_settings(SETTINGS).verify(url.rsplit("/", 1)[1]).dispatch_id == dispatch

    _serve(tmp_path, scenario)


def test_expired_url_is_refused(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    links = PhotoLinks(SETTINGS.url_keys, SETTINGS.url_max_age, clock=lambda: now[0])

    async def scenario(client: TestClient[Any, Any], digest: str) -> None:
        url = links.url("", digest, uuid.uuid4())
        assert (await client.get(url)).status == 200
        now[0] += SETTINGS.url_max_age.total_seconds() + 1  # a week and a second later
        reply = await client.get(url)
        assert reply.status == 410 and "expiré" in await reply.text()
        assert reply.content_type == "text/plain"

    _serve(tmp_path, scenario, links)


def test_tampered_url_is_refused(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], digest: str) -> None:
        token = PhotoLinks.from_settings(SETTINGS).token(digest, uuid.uuid4())
        head, payload_sig = token[:10], token[10:]
        flipped = head + ("A" if payload_sig[0] != "A" else "B") + payload_sig[1:]
        for bad in (flipped, token[:-3], "x" * 40):
            reply = await client.get(f"/photos/{bad}")
            assert reply.status == 403 and "n'est pas valide" in await reply.text()
        other_key = PhotoLinks(["another-hub-key"], SETTINGS.url_max_age).token(digest, uuid.uuid4())
        assert (await client.get(f"/photos/{other_key}")).status == 403

    _serve(tmp_path, scenario)


def test_photo_past_retention_is_gone(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], digest: str) -> None:
        url = PhotoLinks.from_settings(SETTINGS).url("", digest, uuid.uuid4())
        LocalStore(tmp_path).delete(digest)
        reply = await client.get(url)
        assert reply.status == 410 and "conservée" in await reply.text()

    _serve(tmp_path, scenario)


def test_links_refuse_what_is_not_a_digest_and_need_a_base_url() -> None:
    with pytest.raises(ValueError):
        PhotoLinks.from_settings(SETTINGS).token("../x", uuid.uuid4())
    with pytest.raises(ValueError, match="VEILLE_PHOTOS_BASE_URL"):
        photo_url(PhotoSettings(), "ab" * 32, uuid.uuid4())
    with pytest.raises(PhotoLinkRefused):
        PhotoLinks.from_settings(SETTINGS).verify("")


def test_the_token_is_not_logged() -> None:
    assert loggable_path("/photos/eyJwIjoiYWIi.abc.def") == "/photos/…"

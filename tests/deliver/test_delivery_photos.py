"""A dispatched body sees the incident's photos: their signed URLs are in its webhook body and its
e-mail (real receivers: the webhook endpoint and an SMTP server), and the intake's /photos/ serves
them, stripped, to whoever holds one; an Open311 body gets the first as its ``media_url``."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from deliver_helpers import SECRET, Receiver, dispatch, free_port, incident, serve, settings
from jsonschema import Draft202012Validator
from photo_helpers import camera_jpeg
from PIL import Image

from veille.deliver.config import EmailDelivery, Open311Delivery, WebhookDelivery
from veille.deliver.email import EmailSender
from veille.deliver.open311_client import open311_request
from veille.deliver.view import view, with_photos
from veille.deliver.webhook import SCHEMA_FILE, WebhookSender, encode_body, webhook_body
from veille.local.receivers import Mailbox
from veille.photos.intake import install
from veille.photos.links import PhotoLinks
from veille.photos.sanitise import sanitise
from veille.photos.settings import PhotoSettings
from veille.photos.store import LocalStore
from veille.schemas.models import DeliveryOutcome

SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def test_webhook_and_email_carry_signed_photo_urls_that_serve_the_stripped_photo(
        tmp_path: Path, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    store = LocalStore(tmp_path / "photos")
    clean = sanitise(camera_jpeg(), PhotoSettings())
    store.put(clean.sha256, clean.data)
    d = dispatch(incident(photos=[{"sha256": clean.sha256}]))
    receiver = Receiver()
    whsec = tmp_path / "whsec"
    whsec.write_text(SECRET)

    async def main() -> list[tuple[int, bytes, str]]:
        photo_app = web.Application()
        install(photo_app, PhotoSettings(), tmp_path, store)  # the intake's /photos/
        async with serve(photo_app) as intake:
            photos = PhotoSettings(base_url=intake)
            v = with_photos(view(d), PhotoLinks.from_settings(photos), photos.base_url)
            async with serve(receiver.app()) as hooks, WebhookSender(settings()) as sender:
                hook = WebhookDelivery.model_validate({"url": hooks + "/hook",
                                                       "secret": {"file": str(whsec)}})
                assert (await sender.send(d, hook, dispatch_view=v)).outcome is DeliveryOutcome.delivered
            mail = await EmailSender(settings(smtp_port=smtp_port)).deliver(
                d, EmailDelivery(to=("voirie@montveille.fr",)), dispatch_view=v)
            assert mail.outcome is DeliveryOutcome.delivered
            fetched = []
            async with aiohttp.ClientSession() as http:
                urls = [receiver.received[0]["photos"][0]["url"]]
                urls.append(urls[0][:-4] + ("AAAA" if not urls[0].endswith("AAAA") else "BBBB"))  # tampered
                for url in urls:
                    async with http.get(url) as reply:
                        fetched.append((reply.status, await reply.read(), reply.content_type))
            return fetched

    (ok_status, body, ctype), (tampered_status, _, _) = asyncio.run(main())
    photo = receiver.received[0]["photos"]
    assert len(photo) == 1 and photo[0]["media_type"] == "image/jpeg" and photo[0]["expires_at"].endswith("Z")
    validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not list(validator.iter_errors(receiver.received[0]))
    assert ok_status == 200 and ctype == "image/jpeg" and body == clean.data
    assert len(Image.open(io.BytesIO(body)).getexif()) == 0  # stripped
    assert tampered_status == 403
    ((_, _, msg),) = box.messages
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert photo[0]["url"] in text and "PHOTOS (1, sans leurs métadonnées" in text
    assert f'<a href="{photo[0]["url"]}">Photo 1</a>' in html
    assert clean.sha256 not in text  # the digest itself is not handed out, only a signed URL


def test_every_attempt_carries_the_same_webhook_bytes_with_photos() -> None:
    d = dispatch(incident(photos=[{"sha256": "ab" * 32}]))
    links, base = PhotoLinks.from_settings(PhotoSettings()), "https://veille.example.fr"
    first = encode_body(webhook_body(with_photos(view(d), links, base)))
    assert first == encode_body(webhook_body(with_photos(view(d), links, base)))
    assert b"/photos/" in first


def test_without_a_photo_base_url_no_url_is_made(tmp_path: Path) -> None:
    d = dispatch(incident(photos=[{"sha256": "ab" * 32}]))
    v: Any = with_photos(view(d), PhotoLinks.from_settings(PhotoSettings()), "")
    assert v.photos == ("ab" * 32,) and webhook_body(v)["photos"] == []
    assert webhook_body(view(dispatch()))["photos"] == []  # an incident without photos


def test_an_open311_body_gets_the_first_photo_as_media_url() -> None:
    d = dispatch(incident(photos=[{"sha256": "ab" * 32}, {"sha256": "cd" * 32}]))
    v = with_photos(view(d), PhotoLinks.from_settings(PhotoSettings()), "https://veille.example.fr")
    config = Open311Delivery.model_validate({"base_url": "https://gmao.example.fr/open311/v2/",
                                             "api_key": {"env": "VEILLE_TEST_O311_KEY"},
                                             "service_codes": {"damaged_road": "VOI-02"}})
    request = open311_request(v, config)
    assert request is not None
    assert ("media_url", v.photo_links[0].url) in request.form("key")
    assert open311_request(view(dispatch()), config).media_url is None  # type: ignore[union-attr]

"""Webhook delivery against a real HTTP receiver that verifies Standard Webhooks signatures with
the ``standardwebhooks`` library, as a body's own server would."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from deliver_helpers import SECRET, Receiver, dispatch, incident, serve, settings
from jsonschema import Draft202012Validator

from veille.deliver.config import WebhookDelivery
from veille.deliver.outcome import Attempt
from veille.deliver.settings import DeliverySettings
from veille.deliver.view import view
from veille.deliver.webhook import SCHEMA_FILE, WebhookSender, encode_body, signed_headers, webhook_body
from veille.schemas.models import Alert, DeliveryMethod, DeliveryOutcome, DeliveryReceipt, Dispatch

SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _config(url: str, tmp_path: Path, secret: str = SECRET, **over: Any) -> WebhookDelivery:
    path = tmp_path / "whsec"
    path.write_text(secret + "\n")
    return WebhookDelivery.model_validate({"url": url, "secret": {"file": str(path)}, **over})


def _send(receiver: Receiver, d: Dispatch, tmp_path: Path, s: DeliverySettings | None = None,
          path: str = "/hook", **config: Any) -> Attempt:
    async def main() -> Attempt:
        async with serve(receiver.app()) as base, WebhookSender(s or settings()) as sender:
            return await sender.send(d, _config(base + path, tmp_path, **config))

    return asyncio.run(main())


def test_a_signed_dispatch_is_verified_and_delivered(tmp_path: Path) -> None:
    receiver, d = Receiver(), dispatch()
    attempt = _send(receiver, d, tmp_path)
    assert attempt.outcome is DeliveryOutcome.delivered and attempt.status_code == 204
    assert attempt.method is DeliveryMethod.webhook and attempt.latency_ms >= 0
    (body,), (headers,) = receiver.received, receiver.headers
    assert body["dispatch_id"] == str(d.id) and body["schema"] == "dispatch-webhook.v1"
    assert headers["webhook-id"] == headers["Idempotency-Key"] == str(d.id)
    assert abs(int(headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 30
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["Content-Type"] == "application/json"
    receipt = attempt.receipt(d.id, d.agency_id, attempt=1)
    assert DeliveryReceipt.decode(receipt.encode()) == receipt


def test_the_body_follows_its_published_schema(tmp_path: Path) -> None:
    receiver, d = Receiver(), dispatch()
    _send(receiver, d, tmp_path)
    body = receiver.received[0]
    Draft202012Validator.check_schema(SCHEMA)
    validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not list(validator.iter_errors(body))
    assert set(body) == set(SCHEMA["properties"])  # nothing undocumented, nothing documented missing
    inc = incident()
    assert body["category"] == "damaged_road" and body["category_label"] == "Chaussée dégradée"
    assert body["severity_label"] == "Danger" and body["location"] == {"lat": 48.15, "lon": -1.7002}
    assert body["description"] == inc.description and body["address"] == inc.address
    assert body["reported_at"].endswith("Z") and body["reporter"] is None  # contact not configured
    for name, spec in SCHEMA["properties"].items():  # people read these: French labels
        assert spec.get("title"), name


def test_the_reporter_contact_only_where_the_body_is_configured_for_it(tmp_path: Path) -> None:
    receiver = Receiver()
    _send(receiver, dispatch(), tmp_path, include_reporter_contact=True)
    assert receiver.received[0]["reporter"] == {"name": "Jeanne Martin", "phone": "0611223344",
                                                "email": "jeanne@example.fr"}


def test_alerts_and_undecodable_payloads_still_make_valid_bodies() -> None:
    validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    fixture = Path(__file__).parents[1] / "fixtures" / "alert.json"
    alert = Alert.model_validate({**json.loads(fixture.read_text()), "sent": datetime.now(UTC)})
    for d in (dispatch(alert), dispatch(payload=b"\xc3\x01garbage")):
        body = webhook_body(view(d))
        assert not list(validator.iter_errors(body)), body
    alert_body = webhook_body(view(dispatch(alert)))
    assert alert_body["headline"] == "Orages" and alert_body["area"] == "Montveille"
    assert alert_body["severity_label"] == "Sévère" and alert_body["category_label"] == "Météorologie"


def test_the_same_dispatch_gives_the_same_bytes() -> None:
    d = dispatch()
    assert encode_body(webhook_body(view(d))) == encode_body(webhook_body(view(d)))


def test_a_tampered_body_or_a_wrong_secret_is_refused_by_the_receiver() -> None:
    receiver = Receiver()
    d = dispatch()
    body = encode_body(webhook_body(view(d)))

    async def main() -> list[int]:
        statuses = []
        other = "whsec_" + base64.b64encode(b"another body's secret, 32 bytes").decode()
        tampered = body.replace(b'"severity":"severe"', b'"severity":"minor"')
        assert tampered != body
        async with serve(receiver.app()) as base, aiohttp.ClientSession() as http:
            for data, secret in ((body, SECRET), (tampered, SECRET), (body, other)):
                headers = signed_headers(secret, str(d.id), body, datetime.now(UTC))
                async with http.post(base + "/hook", data=data, headers=headers) as resp:
                    statuses.append(resp.status)
        return statuses

    assert asyncio.run(main()) == [204, 401, 401]
    assert receiver.refused == ["No matching signature found"] * 2


def test_category_urls_take_their_categories(tmp_path: Path) -> None:
    receiver = Receiver()

    async def main() -> None:
        async with serve(receiver.app()) as base, WebhookSender(settings()) as sender:
            config = _config(base + "/hook", tmp_path, category_urls={"damaged_road": base + "/flood"})
            assert (await sender.send(dispatch(), config)).delivered

    asyncio.run(main())
    assert len(receiver.received) == 1


@pytest.mark.parametrize(("status", "outcome"), [
    (200, DeliveryOutcome.delivered), (202, DeliveryOutcome.delivered),
    (410, DeliveryOutcome.disabled), (500, DeliveryOutcome.retry), (503, DeliveryOutcome.retry),
    (429, DeliveryOutcome.retry), (408, DeliveryOutcome.retry),
    (400, DeliveryOutcome.failed), (404, DeliveryOutcome.failed), (301, DeliveryOutcome.failed),
])
def test_answers_map_to_outcomes(tmp_path: Path, status: int, outcome: DeliveryOutcome) -> None:
    attempt = _send(Receiver(status=status), dispatch(), tmp_path)
    assert attempt.outcome is outcome and attempt.status_code == status
    assert attempt.reply is not None and attempt.reply.startswith(f"HTTP {status}")


def test_a_slow_receiver_is_a_retry_after_the_timeout(tmp_path: Path) -> None:
    attempt = _send(Receiver(delay=3.0), dispatch(), tmp_path, settings(http_timeout_seconds=0.5))
    assert attempt.outcome is DeliveryOutcome.retry and attempt.status_code is None
    assert attempt.reply == "no answer within 0.5 s" and 400 <= attempt.latency_ms < 2500


def test_a_receiver_that_is_down_is_a_retry(tmp_path: Path) -> None:
    async def main() -> Attempt:
        async with serve(Receiver().app()) as base:
            pass  # stopped: nothing listens on that port any more
        async with WebhookSender(settings()) as sender:
            return await sender.send(dispatch(), _config(base + "/hook", tmp_path))

    attempt = asyncio.run(main())
    assert attempt.outcome is DeliveryOutcome.retry and attempt.reply and "Connect" in attempt.reply


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "[::1]", "localhost"])
def test_private_and_local_destinations_are_refused_unless_allowed(tmp_path: Path, host: str) -> None:
    receiver = Receiver()

    async def main() -> Attempt:
        async with serve(receiver.app()) as base, WebhookSender(settings(allowed_networks="")) as sender:
            port = base.rsplit(":", 1)[1]
            return await sender.send(dispatch(), _config(f"http://{host}:{port}/hook", tmp_path))

    attempt = asyncio.run(main())
    assert attempt.outcome is DeliveryOutcome.failed and attempt.status_code is None
    assert attempt.reply and "destination refused" in attempt.reply and "(SSRF)" in attempt.reply
    assert receiver.received == []


def test_the_allow_list_reaches_a_local_name(tmp_path: Path) -> None:
    receiver = Receiver()

    async def main() -> Attempt:
        async with serve(receiver.app()) as base, WebhookSender(settings()) as sender:
            port = base.rsplit(":", 1)[1]
            return await sender.send(dispatch(), _config(f"http://localhost:{port}/hook", tmp_path))

    assert asyncio.run(main()).delivered and len(receiver.received) == 1


def test_redirects_are_not_followed(tmp_path: Path) -> None:
    inner = Receiver()

    async def main() -> Attempt:
        async with serve(inner.app()) as target:
            async def moved(request: web.Request) -> web.Response:
                raise web.HTTPPermanentRedirect(target + "/hook")

            app = web.Application()
            app.router.add_post("/hook", moved)
            async with serve(app) as base, WebhookSender(settings()) as sender:
                return await sender.send(dispatch(), _config(base + "/hook", tmp_path))

    attempt = asyncio.run(main())
    assert attempt.outcome is DeliveryOutcome.failed and attempt.status_code == 308
    assert inner.received == []


def test_bad_or_missing_secrets_fail_without_showing_them(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    attempt = _send(receiver, dispatch(), tmp_path, secret="whsec_%%% not base64 %%%")
    assert attempt.outcome is DeliveryOutcome.failed
    assert attempt.reply and "is not a Standard Webhooks secret" in attempt.reply
    assert "%%%" not in attempt.reply

    async def missing() -> Attempt:
        async with WebhookSender(settings()) as sender:
            config = WebhookDelivery.model_validate({"url": "http://127.0.0.1:9/hook",
                                                     "secret": {"env": "VEILLE_TEST_ABSENT_SECRET"}})
            return await sender.send(dispatch(), config)

    attempt = asyncio.run(missing())
    assert attempt.outcome is DeliveryOutcome.failed
    assert attempt.reply == "secret environment variable VEILLE_TEST_ABSENT_SECRET is empty or not set"
    _send(receiver, dispatch(), tmp_path, path="/hook?token=query-secret")
    # What the deliverer logs (the receiver's own access log, in this process too, is not ours).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("veille"))
    assert "webhook dispatch=" in logged
    assert SECRET not in logged and SECRET[6:] not in logged and "query-secret" not in logged
    assert "v1," not in logged  # no signature either

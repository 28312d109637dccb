"""``veille import cap|vigicrues URL`` from a local HTTP server, and every importer's bad input:
a clear reason, exit 2 or a 4xx, a metric, and nothing on Kafka."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cap_helpers import BOMB, EXTERNAL, atom, cap_alert, new_id
from hub_helpers import hub_settings, settings_env
from paths import FIXTURES
from producer_helpers import consume, message_count
from prometheus_client import REGISTRY

from veille.config import Settings, get_settings
from veille.producers.cap_seen import SeenAlerts
from veille.producers.cap_xml import validated
from veille.producers.gate import MAX_BODY_BYTES, intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.sdk import Publisher
from veille.schemas.models import Alert
from veille.topics import Topics

pytestmark = pytest.mark.kafka
CAP_XML = {"Content-Type": "application/cap+xml"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served by a local HTTP server (stopped by the test, not by name)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def veille(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veille.cli", "import", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120)


def test_import_cap_and_vigicrues_from_urls(kafka: Any, tmp_path: Path, served: tuple[Path, str]) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    root, url = served
    ids = [new_id("url"), new_id("url")]
    docs = [cap_alert(i) for i in ids]
    (root / "feed.xml").write_text(atom(*docs, docs[0]))
    (root / "InfoVigiCru.geojson").write_bytes((FIXTURES / "vigicrues" / "InfoVigiCru.geojson").read_bytes())

    done = veille(settings, "cap", f"{url}/feed.xml")
    assert done.returncode == 0 and "2 acknowledged" in done.stdout, done.stderr
    assert "1 alerts already published" in done.stdout  # the entry listed twice
    # The feed polled again: nothing re-published (the router would re-dispatch after 24 h).
    (root / "feed.xml").write_text(atom(*docs))
    again = veille(settings, "cap", f"{url}/feed.xml")
    assert again.returncode == 0 and "2 alerts already published" in again.stdout, again.stderr
    assert "acknowledged" not in again.stdout
    done = veille(settings, "vigicrues", f"{url}/InfoVigiCru.geojson")
    assert done.returncode == 0 and "published 3 Alert; 3 acknowledged" in done.stdout, done.stderr
    missing = veille(settings, "cap", f"{url}/nothing.xml")
    assert missing.returncode == 2 and "404" in missing.stderr

    topic = Topics(settings.topic_prefix).alerts
    got = sorted(Alert.decode(m.value()).identifier for m in consume(settings, [topic], 5))
    assert got[:2] == sorted(ids) and all(g.startswith("vigicrues.") for g in got[2:]) and len(got) == 5
    assert message_count(settings, [topic]) == 5


# Each bad CAP document, the reason the importer gives for it.
CAP_OPEN = "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>"
UNKNOWN_ENUM = cap_alert("urn:veille:bad:1").replace("<severity>Moderate", "<severity>Catastrophic")
BAD_CAP = {
    "malformed": (f"{CAP_OPEN}<identifier>x</alert>", "malformed XML"),
    "unknown enumeration": (UNKNOWN_ENUM, "<severity> 'Catastrophic' is not one of"),
    "unknown msgType": (cap_alert("urn:veille:bad:2", msg_type="Withdraw"),
                        "<msgType> 'Withdraw' is not one of"),
    "entity expansion": (BOMB, "refused XML: DTDForbidden"),
    "external entity": (EXTERNAL, "refused XML"),
    "not CAP": ("<rss version='2.0'><channel><title>x</title></channel></rss>", "expected a CAP 1.2 <alert>"),
    "CAP 1.1": (cap_alert("urn:veille:bad:3").replace(":cap:1.2", ":cap:1.1"), "expected a CAP 1.2 <alert>"),
    "oversized": (CAP_OPEN + " " * (4 * 1024 * 1024) + "</alert>", "is larger than"),
}


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("veille_producer_rejected_total",
                                     {"record_type": "Alert", "reason": reason}) or 0.0


def test_veille_import_cap_refuses_bad_documents(kafka: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from veille.cli import main

    settings = hub_settings(kafka.settings, tmp_path)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()  # in-process: the metric is this process's
    try:
        for name, (document, reason) in BAD_CAP.items():
            path = tmp_path / f"{uuid.uuid4().hex}.xml"
            path.write_text(document)
            before = rejected("cap_xml")
            assert main(["import", "cap", str(path)]) == 2, name
            assert reason in capsys.readouterr().err, name
            assert rejected("cap_xml") == before + 1, name
    finally:
        get_settings.cache_clear()
    assert message_count(settings, [Topics(settings.topic_prefix).alerts]) == 0


def intake_requests(status: int) -> float:
    return REGISTRY.get_sample_value("veille_intake_requests_total",
                                     {"endpoint": "alerts", "status": str(status)}) or 0.0


def test_post_v1_alerts_refuses_bad_cap_with_4xx_and_counts(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    keys = KeyStore(tmp_path / "keys.json")
    _, authority = keys.issue("préfecture", municipalities=["35401"], alerts=True)
    _, town = keys.issue("mairie", municipalities=["35401"], alerts=False)
    config = replace(intake_config(settings, keys), ack_timeout=10)
    oversized = cap_alert("urn:veille:bad:big").replace("<headline>", "<headline>" + "x" * MAX_BODY_BYTES)
    cases = [  # (document, bearer, status, reason)
        *[(doc, authority, 422 if "enum" in n or "msgType" in n else 400, reason)
          for n, (doc, reason) in BAD_CAP.items() if n not in ("oversized", "not CAP", "CAP 1.1")],
        (BAD_CAP["not CAP"][0], authority, 400, "expected a CAP 1.2 <alert>"),
        (oversized, authority, 413, "body larger than"),
        (cap_alert("urn:veille:bad:key"), "not-a-key", 403, "unknown, rotated or revoked API key"),
        (cap_alert("urn:veille:bad:town"), town, 403, "may not publish CAP alerts"),
    ]

    async def main() -> list[tuple[int, str]]:
        out = []
        publisher = Publisher(settings, client_id="test-cap-bad")
        async with TestClient(TestServer(make_app(publisher, config))) as client:
            for document, token, _, _ in cases:
                resp = await client.post("/v1/alerts", data=document.encode(),
                                         headers={**CAP_XML, "Authorization": f"Bearer {token}"})
                out.append((resp.status, await resp.text()))
        return out

    before = {s: intake_requests(s) for s in (400, 403, 413, 422)}
    answers = asyncio.run(main())
    for (_, _, status, reason), (got, body) in zip(cases, answers, strict=True):
        assert got == status and reason in body, (status, reason, got, body)
    for status in before:
        assert intake_requests(status) - before[status] == sum(c[2] == status for c in cases), status
    assert message_count(settings, [Topics(settings.topic_prefix).alerts]) == 0


def test_seen_alerts_are_forgotten_a_day_after_they_expire(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    (short,) = validated(cap_alert("urn:veille:seen:1", expires=now + timedelta(hours=1)))
    (long,) = validated(cap_alert("urn:veille:seen:2", expires=now + timedelta(days=5)))
    seen = SeenAlerts(tmp_path)
    seen.remember([short, long])
    seen.save()
    assert SeenAlerts(tmp_path).split([short, long]) == ([], [short, long])
    later = SeenAlerts(tmp_path, now=now + timedelta(days=2))
    assert later.split([short, long]) == ([short], [long])

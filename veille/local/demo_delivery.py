"""The demo's bodies without a Kafka consumer: one reached by webhook, one by e-mail, one by Open311.

``LocalBodies`` serves their systems on loopback (``veille/local/receivers.py``: a webhook endpoint
verifying signatures, an SMTP mailbox, a GeoReport v2 endpoint), writes a copy of the territory in
the state dir whose ``delivery:`` sections point at them, and gives the environment the hub's
processes need to use it (``VEILLE_TERRITORY_DIR``, the deliverer's SMTP relay, loopback allowed
as a destination, the secrets). Stopped by the context manager, like the demo's processes.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiosmtpd.controller import Controller

from veille.local import demo_photos
from veille.local.receivers import KEY, SECRET, GeoReport, Mailbox, Receiver

WEBHOOK, EMAIL, OPEN311 = "mairie-35401", "pm-35401", "mairie-35402"


class LocalBodies:
    def __init__(self, territory_dir: Path, state_dir: Path) -> None:
        self.source = territory_dir
        self.target = state_dir / "demo-territory"
        self.state_dir = state_dir
        self.receiver, self.geo, self.mailbox = Receiver(), GeoReport(
            services=frozenset({"VOI-02", "EP-01", "ASS-03"})), Mailbox()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="demo-bodies", daemon=True)
        self._runner: web.AppRunner | None = None
        self._smtp: Controller | None = None
        self.http = ""
        self.smtp_port = 0

    def __enter__(self) -> LocalBodies:
        self._thread.start()
        app = web.Application()
        app.add_subapp("/body/", self.receiver.app())
        app.add_subapp("/gmao/", self.geo.app())
        demo_photos.mount(app, self.state_dir)  # the intake's /photos/, for the photo's signed URL
        self._runner = web.AppRunner(app)
        port = asyncio.run_coroutine_threadsafe(self._serve(self._runner), self.loop).result(10)
        self.http = f"http://127.0.0.1:{port}"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.smtp_port = int(s.getsockname()[1])
        self._smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        self._write_territory()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @staticmethod
    async def _serve(runner: web.AppRunner) -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    def _write_territory(self) -> None:
        if self.target.exists():
            shutil.rmtree(self.target)
        shutil.copytree(self.source, self.target)
        path = self.target / "jurisdiction.yaml"
        jurisdiction = yaml.safe_load(path.read_text())
        delivery: dict[str, Any] = {
            WEBHOOK: {"webhook": {"url": f"{self.http}/body/hook", "secret": {"env": "VEILLE_DEMO_WHSEC"}}},
            EMAIL: {"email": {"to": ["astreinte@police-montveille.demo"]}},
            OPEN311: {"open311": {"base_url": f"{self.http}/gmao/open311/v2",
                                  "api_key": {"env": "VEILLE_DEMO_O311_KEY"},
                                  "service_codes": {"damaged_road": "VOI-02", "broken_streetlight": "EP-01"},
                                  "default_service_code": "ASS-03"}},
        }
        for agency in jurisdiction["agencies"]:
            if agency["id"] in delivery:
                agency["delivery"] = delivery[agency["id"]]
        path.write_text("# A copy of the example territory for the demo: three bodies reached by webhook, "
                        "e-mail and Open311 on loopback.\n"
                        + yaml.safe_dump(jurisdiction, allow_unicode=True, sort_keys=False))

    @property
    def env(self) -> dict[str, str]:
        """For every process of the hub (they read the territory) and the deliverer."""
        return {"VEILLE_TERRITORY_DIR": str(self.target), "VEILLE_DEMO_WHSEC": SECRET,
                "VEILLE_DEMO_O311_KEY": KEY, "VEILLE_DELIVERY_ALLOWED_NETWORKS": "127.0.0.0/8",
                "VEILLE_DELIVERY_SMTP_HOST": "127.0.0.1", "VEILLE_DELIVERY_SMTP_PORT": str(self.smtp_port),
                "VEILLE_DELIVERY_SMTP_SECURITY": "none", "VEILLE_DELIVERY_OPEN311_POLL_SECONDS": "2",
                "VEILLE_PHOTOS_BASE_URL": self.http + demo_photos.PREFIX}

    def summary(self) -> list[str]:
        webhook_ids = {str(p["dispatch_id"]) for p in self.receiver.received}
        mails = [m for _, _, m in self.mailbox.messages]
        return [
            f"  webhook → {WEBHOOK}: {len(webhook_ids)} dispatches, every signature verified by the "
            f"receiver ({len(self.receiver.refused)} refused)",
            f"  e-mail  → {EMAIL}: {len(mails)} messages in the mailbox"
            + (f", e.g. « {mails[0]['Subject']} »" if mails else ""),
            f"  Open311 → {OPEN311}: {len(self.geo.posted)} service requests created on its GeoReport v2 "
            "endpoint",
            *demo_photos.summary(self.receiver.received),
        ]

"""The representatives' page on the intake: ``/pcs/<token>`` (see docs/pcs.md).

The token (:class:`veille.pcs.messages.PageLinks`) names an activation, the representative
whose area it is about (the *owner*) and who was told (the owner, a substitute or the cell).
GET shows what to do and, decrypted for that reader only, the register's persons assigned to
the owner; nothing is recorded on a GET (a mail scanner following the link acknowledges
nothing). POST acknowledges (an ``acknowledged`` event) and records each person's check
(``check`` events: the entry's opaque id and a status, never the name); anything but *vu*
becomes an Incident on the town's intake topic, channel ``neighbourhood_representative``,
routed as usual, carrying the address the responders need, not the name nor the needs.
French HTML without script (CSP ``default-src 'none'``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from confluent_kafka import Producer
from jinja2 import Environment, FileSystemLoader, select_autoescape

from veille.config import Settings
from veille.pcs import events
from veille.pcs.cascade import CELL, NAMESPACE
from veille.pcs.messages import PageClaim, PageLinks
from veille.pcs.plan import PcsPlan
from veille.pcs.register import Reader, Register, RegisterError
from veille.producers.sdk import Publisher
from veille.schemas.models import Channel, Incident, IncidentCategory, Severity
from veille.territory import Territory
from veille.topics import Topics

PREFIX = "/pcs"
HERE = Path(__file__).parent
_ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
           "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff"}
STATUSES = {s.value for s in events.CheckStatus}


class PcsPage:
    def __init__(self, territory: Territory, plan: PcsPlan, settings: Settings, links: PageLinks,
                 register: Register | None, publisher: Publisher) -> None:
        self.territory, self.plan, self.links, self.register = territory, plan, links, register
        self.topics = Topics(settings.topic_prefix)
        self.publisher = publisher
        self.producer = Producer({**settings.kafka_client_config(), "acks": "all",
                                  "enable.idempotence": True})

    def _town(self, claim: PageClaim) -> str | None:
        found = self.plan.find(claim.owner)
        return found[0] if found else None

    def _persons(self, insee: str, claim: PageClaim) -> list[Any]:
        if self.register is None:
            return []
        # The owner's persons: a substitute or the cell taking over sees the owner's, no more.
        return self.register.entries_for(Reader(insee, claim.owner))

    def _render(self, status: int = 200, **ctx: Any) -> web.Response:
        body = _ENV.get_template("page.html").render(css=f"{PREFIX}/pcs.css", **ctx)
        return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)

    def _lead(self, insee: str, claim: PageClaim) -> str:
        town = self.territory.municipalities[insee].name
        if claim.target == CELL:
            return f"Cellule de sauvegarde de {town} : vous prenez le relais du secteur {claim.owner}."
        if claim.target != claim.owner:
            return f"Vous prenez le relais du référent {claim.owner} ({town})."
        return f"Le plan communal de sauvegarde de {town} est déclenché pour votre secteur."

    async def get(self, request: web.Request) -> web.Response:
        claim = self.links.verify(request.match_info["token"])
        insee = self._town(claim) if claim else None
        if claim is None or insee is None:
            return self._render(404, title="Lien non valide", claim=None)
        try:
            persons = self._persons(insee, claim)
        except RegisterError:
            persons = []
        return self._render(title=f"Alerte : votre secteur ({claim.owner})", claim=claim,
                            lead=self._lead(insee, claim), persons=persons)

    async def post(self, request: web.Request) -> web.Response:
        claim = self.links.verify(request.match_info["token"])
        insee = self._town(claim) if claim else None
        if claim is None or insee is None:
            return self._render(404, title="Lien non valide", claim=None)
        form = await request.post()
        try:
            persons = {p.id: p for p in self._persons(insee, claim)}
        except RegisterError:
            persons = {}
        now = int(time.time() * 1000)
        out: list[events.AckEvent | events.CheckEvent] = [events.AckEvent(
            activation=claim.activation, at=now, municipality=insee, owner=claim.owner, by=claim.target)]
        incidents = []
        for pid, person in persons.items():
            status = form.get(f"p-{pid}")
            if not isinstance(status, str) or status not in STATUSES:
                continue
            out.append(events.CheckEvent(activation=claim.activation, at=now, municipality=insee,
                                         owner=claim.owner,
                                         person=pid, status=events.CheckStatus(status)))
            if status != events.CheckStatus.seen.value:
                incidents.append(self._incident(insee, claim, person.address, status))
        await asyncio.get_running_loop().run_in_executor(None, self._publish, out, incidents)
        return self._render(title="Merci", claim=claim, done=True, helped=len(incidents))

    def _incident(self, insee: str, claim: PageClaim, address: str, status: str) -> Incident:
        category = claim.category if claim.category in {c.value for c in IncidentCategory} else "other"
        now = datetime.now(UTC)
        what = "a besoin d'aide" if status == "besoin_aide" else "n'a pas pu être jointe (absente)"
        return Incident(
            # One incident per activation and address: a form sent twice reports once.
            id=uuid.uuid5(NAMESPACE, f"pcs-incident/{claim.activation}/{insee}/{address}"),
            municipality=insee, category=IncidentCategory(category), severity=Severity.severe,
            address=address, occurred_at=now, reported_at=now,
            channel=Channel.neighbourhood_representative,
            description=f"Plan communal de sauvegarde : une personne inscrite au registre {what} "
                        f"(secteur {claim.owner}).")

    def _publish(self, out: list[Any], incidents: list[Incident]) -> None:
        for ev in out:
            self.producer.produce(self.topics.pcs_cascade, key=ev.activation.encode(),
                                  value=events.encode(ev))
        if self.producer.flush(30) != 0:
            raise web.HTTPServiceUnavailable(text="réessayez dans un instant")
        for inc in incidents:
            self.publisher.publish(inc, record_type="Incident")
        if incidents and not self.publisher.flush().ok:
            raise web.HTTPServiceUnavailable(text="réessayez dans un instant")


def register(app: web.Application, page: PcsPage) -> None:
    sub = web.Application()
    sub.router.add_get("/pcs.css", _css)
    sub.router.add_get("/{token}", page.get)
    sub.router.add_post("/{token}", page.post)
    app.add_subapp(PREFIX, sub)


async def _css(request: web.Request) -> web.Response:
    return web.Response(text=(HERE / "pcs.css").read_text(), content_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})


__all__ = ["PcsPage", "register"]

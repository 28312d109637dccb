"""The desk's manual activation of a town's PCS chain: ``/agence/pcs`` (issue 27).

A *chef* of a body that is the safeguard cell of a town in ``pcs.yaml`` sees a small form
(which town, and why) and activates the chain of that whole town: an ``activation`` event on
``<prefix>.pcs.cascade`` (:func:`veille.pcs.activation.manual`), which the PCS worker turns
into notifications exactly as for a CAP alert. The request's id comes from the form (a
re-sent form is the same activation). Agents, and chefs of other bodies, are refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from html import escape
from typing import Any

from aiohttp import web
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from veille.pcs import events
from veille.pcs.activation import manual
from veille.pcs.plan import PcsPlan
from veille.producers.desk import views
from veille.producers.desk.forms import DeskForm, form_meta
from veille.web.identity import Role

Publish = Callable[[events.ActivationEvent], bool]


class ActivationForm(DeskForm):
    request_id = HiddenField(validators=[DataRequired()])
    municipality = SelectField("Commune", validators=[DataRequired()])
    reason = StringField("Motif (affiché aux référents)", validators=[DataRequired(), Length(max=200)])


def _towns(plan: PcsPlan, agency_id: str) -> list[str]:
    return sorted(code for code, mp in plan.municipalities.items() if mp.cell.agency == agency_id)


def _page(form: ActivationForm, names: dict[str, str], message: str = "", status: int = 200) -> web.Response:
    options = "".join(f'<option value="{escape(c)}">{escape(names.get(c, c))}</option>'
                      for c, _ in form.municipality.choices or [])
    note = f'<p role="status">{escape(message)}</p>' if message else ""
    body = f"""<!doctype html><html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Déclencher le PCS · Veille</title>
<link rel="icon" href="data:,"></head><body><main>
<h1>Déclencher la chaîne d'alerte du plan communal de sauvegarde</h1>{note}
<form method="post">
<input type="hidden" name="csrf_token" value="{escape(str(form.csrf_token.current_token))}">
<input type="hidden" name="request_id" value="{escape(form.request_id.data or str(uuid.uuid4()))}">
<p><label for="municipality">Commune</label>
<select id="municipality" name="municipality">{options}</select></p>
<p><label for="reason">Motif (affiché aux référents)</label>
<input id="reason" name="reason" maxlength="200" required></p>
<p><button type="submit">Prévenir tous les référents de la commune</button></p>
</form></main></body></html>"""
    return web.Response(text=body, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def pcs_routes(plan: PcsPlan, publish: Publish) -> Callable[[web.Application], None]:
    """The desk's extra routes (``desk.register(extra_routes=...)``)."""

    async def handle(request: web.Request) -> web.Response:
        identity, session = await views.current(request)
        if identity is None:
            raise web.HTTPSeeOther(f"{request.app.router['desk-login'].url_for()}")
        towns = _towns(plan, identity.agency_id)
        if identity.role != Role.chef or not towns:
            raise web.HTTPForbidden(text="réservé aux chefs de service d'une cellule de sauvegarde")
        meta = form_meta(session, request.app[views.CSRF_KEY], request.app[views.HOURS_KEY])
        territory = request.app[views.TERRITORY_KEY]
        names = {c: territory.municipalities[c].name for c in towns if c in territory.municipalities}
        if request.method == "GET":
            form = ActivationForm(meta=meta)
            form.municipality.choices = [(c, c) for c in towns]
            return _page(form, names)
        form = ActivationForm(await request.post(), meta=meta)
        form.municipality.choices = [(c, c) for c in towns]
        if not form.validate():
            return _page(form, names, "Formulaire refusé : " + "; ".join(
                f"{k}: {', '.join(v)}" for k, v in form.errors.items()), status=400)
        code = str(form.municipality.data)
        act = manual(code, f"desk/{form.request_id.data}", territory, plan)
        if act is None:
            return _page(form, names, "Cette commune n'a pas de chaîne d'alerte.", status=422)
        event = events.ActivationEvent(
            activation=act.id, at=int(time.time() * 1000), municipality=code, source="manual",
            source_id=act.source_id, severity="manual", headline=str(form.reason.data)[:300],
            representatives=act.representatives)
        if not publish(event):
            return _page(form, names, "Le bus n'a pas confirmé : réessayez.", status=503)
        views.log.info("desk: PCS of %s activated by %s (%s), %d representatives", code,
                       identity.subject, identity.agency_id, len(act.representatives))
        done = ActivationForm(meta=meta)
        done.municipality.choices = [(c, c) for c in towns]
        return _page(done, names,
                     f"Chaîne d'alerte déclenchée : {len(act.representatives)} référent(s) prévenu(s).")

    def add(desk: web.Application) -> None:
        desk.router.add_get("/pcs", handle, name="desk-pcs")
        desk.router.add_post("/pcs", handle)

    return add


def kafka_publisher(settings: Any) -> Publish:
    """Publish activations on the cascade topic, waiting for the broker's acknowledgement."""
    from confluent_kafka import Producer

    from veille.topics import Topics

    producer = Producer({**settings.kafka_client_config(), "acks": "all", "enable.idempotence": True})
    topic = Topics(settings.topic_prefix).pcs_cascade

    def publish(event: events.ActivationEvent) -> bool:
        producer.produce(topic, key=event.activation.encode(), value=events.encode(event))
        return producer.flush(15) == 0

    return publish


__all__ = ["ActivationForm", "kafka_publisher", "pcs_routes"]

"""The desk's record of a prevention action: ``/agence/prevention`` (issue 27).

A *chef* of a body that is the safeguard cell of a town in ``pcs.yaml`` (the same rule as
``/agence/pcs``) records an exploratory walk, a neighbourhood meeting or a mediation session:
date, kind, area, participants by kind as counts (never names). A walk may carry up to
:data:`MAX_REPORTS` reports: each is an ordinary Incident (channel
``neighbourhood_representative``) published through the intake's acknowledged path and routed
as usual, and the ``prevention`` event (:func:`veille.pcs.record.prevention_event`, as
``veille pcs action add``) lists their ids, so the store joins them with their status events.

Ids come from the form's request id: a re-sent form is the same action and the same reports
(the store keeps one of each).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time
from html import escape
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from wtforms import DateField, HiddenField, IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from veille.deliver.view import category_label
from veille.pcs.cascade import NAMESPACE
from veille.pcs.events import PreventionEvent
from veille.pcs.plan import PcsPlan
from veille.pcs.prevention import ActionKind, ParticipantKind, PreventionAction
from veille.pcs.record import prevention_event
from veille.producers.desk import views
from veille.producers.desk.forms import DeskForm, form_meta
from veille.schemas.models import Channel, Incident, IncidentCategory, Severity
from veille.web.identity import Role

# The incidents first (acknowledged), then the action naming them; False if the broker did not
# confirm either (the form can be sent again: the same ids).
PublishWalk = Callable[[list[Incident], PreventionEvent], bool]
MAX_REPORTS = 3
KINDS = {ActionKind.exploratory_walk: "Marche exploratoire",
         ActionKind.neighbourhood_meeting: "Réunion de quartier",
         ActionKind.mediation_session: "Séance de médiation"}
PARTICIPANTS = {ParticipantKind.residents: "Habitants", ParticipantKind.representatives: "Référents",
                ParticipantKind.police: "Police", ParticipantKind.landlords: "Bailleurs",
                ParticipantKind.associations: "Associations"}


class PreventionForm(DeskForm):
    request_id = HiddenField(validators=[DataRequired()])
    municipality = SelectField("Commune", validators=[DataRequired()])
    kind = SelectField("Type d'action", choices=[(k.value, v) for k, v in KINDS.items()],
                       validators=[DataRequired()])
    day = DateField("Date", validators=[DataRequired()])
    area = StringField("Lieu ou secteur", validators=[DataRequired(), Length(max=300)])
    residents = IntegerField(validators=[Optional(), NumberRange(0, 100_000)], default=0)
    representatives = IntegerField(validators=[Optional(), NumberRange(0, 100_000)], default=0)
    police = IntegerField(validators=[Optional(), NumberRange(0, 100_000)], default=0)
    landlords = IntegerField(validators=[Optional(), NumberRange(0, 100_000)], default=0)
    associations = IntegerField(validators=[Optional(), NumberRange(0, 100_000)], default=0)


def _report_fields(i: int) -> str:
    options = '<option value="">(aucun)</option>' + "".join(
        f'<option value="{c.value}">{escape(category_label(c.value))}</option>' for c in IncidentCategory)
    return f"""<fieldset><legend>Signalement {i}</legend>
<p><label for="r{i}-category">Catégorie</label>
<select id="r{i}-category" name="r{i}-category">{options}</select></p>
<p><label for="r{i}-address">Adresse</label>
<input id="r{i}-address" name="r{i}-address" maxlength="500"></p>
<p><label for="r{i}-description">Description</label>
<input id="r{i}-description" name="r{i}-description" maxlength="1000"></p></fieldset>"""


def _page(form: PreventionForm, names: dict[str, str], message: str = "", status: int = 200) -> web.Response:
    towns = "".join(f'<option value="{escape(c)}">{escape(names.get(c, c))}</option>'
                    for c, _ in form.municipality.choices or [])
    kinds = "".join(f'<option value="{k.value}">{escape(v)}</option>' for k, v in KINDS.items())
    counts = "".join(f'<p><label for="{k.value}">{v}</label> <input id="{k.value}" name="{k.value}" '
                     f'type="number" min="0" max="100000" value="0" inputmode="numeric"></p>'
                     for k, v in PARTICIPANTS.items())
    reports = "".join(_report_fields(i) for i in range(1, MAX_REPORTS + 1))
    note = f'<p role="status">{escape(message)}</p>' if message else ""
    body = f"""<!doctype html><html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Action de prévention · Veille</title>
<link rel="icon" href="data:,"></head><body><main>
<h1>Enregistrer une action de prévention</h1>{note}
<form method="post">
<input type="hidden" name="csrf_token" value="{escape(str(form.csrf_token.current_token))}">
<input type="hidden" name="request_id" value="{escape(form.request_id.data or str(uuid.uuid4()))}">
<p><label for="municipality">Commune</label>
<select id="municipality" name="municipality">{towns}</select></p>
<p><label for="kind">Type d'action</label> <select id="kind" name="kind">{kinds}</select></p>
<p><label for="day">Date</label> <input id="day" name="day" type="date" required></p>
<p><label for="area">Lieu ou secteur</label> <input id="area" name="area" maxlength="300" required></p>
<fieldset><legend>Participants (des nombres, jamais de noms)</legend>{counts}</fieldset>
<h2>Signalements nés d'une marche exploratoire</h2>
<p>Chacun devient un signalement ordinaire, orienté comme d'habitude.</p>{reports}
<p><button type="submit">Enregistrer l'action</button></p>
</form></main></body></html>"""
    return web.Response(text=body, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def walk_reports(form: Any, action: PreventionAction) -> list[Incident]:
    """The reports the form carries (a category chosen), as Incidents with ids derived from the
    action's; raises ValueError for one that is not valid or for reports on another kind."""
    out: list[Incident] = []
    when = datetime.combine(action.date, time(12), tzinfo=UTC)
    now = datetime.now(UTC)
    for i in range(1, MAX_REPORTS + 1):
        category = str(form.get(f"r{i}-category") or "")
        if not category:
            continue
        if action.kind is not ActionKind.exploratory_walk:
            raise ValueError("seule une marche exploratoire porte des signalements")
        try:
            out.append(Incident(
                id=uuid.uuid5(NAMESPACE, f"walk-report/{action.id}/{i}"), municipality=action.municipality,
                category=IncidentCategory(category), severity=Severity.moderate,
                address=str(form.get(f"r{i}-address") or "")[:500] or None,
                occurred_at=min(when, now), reported_at=now, channel=Channel.neighbourhood_representative,
                description=f"Marche exploratoire ({action.area}) : "
                            f"{str(form.get(f'r{i}-description') or '')[:1000]}"[:1000]))
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"signalement {i} refusé") from exc
    return out


def prevention_routes(plan: PcsPlan, publish: PublishWalk) -> Callable[[web.Application], None]:
    """The desk's extra route (``desk.register(extra_routes=...)``)."""

    async def handle(request: web.Request) -> web.Response:
        identity, session = await views.current(request)
        if identity is None:
            raise web.HTTPSeeOther(f"{request.app.router['desk-login'].url_for()}")
        towns = sorted(code for code, mp in plan.municipalities.items()
                       if mp.cell.agency == identity.agency_id)
        if identity.role != Role.chef or not towns:
            raise web.HTTPForbidden(text="réservé aux chefs de service d'une cellule de sauvegarde")
        meta = form_meta(session, request.app[views.CSRF_KEY], request.app[views.HOURS_KEY])
        territory = request.app[views.TERRITORY_KEY]
        names = {c: territory.municipalities[c].name for c in towns if c in territory.municipalities}
        if request.method == "GET":
            form = PreventionForm(meta=meta)
            form.municipality.choices = [(c, c) for c in towns]
            return _page(form, names)
        data = await request.post()
        form = PreventionForm(data, meta=meta)
        form.municipality.choices = [(c, c) for c in towns]
        if not form.validate():
            return _page(form, names, "Formulaire refusé : " + "; ".join(
                f"{k}: {', '.join(v)}" for k, v in form.errors.items()), status=400)
        try:
            action = PreventionAction(
                id=str(uuid.uuid5(NAMESPACE, f"desk-prevention/{form.request_id.data}")),
                municipality=str(form.municipality.data), kind=ActionKind(form.kind.data), date=form.day.data,
                area=str(form.area.data), participants={k: int(getattr(form, k.value).data or 0)
                                                        for k in ParticipantKind
                                                        if getattr(form, k.value).data})
            reports = walk_reports(data, action)
        except (ValueError, ValidationError) as exc:
            return _page(form, names, f"Formulaire refusé : {exc}"[:300], status=400)
        if not publish(reports, prevention_event(action, [str(r.id) for r in reports])):
            return _page(form, names, "Le bus n'a pas confirmé : réessayez.", status=503)
        views.log.info("desk: prevention action %s (%s) of %s recorded by %s, %d report(s)", action.id,
                       action.kind.value, action.municipality, identity.agency_id, len(reports))
        done = PreventionForm(meta=meta)
        done.municipality.choices = [(c, c) for c in towns]
        return _page(done, names, f"Action enregistrée ({action.total} participant(s), "
                                  f"{len(reports)} signalement(s)).")

    def add(desk: web.Application) -> None:
        desk.router.add_get("/prevention", handle, name="desk-prevention")
        desk.router.add_post("/prevention", handle)

    return add


def kafka_walk_publisher(settings: Any, publisher: Any) -> PublishWalk:
    """Reports through the intake's Publisher (acknowledged), then the action on the cascade topic."""
    from veille.pcs.record import prevention_publisher

    record = prevention_publisher(settings)

    def publish(reports: list[Incident], event: PreventionEvent) -> bool:
        for inc in reports:
            publisher.publish(inc, record_type="Incident")
        if reports and not publisher.flush().ok:
            return False
        return record(event)

    return publish


__all__ = ["MAX_REPORTS", "PreventionForm", "kafka_walk_publisher", "prevention_routes", "walk_reports"]

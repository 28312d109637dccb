"""A case on the desk (docs/grouping.md, "What bodies receive"): its reports, and splitting one out.

    POST /agence/dossiers/scinder     split one report of a case out of it (chef or agent)

A case's dispatch is one row of the inbox ("N signalements liés"); its page lists the reports
folded into it (:meth:`DeskBook.linked`). Splitting publishes a ``CaseSplit`` on the status
topic through the intake's acknowledged path, as the other actions: the router checks the
dispatch id and forwards it; the desk shows the report as a dispatch of its own once the
broker acknowledged it. The report must be an update of a case the session's body holds
(:meth:`DeskBook.update`): anything else is "not found", and nothing is published.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from veille.producers import metrics
from veille.producers.desk.actions import case_split
from veille.producers.desk.forms import SplitForm, text
from veille.producers.desk.pages import render
from veille.producers.desk.views import (
    BOOK_KEY,
    MAIN_APP_KEY,
    SENT_KEY,
    _meta,
    _unauthorised,
    _url,
    _wants_json,
    current,
)
from veille.producers.gate import deliver
from veille.producers.sdk import Rejected
from veille.schemas.models import CaseSplit
from veille.schemas.registry import RegistryUnavailable

log = logging.getLogger("veille.producers.desk")


async def split(request: web.Request) -> web.Response:
    identity, session = await current(request)
    if identity is None:
        return _unauthorised(request)
    form = SplitForm(await request.post(), meta=_meta(request, session))
    if not form.validate():
        errors = form.errors_by_field()
        csrf = "csrf_token" in errors
        metrics.DESK.labels("csrf" if csrf else "invalid").inc()
        return _answer(request, 400 if csrf else 422, errors=errors)
    book, sent = request.app[BOOK_KEY], request.app[SENT_KEY]
    if not book.caught_up.is_set():
        metrics.DESK.labels("not_ready").inc()
        return _answer(request, 503, errors={"form": text("error.broker")})
    update = book.update(identity.agency_id, str(form.dispatch.data))
    if update is None:  # another body's, not an update, split already: nothing is published
        metrics.DESK.labels("not_theirs").inc()
        log.warning("desk: %s of %s named a report to split that is not theirs", identity.subject,
                    identity.agency_id)
        return _answer(request, 404, errors={"dispatch": text("error.not_splittable")})
    action_id = str(form.action_id.data)
    if not sent.done(action_id, update.id):
        data = case_split(identity, update, action_id=action_id, at=sent.first_seen(action_id))
        why = await _publish(request, data)
        metrics.DESK.labels(f"split_{why}" if why else "split").inc()
        if why:
            return _answer(request, 503 if why == "broker" else 422, errors={"form": text(f"error.{why}")})
        sent.mark(action_id, update.id)
        book.acted(CaseSplit.model_validate(data))
        log.info("desk: report %s split out of case %s by %s", update.incident_id, update.case_id,
                 identity.agency_id)
    return _answer(request, 200, done=update.id)


async def _publish(request: web.Request, data: dict[str, Any]) -> str:
    try:
        _, report = await deliver(request.app[MAIN_APP_KEY], data, "CaseSplit")
    except Rejected:
        return "rejected"
    except RegistryUnavailable:
        return "broker"
    return "" if report is not None and report.ok else "broker"


def _answer(request: web.Request, code: int, *, done: str | None = None,
            errors: dict[str, str] | None = None) -> web.Response:
    if _wants_json(request):
        return web.json_response({"done": [done] if done else [], "errors": errors or {},
                                  "message": text("case.split_done") if done else ""}, status=code)
    if code != 200 or done is None:
        return render(request, "refused.html", status=code, errors=errors or {})
    raise web.HTTPSeeOther(f"{_url(request, 'desk-dispatch', id=done)}?fait=scinde")

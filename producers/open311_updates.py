"""mySociety's ``servicerequestupdates`` extension of Open311 GeoReport v2, on the intake.

    GET /open311/v2/servicerequestupdates.{json|xml}?start_date=…&end_date=…[&jurisdiction_id=…]

Every change of a request's overall state between the two times (``end_date`` defaults to now,
``start_date`` to a day before it; at most 90 days), oldest first, for the api_key's
municipalities, so an app relays what its users reported as the hub's residents hear it::

    [{"update_id": "<request id>-3", "service_request_id": "…", "status": "in_progress",
      "updated_datetime": "2026-03-12T14:05:00Z", "description": "Intervention en cours",
      "media_url": "", "external_status_code": "on_site"}]

``status`` is one of mySociety's (open, investigating, in_progress, fixed, duplicate,
no_further_action, internal_referral); ``description`` the standard text of the tracking page,
never a body's free-text note. The same history as ``/suivi/<reference>`` and the notifier's
messages (``veille.notify.changes``), from the intake's read model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from veille.producers.open311 import BOOK_KEY, PREFIX, _fmt, _iso, _jurisdiction, _reader, _time
from veille.producers.open311_catalog import error, render
from veille.web.i18n import page_texts

MAX_UPDATES = 1000
DEFAULT_WINDOW = timedelta(days=1)
MAX_WINDOW = timedelta(days=90)
# A history step (veille.notify.changes.Change, or transmitted) as mySociety's status.
MYSOCIETY_STATUS = {"transmitted": "open", "acknowledged": "investigating", "on_site": "in_progress",
                    "resolved": "fixed", "rerouted": "internal_referral", "closed": "no_further_action",
                    "duplicate": "duplicate", "reopened": "open"}


async def get_updates(request: web.Request) -> web.Response:
    fmt = _fmt(request)
    key, refused = _reader(request)
    if refused is not None or key is None:
        return refused or error(fmt, 403, "api_key is required")
    q = request.query
    jurisdiction, refused = _jurisdiction(request, dict(q))
    if refused is not None:
        return refused
    towns = set(key.municipalities) & ({jurisdiction} if jurisdiction else set(key.municipalities))
    try:
        end = _time(q["end_date"], "end_date") if q.get("end_date") else datetime.now(UTC)
        start = _time(q["start_date"], "start_date") if q.get("start_date") else end - DEFAULT_WINDOW
    except ValueError as exc:
        return error(fmt, 400, str(exc))
    if start > end or end - start > MAX_WINDOW:
        return error(fmt, 400, "start_date must be before end_date, at most 90 days apart")
    texts = page_texts("tracking")
    rows = request.app[BOOK_KEY].updates(municipalities=towns, start=start, end=end, limit=MAX_UPDATES)
    return render(fmt, "service_request_updates", [
        {"update_id": f"{r.id}-{n}", "service_request_id": r.id, "status": MYSOCIETY_STATUS[m.kind],
         "updated_datetime": _iso(m.at), "description": texts.get(f"step.{m.kind}", m.kind), "media_url": "",
         "external_status_code": m.kind}
        for r, n, m in rows if m.kind in MYSOCIETY_STATUS])


def register(app: web.Application) -> None:
    """Add the route to an intake on which ``veille.producers.open311.register`` ran."""
    app.router.add_get(PREFIX + "/servicerequestupdates.{fmt:json|xml}", get_updates)

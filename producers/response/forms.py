"""The response form (WTForms): the answer, the reason of a refusal, CSRF tied to the session.

CSRF is WTForms' ``SessionCSRF`` as on the relays' form: a random secret kept in the
(encrypted, signed) session cookie, and in the form an HMAC of it that expires. The session
holds nothing else: whoever holds the e-mail's link is not logged in, the signed link is
what proves which dispatch and which agency the answer is for.

What the answer publishes (:func:`note`): *pas de notre ressort* carries its reason as a fixed
French label and the optional precision after it, in the StatusUpdate's ``note``. The note
travels where an agency's note travels: the shared status topic, then the router's ``routed``
topic; the sink drops it (``sinks/rows.py``: free-text notes are never stored) and Open311
shows fixed labels only, so the free text never reaches the shared store.
"""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from typing import Any

from wtforms import Form, RadioField, SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from veille.deliver.links import RESPONSE_STATUSES
from veille.schemas.models import IncidentStatus
from veille.web.csrf import SessionCSRFWithMessage
from veille.web.i18n import page_texts

TEXTS = page_texts("response")
REASONS = ("outside_area", "other_body", "private_property", "duplicate", "other")
MAX_DETAIL = 500
CSRF_HOURS = 2.0


def text(key: str, **values: Any) -> str:
    return TEXTS[key].format(**values) if values else TEXTS[key]


class ResponseCSRF(SessionCSRFWithMessage):
    message = text("error.csrf")


def form_meta(session: Any, secret: bytes) -> dict[str, Any]:
    return {"csrf_context": session, "csrf_secret": secret, "csrf_time_limit": timedelta(hours=CSRF_HOURS)}


def _one_of(values: set[str], message: str) -> Any:
    def check(form: Form, field: Any) -> None:
        if field.data not in values:
            raise ValidationError(text(message))
    return check


class AnswerForm(Form):
    class Meta:
        csrf = True
        csrf_class = ResponseCSRF
        csrf_secret: bytes = b""  # set per app, see form_meta()
        csrf_time_limit = timedelta(hours=CSRF_HOURS)

    status = RadioField(text("status"), validate_choice=False,
                        choices=[SelectChoice(s.value, label) for s, label in RESPONSE_STATUSES.items()],
                        validators=[InputRequired(text("error.status")),
                                    _one_of({s.value for s in RESPONSE_STATUSES}, "error.status")])
    reason = SelectField(text("reason"), choices=[SelectChoice("", text("reason_placeholder"))] +
                         [SelectChoice(r, text(f"reason.{r}")) for r in REASONS], validate_choice=False)
    detail = TextAreaField(text("detail"), [Optional(), Length(max=MAX_DETAIL, message=text("error.detail"))])

    def validate_reason(self, field: Any) -> None:
        if self.status.data == IncidentStatus.rejected.value and field.data not in REASONS:
            raise ValidationError(text("error.reason"))

    def answer(self) -> IncidentStatus:
        return IncidentStatus(self.status.data)

    def errors_by_field(self) -> dict[str, str]:
        """The first error of each field (one message next to one field)."""
        return {name: str(messages[0]) for name, messages in self.errors.items() if messages}


def clean(detail: str | None) -> str:
    """One paragraph of printable text: control characters (and bidi overrides) out."""
    kept = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in detail or "")
    return " ".join(kept.split())[:MAX_DETAIL]


def note(status: IncidentStatus, reason: str | None, detail: str | None) -> str | None:
    """The StatusUpdate's note: the reason of a refusal and its precision; None otherwise."""
    if status != IncidentStatus.rejected or reason not in REASONS:
        return None
    precision = clean(detail)
    label = f"{RESPONSE_STATUSES[status]} : {text(f'reason.{reason}')}"
    return f"{label}. {precision}" if precision else label

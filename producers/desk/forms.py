"""The desk's forms (WTForms): login, and an action on one dispatch or a selection.

CSRF is the hub's (``veille/web/csrf.py``): WTForms' ``SessionCSRF``, a secret in the encrypted
session cookie and in each form an HMAC of it that expires with the session, so an action kept
offline for an hour is still accepted when it is finally sent (the page sends its *current*
token). A token is bound to one session: it is worthless in another one, or after logout.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from wtforms import (
    Form,
    HiddenField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from veille.deliver.links import RESPONSE_STATUSES
from veille.schemas.enums import IncidentStatus, RejectionReason
from veille.web.csrf import SessionCSRFWithMessage
from veille.web.i18n import page_texts

TEXTS = page_texts("desk")
# What a desk may answer, in the order the page offers them, named as on the e-mails' response
# page (one list of answers and their words for both).
ACTIONS = tuple(RESPONSE_STATUSES)
MAX_NOTE = 500
MAX_SELECTION = 200


def text(key: str, **values: Any) -> str:
    return TEXTS[key].format(**values) if values else TEXTS[key]


def action_label(status: str) -> str:
    """The answer's words (the response page's), or "" for a status the desk does not send."""
    return next((label for s, label in RESPONSE_STATUSES.items() if s.value == status), "")


class DeskCSRF(SessionCSRFWithMessage):
    message = text("error.csrf")


class DeskForm(Form):
    class Meta:
        csrf = True
        csrf_class = DeskCSRF
        csrf_secret: bytes = b""  # set per app, see form_meta()
        csrf_time_limit = timedelta(hours=12)


def form_meta(session: Any, secret: bytes, hours: float) -> dict[str, Any]:
    return {"csrf_context": session, "csrf_secret": secret, "csrf_time_limit": timedelta(hours=hours)}


class LoginForm(DeskForm):
    login = StringField(text("login"), [DataRequired(text("error.required")), Length(max=63)])
    password = PasswordField(text("password"), [DataRequired(text("error.required")), Length(max=200)])


def _uuid(form: Form, field: Any) -> None:
    try:
        uuid.UUID(str(field.data))
    except ValueError:
        raise ValidationError(text("error.action_id")) from None


def _coordinate(low: float, high: float) -> Any:
    def check(form: Form, field: Any) -> None:
        try:
            value = float(field.data)
        except (TypeError, ValueError):
            raise ValidationError(text("error.place")) from None
        if not low <= value <= high:
            raise ValidationError(text("error.place"))
    return check


class ActionForm(DeskForm):
    # Made by the page: a re-sent action (offline queue, double click) keeps it and is published once.
    action_id = HiddenField(validators=[DataRequired(text("error.action_id")), _uuid])
    dispatch = SelectMultipleField(text("selection"), validate_choice=False,
                                   validators=[InputRequired(text("error.selection"))])
    status = SelectField(text("action"), validate_choice=False,
                         choices=[SelectChoice(s.value, action_label(s.value)) for s in ACTIONS],
                         validators=[InputRequired(text("error.action"))])
    reason = SelectField(text("reason"), validate_choice=False,
                         choices=[SelectChoice("", text("reason_placeholder"))]
                         + [SelectChoice(r.value, text(f"reason.{r.value}")) for r in RejectionReason])
    lat = StringField(text("lat"), [Optional(), _coordinate(-90, 90)])
    lon = StringField(text("lon"), [Optional(), _coordinate(-180, 180)])
    note = TextAreaField(text("note"), [Optional(), Length(max=MAX_NOTE, message=text("error.note"))])

    def validate_status(self, field: Any) -> None:
        if field.data not in {s.value for s in ACTIONS}:
            raise ValidationError(text("error.action"))

    def validate_dispatch(self, field: Any) -> None:
        if not field.data or len(field.data) > MAX_SELECTION:
            raise ValidationError(text("error.selection"))
        for value in field.data:
            try:
                uuid.UUID(str(value))
            except ValueError:
                raise ValidationError(text("error.selection")) from None

    def validate_reason(self, field: Any) -> None:
        reasons = {r.value for r in RejectionReason}
        if self.status.data == IncidentStatus.rejected.value and field.data not in reasons:
            raise ValidationError(text("error.reason"))

    def validate_lon(self, field: Any) -> None:
        if bool(self.lat.data) != bool(field.data):
            raise ValidationError(text("error.place"))

    def corrected(self) -> dict[str, float] | None:
        if self.status.data != IncidentStatus.rejected.value or not (self.lat.data and self.lon.data):
            return None
        return {"lat": float(self.lat.data), "lon": float(self.lon.data)}

    def dispatch_ids(self) -> list[str]:
        return list(dict.fromkeys(str(uuid.UUID(str(v))) for v in self.dispatch.data))

    def errors_by_field(self) -> dict[str, str]:
        return {name: str(messages[0]) for name, messages in self.errors.items() if messages}


class SplitForm(DeskForm):
    """Split one report out of a case (docs/grouping.md): the update's dispatch id, and an id
    made with the page so that a double click publishes one split."""

    action_id = HiddenField(validators=[DataRequired(text("error.action_id")), _uuid])
    dispatch = HiddenField(validators=[DataRequired(text("error.not_splittable")), _uuid])

    def errors_by_field(self) -> dict[str, str]:
        return {name: str(messages[0]) for name, messages in self.errors.items() if messages}

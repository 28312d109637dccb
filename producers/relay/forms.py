"""The relays' forms (WTForms): fields, French error messages and CSRF tied to the session.

CSRF is WTForms' ``SessionCSRF``: a random secret kept in the (encrypted, signed) session
cookie, and in each form an HMAC of it with an expiry. Its time limit is the session's
length, not WTForms' 30 minutes: a report kept offline in the browser for an hour must
still be accepted when it is finally sent (the page then sends its *current* token).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from wtforms import (
    BooleanField,
    DateTimeLocalField,
    FileField,
    Form,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp, ValidationError

from veille.producers.open311_catalog import DEFAULT_SEVERITY, SERVICES, group_of
from veille.schemas.models import HUB_EPOCH, MAX_CLOCK_SKEW, MAX_DESCRIPTION, IncidentCategory, Severity
from veille.web.csrf import SessionCSRFWithMessage
from veille.web.i18n import page_texts

# The territory's civil time: a desk types local hours (README: CSV logs default to it too).
LOCAL_TZ = ZoneInfo("Europe/Paris")
TEXTS = page_texts("relay")
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE = r"^[0-9+ ().-]{6,40}$"
# Form field -> the Incident field it becomes, to put the publisher's errors next to their field.
INCIDENT_FIELD = {"category": "category", "severity": "severity", "description": "description",
                  "occurred_at": "occurred_at", "municipality": "municipality", "address": "address",
                  "location": "place", "reporter.name": "contact_name", "reporter.phone": "contact_phone",
                  "reporter.email": "contact_email", "id": "report_id", "photos": "photo"}


def text(key: str, **values: Any) -> str:
    return TEXTS[key].format(**values) if values else TEXTS[key]


class RelayCSRF(SessionCSRFWithMessage):
    message = text("error.csrf")


class RelayForm(Form):
    class Meta:
        csrf = True
        csrf_class = RelayCSRF
        csrf_secret: bytes = b""  # set per app, see form_meta()
        csrf_time_limit = timedelta(hours=12)


def form_meta(session: Any, secret: bytes, hours: float) -> dict[str, Any]:
    return {"csrf_context": session, "csrf_secret": secret, "csrf_time_limit": timedelta(hours=hours)}


class LoginForm(RelayForm):
    login = StringField(text("login"), [DataRequired(text("error.required")), Length(max=63)])
    password = PasswordField(text("password"), [DataRequired(text("error.required")), Length(max=200)])


def category_choices() -> dict[str, list[tuple[str, str]]]:
    """Grouped as the Open311 services (same names residents see in the apps)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for category in IncidentCategory:
        groups.setdefault(group_of(category), []).append((category.value, SERVICES[category][0]))
    return {g: sorted(items, key=lambda c: c[0] == "other") for g, items in groups.items()}


def category_keywords() -> dict[str, str]:
    """Words residents use, for the search box: name, description and keywords of each category."""
    return {c.value: " ".join(SERVICES[c]).replace(",", " ") for c in IncidentCategory}


def _uuid(form: Form, field: Any) -> None:
    try:
        uuid.UUID(str(field.data))
    except ValueError:
        raise ValidationError(text("error.report_id")) from None


def _sane(form: Form, field: Any) -> None:
    if field.data is None:
        return
    at = field.data.replace(tzinfo=LOCAL_TZ)
    if at > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValidationError(text("error.occurred_future"))
    if at < HUB_EPOCH:
        raise ValidationError(text("error.occurred_old"))


def _one_of(values: set[str], message: str) -> Any:
    def check(form: Form, field: Any) -> None:
        if field.data not in values:
            raise ValidationError(text(message))
    return check


def _coordinate(low: float, high: float) -> Any:
    def check(form: Form, field: Any) -> None:
        try:
            value = float(field.data)
        except (TypeError, ValueError):
            raise ValidationError(text("error.place")) from None
        if not low <= value <= high:
            raise ValidationError(text("error.place"))
    return check


class ReportForm(RelayForm):
    report_id = HiddenField(validators=[DataRequired(text("error.report_id")), _uuid])
    category = SelectField(text("category"), choices=[
        SelectChoice(value, label, optgroup=group) for group, items in category_choices().items()
        for value, label in items], validate_choice=False,
                           validators=[InputRequired(text("error.category")),
                                       _one_of({c.value for c in IncidentCategory}, "error.category")])
    severity = SelectField(text("severity"), default=DEFAULT_SEVERITY.value, validate_choice=False,
                           validators=[InputRequired(text("error.severity")),
                                       _one_of({s.value for s in Severity}, "error.severity")])
    description = TextAreaField(text("description"), [
        DataRequired(text("error.required")), Length(max=MAX_DESCRIPTION, message=text("error.description"))])
    occurred_at = DateTimeLocalField(text("occurred_at"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
                                     validators=[InputRequired(text("error.occurred_at")), _sane])
    # The municipality is checked against the account in the view (403 municipality_mismatch,
    # the intake's rule), not as a closed list here, so a forged one is refused as such.
    municipality = SelectField(text("municipality"), validate_choice=False,
                               validators=[DataRequired(text("error.required"))])
    lat = HiddenField(validators=[Optional(), _coordinate(-90, 90)])
    lon = HiddenField(validators=[Optional(), _coordinate(-180, 180)])
    address = StringField(text("address"), [Optional(), Length(max=500, message=text("error.address"))])
    contact_name = StringField(text("contact_name"),
                               [Optional(), Length(max=200, message=text("error.contact_name"))])
    contact_phone = StringField(text("contact_phone"),
                                [Optional(), Regexp(PHONE, message=text("error.contact_phone"))])
    contact_email = StringField(text("contact_email"),
                                [Optional(), Length(max=254, message=text("error.contact_email")),
                                 Regexp(EMAIL, message=text("error.contact_email"))])
    consent = BooleanField(text("consent"))
    # Read apart from the other fields (producers/relay/upload.py), kept by veille.photos.
    photo = FileField(text("photo"))
    # Hearing back (producers/tracking/consent.py): the resident, or the relay to call them back.
    notify = SelectField(text("notify"), default="", choices=[
        SelectChoice(v, text(f"notify.{v or 'none'}"))
        for v in ("", "resident_email", "resident_sms", "relay_email", "relay_sms")])
    notify_address = StringField(text("notify_address"), [Optional(), Length(max=254)])

    def setup(self, municipalities: Mapping[str, str]) -> ReportForm:
        self.severity.choices = [SelectChoice(s.value, text(f"severity.{s.value}")) for s in Severity]
        self.municipality.choices = [SelectChoice(code, name) for code, name in municipalities.items()]
        return self

    def validate_consent(self, field: Any) -> None:
        if self.has_contact() and not field.data:
            raise ValidationError(text("error.consent"))

    def validate_notify(self, field: Any) -> None:
        choice = field.data or ""
        if choice.startswith("resident_"):
            source = self.contact_email if choice == "resident_email" else self.contact_phone
            if not (source.data or "").strip() or not self.consent.data:
                raise ValidationError(text(f"error.notify_{choice}"))
        elif choice.startswith("relay_") and not (self.notify_address.data or "").strip():
            raise ValidationError(text("error.notify_address"))

    def notify_request(self) -> dict[str, Any] | None:
        """The consent object of the JSON API (``notify``), or None when nobody is to be told."""
        choice = self.notify.data or ""
        if not choice:
            return None
        who, channel = choice.split("_", 1)
        if who == "resident":
            address = self.contact_email.data if channel == "email" else self.contact_phone.data
        else:
            address = self.notify_address.data
        return {"channel": channel, "address": (address or "").strip(), "on_behalf_of_relay": who == "relay"}

    def has_contact(self) -> bool:
        fields = (self.contact_name, self.contact_phone, self.contact_email)
        return any((f.data or "").strip() for f in fields)

    def point(self) -> tuple[float, float] | None:
        if not (self.lat.data and self.lon.data):
            return None
        return float(self.lat.data), float(self.lon.data)

    def errors_by_field(self) -> dict[str, str]:
        """The first error of each field (one message next to one field)."""
        out: dict[str, str] = {}
        for name, messages in self.errors.items():
            if messages:
                key = "place" if name in ("lat", "lon") else name
                out.setdefault(key, str(messages[0]))
        return out

    def incident(self, *, channel: str) -> dict[str, Any]:
        """The Incident this form describes (reported_at is filled in by the intake)."""
        point = self.point()
        contact = {k: v for k, v in (("name", self.contact_name.data), ("phone", self.contact_phone.data),
                                     ("email", self.contact_email.data)) if v and v.strip()}
        occurred = self.occurred_at.data.replace(tzinfo=LOCAL_TZ).astimezone(UTC)
        return {
            "id": str(uuid.UUID(self.report_id.data)), "municipality": self.municipality.data,
            "category": self.category.data, "severity": self.severity.data,
            "location": {"lat": point[0], "lon": point[1]} if point else None,
            "address": (self.address.data or "").strip() or None, "occurred_at": occurred.isoformat(),
            "channel": channel, "reporter": {k: v.strip() for k, v in contact.items()} or None,
            "description": (self.description.data or "").strip(), "attachments": [],
        }


def map_rejected(errors: Sequence[Any]) -> dict[str, str]:
    """The publisher's validation errors, as French messages next to the form's fields."""
    out: dict[str, str] = {}
    for err in errors:
        parts = err.field.split(".")
        top = ".".join(parts[:2]) if parts[0] == "reporter" else parts[0]
        name = INCIDENT_FIELD.get(top, "category")
        out.setdefault(name, TEXTS.get(f"error.{name}", text("error.rejected")))
    return out

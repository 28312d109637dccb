"""CSRF of the hub's forms (the relays' form, the e-mails' response page): WTForms' token bound
to the session, whose every failure says one plain message in the page's language."""

from __future__ import annotations

from typing import Any, ClassVar

from wtforms.csrf.session import SessionCSRF
from wtforms.validators import ValidationError


class SessionCSRFWithMessage(SessionCSRF):
    message: ClassVar[str] = "The page expired: load it again."

    def validate_csrf_token(self, form: Any, field: Any) -> None:
        if "csrf" not in self.session:  # no session secret yet: WTForms would raise KeyError
            raise ValidationError(self.message)
        try:
            super().validate_csrf_token(form, field)
        except ValidationError:
            raise ValidationError(self.message) from None

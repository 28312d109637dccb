"""Who acts on an agency desk: one shape whether they logged in with a local account or an
identity provider (OpenID Connect), so the pages never ask how someone got in.

A session holds the identity as a plain dict (aiohttp-session's encrypted cookie stores
JSON); ``recall`` validates it back, and anything that does not parse is no identity at all.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SESSION_KEY = "identity"


class Role(StrEnum):
    agent = "agent"  # sees, takes and closes the body's dispatches
    chef = "chef"  # also exports them


class Identity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agency_id: str = Field(min_length=1, max_length=100)
    role: Role
    # Stable and unique per person: a local account's id, or "<issuer> <sub>" for OIDC.
    subject: str = Field(min_length=1, max_length=600)
    display_name: str = Field(default="", max_length=200)
    via: Literal["password", "oidc"]
    # Local accounts: the password generation the session was opened with (a rotated or
    # revoked account ends its sessions at the next request).
    generation: str | None = None
    # OIDC: when the provider's session ends (epoch seconds); the desk logs out after it.
    expires_at: int | None = None


def remember(session: MutableMapping[str, Any], identity: Identity) -> None:
    session[SESSION_KEY] = identity.model_dump(mode="json")


def recall(session: MutableMapping[str, Any]) -> Identity | None:
    raw = session.get(SESSION_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        identity = Identity.model_validate(raw)
    except ValidationError:
        return None
    # An identity provider's session ends when it said: no request is authorized after it.
    if identity.expires_at is not None and identity.expires_at <= time.time():
        return None
    return identity


def forget(session: MutableMapping[str, Any]) -> None:
    session.pop(SESSION_KEY, None)


# --------------------------------------------------------------------------- the console
CONSOLE_SESSION_KEY = "console_identity"


class ConsoleIdentity(BaseModel):
    """Who opened the monitoring cells' console with single sign-on (``identity.yaml``'s
    ``console`` rules): no body, a console role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["cell"]
    subject: str = Field(min_length=1, max_length=600)  # "<issuer> <sub>"
    display_name: str = Field(default="", max_length=200)
    expires_at: int


def remember_console(session: MutableMapping[str, Any], identity: ConsoleIdentity) -> None:
    session[CONSOLE_SESSION_KEY] = identity.model_dump(mode="json")


def recall_console(session: MutableMapping[str, Any]) -> ConsoleIdentity | None:
    raw = session.get(CONSOLE_SESSION_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        identity = ConsoleIdentity.model_validate(raw)
    except ValidationError:
        return None
    return identity if identity.expires_at > time.time() else None

"""Who an identity provider's user is on this territory: ``identity.yaml`` beside the territory.

An OpenID Connect provider (ProConnect in production) says who someone is (their e-mail, the
SIRET of their organisation) but not which body of *this* territory they act for, nor as
what. This file says it, as rules tried in order; the first whose conditions all hold gives
the body (an agency id of ``jurisdiction.yaml``) and the role::

    rules:
      - agency: mairie-35401            # the town hall's head of service by name first...
        role: chef
        emails: [dst@montveille.fr]
      - agency: mairie-35401            # ...then everyone of its domain and establishment
        role: agent
        email_domains: [montveille.fr]
        sirets: ["21350401200013"]

An optional ``console:`` list, with the same conditions and ``role: cell``, says who may open
the monitoring cells' console when it accepts single sign-on (``veille.reads.console.sso``).

Within a list any value matches; across ``emails``, ``email_domains``, ``sirets`` and
``organizational_units`` every given one must (a domain shared by several bodies is narrowed
by the SIRET). A rule needs at least one condition. Domains match exactly (``montveille.fr``
does not admit ``mairie.montveille.fr`` nor ``evil-montveille.fr``); an e-mail whose
``email_verified`` claim is false matches nothing. Someone no rule admits is refused.

``veille territory check`` reads the file when it is there: unknown agency ids are errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from veille.territory.model import AGENCY_ID_PATTERN, Issue, Territory, TerritoryError
from veille.web.identity import Role

IDENTITY_FILE = "identity.yaml"
_SIRET = r"^\d{14}$"
_DOMAIN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"


def _lower(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in values)


class ConsoleRole(StrEnum):
    cell = "cell"  # the monitoring cell: the whole console (map, numbers, exports, ops)


class Conditions(BaseModel):
    """Who a rule admits; every condition given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    emails: tuple[str, ...] = ()
    email_domains: tuple[str, ...] = ()
    sirets: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()

    _normalise = field_validator("emails", "email_domains", mode="after")(_lower)

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if not re.match(_DOMAIN, v)]
        if bad:
            raise ValueError(f"not a domain name (write it without @ or *): {', '.join(bad)}")
        return values

    @field_validator("emails")
    @classmethod
    def _emails(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if v.count("@") != 1 or not v.split("@")[0] or "." not in v.split("@")[1]]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(bad)}")
        return values

    @field_validator("sirets")
    @classmethod
    def _sirets(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if not re.match(_SIRET, v)]
        if bad:
            raise ValueError(f"a SIRET is 14 digits (quote it in YAML): {', '.join(bad)}")
        return values

    @model_validator(mode="after")
    def _has_condition(self) -> Conditions:
        if not (self.emails or self.email_domains or self.sirets or self.organizational_units):
            raise ValueError("a rule needs at least one of emails, email_domains, sirets, "
                             "organizational_units (a rule without any would admit everyone)")
        return self

    def admits(self, claims: Claims) -> bool:
        if self.emails and claims.email not in self.emails:
            return False
        if self.email_domains and claims.email_domain not in self.email_domains:
            return False
        if self.sirets and claims.siret not in self.sirets:
            return False
        return not (self.organizational_units and claims.organizational_unit not in self.organizational_units)


class IdentityRule(Conditions):
    """A desk rule: the body and the role of whom it admits."""

    agency: str = Field(pattern=AGENCY_ID_PATTERN)
    role: Role = Role.agent


class ConsoleRule(Conditions):
    """A console rule (``console:``), when the console accepts single sign-on."""

    role: ConsoleRole = ConsoleRole.cell


class IdentityMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[IdentityRule, ...] = ()
    console: tuple[ConsoleRule, ...] = ()

    @model_validator(mode="after")
    def _not_empty(self) -> IdentityMap:
        if not (self.rules or self.console):
            raise ValueError("no rules: give `rules` (the desk) and/or `console`")
        return self


@dataclass(frozen=True)
class Claims:
    """What the rules look at, from an ID token's and the userinfo's claims."""

    email: str | None  # lower case; None when absent or unverified
    siret: str | None
    organizational_unit: str | None

    @property
    def email_domain(self) -> str | None:
        return self.email.rpartition("@")[2] if self.email else None

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> Claims:
        email = claims.get("email")
        verified = claims.get("email_verified", True) is not False
        usable = isinstance(email, str) and email.count("@") == 1 and verified
        siret = claims.get("siret")
        unit = claims.get("organizational_unit")
        return cls(email.strip().lower() if usable and isinstance(email, str) else None,
                   siret.strip() if isinstance(siret, str) else None,
                   unit.strip() if isinstance(unit, str) else None)


@dataclass(frozen=True)
class Grant:
    agency_id: str
    role: Role
    rule: int  # its index in the file, for the log


def grant_for(identity_map: IdentityMap, claims: Mapping[str, Any]) -> Grant | None:
    """The body and role of the first rule admitting these claims; None: refused."""
    seen = Claims.of(claims)
    for i, rule in enumerate(identity_map.rules):
        if rule.admits(seen):
            return Grant(rule.agency, rule.role, i)
    return None


def console_grant(identity_map: IdentityMap, claims: Mapping[str, Any]) -> ConsoleRole | None:
    """The console role of the first ``console`` rule admitting these claims; None: refused."""
    seen = Claims.of(claims)
    return next((rule.role for rule in identity_map.console if rule.admits(seen)), None)


def _format_loc(loc: Sequence[int | str]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")


def parse_identity_map(data: Any, file: Path) -> IdentityMap:
    try:
        return IdentityMap.model_validate(data)
    except ValidationError as exc:
        raise TerritoryError("\n".join(f"{file}: {_format_loc(e['loc'])}: {e['msg']}"
                                       for e in exc.errors())) from None


def read_identity_map(path: Path) -> IdentityMap:
    """Parse ``path`` (TerritoryError naming the file and field when it does not parse)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TerritoryError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TerritoryError(f"{path}: not valid YAML: {exc}") from None
    return parse_identity_map(data or {}, path)


def check_identity_map(identity_map: IdentityMap, territory: Territory) -> list[Issue]:
    """Unknown agencies are errors; a rule that an earlier one makes unreachable, a warning."""
    issues: list[Issue] = []
    for i, rule in enumerate(identity_map.rules):
        if rule.agency not in territory.agencies:
            issues.append(Issue("error", "identity-unknown-agency",
                                f"{IDENTITY_FILE} rules[{i}]: agency {rule.agency!r} is not in "
                                f"the territory's jurisdiction", agencies=(rule.agency,)))
        for j, earlier in enumerate(identity_map.rules[:i]):
            if _covers(earlier, rule):
                issues.append(Issue("warning", "identity-unreachable-rule",
                                    f"{IDENTITY_FILE} rules[{i}] ({rule.agency}, {rule.role}) never "
                                    f"applies: rules[{j}] ({earlier.agency}, {earlier.role}) admits "
                                    f"everyone it would", agencies=(rule.agency,)))
                break
    return issues


def _covers(earlier: IdentityRule, later: IdentityRule) -> bool:
    """Everyone ``later`` admits, ``earlier`` admits too: each condition ``earlier`` sets is
    implied by one of ``later``'s (the same kind, no wider; or addresses all in its domains)."""
    def implied(wide: tuple[str, ...], narrow: tuple[str, ...]) -> bool:
        return not wide or (bool(narrow) and set(narrow) <= set(wide))

    domains_implied = implied(earlier.email_domains, later.email_domains) or bool(
        later.emails and all(e.rpartition("@")[2] in earlier.email_domains for e in later.emails))
    return (domains_implied and implied(earlier.emails, later.emails)
            and implied(earlier.sirets, later.sirets)
            and implied(earlier.organizational_units, later.organizational_units))

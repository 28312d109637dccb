"""Open311 delivery: a dispatch becomes a service request on the body's own GeoReport v2 endpoint.

    POST {base_url}/requests.json        api_key, service_code (the agency's map of our
                                         categories), lat, long, address_string, description,
                                         attribute[veille_dispatch_id], contact if allowed
      -> [{"service_request_id": "...", "service_notice": "..."}]  or  [{"token": "..."}]
    GET  {base_url}/tokens/{token}.json  -> [{"service_request_id": "...", "token": "..."}]
    GET  {base_url}/requests.json?service_request_id=a,b   -> each request's status (open/closed)
    GET  {base_url}/servicerequestupdates.json?start_date=&end_date=   mySociety's extension,
                                         finer statuses (fixed, in_progress, duplicate...), if offered

GeoReport v2 has no idempotency key: ``attribute[veille_dispatch_id]`` is how the body can
recognise a dispatch sent twice (delivery is at least once). Statuses read back map to ours
(:func:`veille_status`): open -> acknowledged, closed -> resolved, and the extension's finer
ones. Requests go through the SSRF guard; the api_key is never logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from veille.deliver.config import Open311Delivery, SecretUnavailable
from veille.deliver.outcome import Attempt, Stopwatch, bounded, http_outcome
from veille.deliver.settings import DeliverySettings
from veille.deliver.ssrf import DestinationRefused, check_url, guarded_session
from veille.deliver.view import DispatchView, view
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, Dispatch, IncidentStatus

MAX_DESCRIPTION = 4000
log = logging.getLogger("veille.deliver.open311")

# GeoReport v2 (open, closed) and mySociety's servicerequestupdates statuses, lower case.
STATUS_MAP: dict[str, IncidentStatus] = {
    "open": IncidentStatus.acknowledged,
    "investigating": IncidentStatus.acknowledged,
    "action_scheduled": IncidentStatus.acknowledged,
    "planned": IncidentStatus.acknowledged,
    "in_progress": IncidentStatus.on_site,
    "fixed": IncidentStatus.resolved,
    "closed": IncidentStatus.resolved,
    "duplicate": IncidentStatus.rejected,
    "not_councils_responsibility": IncidentStatus.rejected,
    "no_further_action": IncidentStatus.rejected,
    "unable_to_fix": IncidentStatus.rejected,
    "internal_referral": IncidentStatus.rejected,
}


def veille_status(remote: str) -> IncidentStatus | None:
    """Our status for a remote one (None: unknown, ignore it)."""
    return STATUS_MAP.get(remote.strip().lower().replace(" ", "_"))


class _Remote(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("service_request_id", mode="before", check_fields=False)
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class Created(_Remote):
    service_request_id: str | None = None
    token: str | None = None
    service_notice: str | None = None

    @field_validator("token", mode="before")
    @classmethod
    def _token_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class RequestStatus(_Remote):
    service_request_id: str
    status: str
    status_notes: str | None = None
    updated_datetime: datetime | None = None

    @property
    def veille_status(self) -> IncidentStatus | None:
        return veille_status(self.status)


class RequestUpdate(_Remote):
    update_id: str
    service_request_id: str
    status: str
    updated_datetime: datetime
    description: str | None = None

    @field_validator("update_id", mode="before")
    @classmethod
    def _update_id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @property
    def veille_status(self) -> IncidentStatus | None:
        return veille_status(self.status)


class Open311Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    service_code: str = Field(min_length=1)
    dispatch_id: str
    description: str = Field(max_length=MAX_DESCRIPTION)
    lat: float | None = None
    long: float | None = None
    address_string: str | None = None
    jurisdiction_id: str | None = None
    first_name: str | None = None
    email: str | None = None
    phone: str | None = None
    media_url: str | None = None  # the first photo's signed URL (GeoReport v2 has one media_url)

    def form(self, api_key: str) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = [("api_key", api_key), ("service_code", self.service_code)]
        for name in ("jurisdiction_id", "lat", "long", "address_string", "first_name", "email", "phone",
                     "media_url"):
            value = getattr(self, name)
            if value is not None:
                fields.append((name, f"{value:.7f}" if isinstance(value, float) else value))
        fields += [("description", self.description), ("attribute[veille_dispatch_id]", self.dispatch_id)]
        return fields


def open311_request(v: DispatchView, config: Open311Delivery) -> Open311Request | None:
    """The service request for a dispatch; None when the agency maps no service_code to its category."""
    code = config.service_code_for(v.dispatch.category)
    if code is None:
        return None
    text = "\n\n".join(p for p in (v.headline, v.description) if p) or v.category_label
    suffix = f"\n\n[Veille {v.short_id}, gravité : {v.severity_label}]"
    text = text[: MAX_DESCRIPTION - len(suffix)] + suffix
    contact = v.reporter if config.include_reporter_contact else None
    return Open311Request(
        service_code=code, dispatch_id=str(v.dispatch.id), description=text,
        lat=v.location.lat if v.location else None, long=v.location.lon if v.location else None,
        address_string=v.address, jurisdiction_id=config.jurisdiction_id,
        first_name=contact.name if contact else None, email=contact.email if contact else None,
        phone=contact.phone if contact else None,
        media_url=v.photo_links[0].url if v.photo_links else None)


def _errors(text: str) -> str:
    """GeoReport errors ``[{"code", "description"}]`` as one line, else the text itself."""
    try:
        data = json.loads(text)
        return "; ".join(f"{e.get('code')}: {e.get('description')}" for e in data if isinstance(e, dict))
    except (ValueError, TypeError):
        return text


def _answer(status: int, text: str) -> tuple[DeliveryOutcome, str, str | None]:
    """(outcome, reply, reference) of the answer to a POST requests.json."""
    outcome = http_outcome(status)
    if outcome is not DeliveryOutcome.delivered:
        return outcome, f"HTTP {status}: {_errors(text)}", None
    try:
        created = Created.model_validate(json.loads(text)[0])
    except (ValueError, TypeError, IndexError, KeyError, ValidationError):
        return DeliveryOutcome.retry, f"HTTP {status} without a service request: {text[:200]}", None
    if created.service_request_id:
        return outcome, f"service_request_id={created.service_request_id}", created.service_request_id
    if created.token:
        return outcome, f"token={created.token}", f"token:{created.token}"
    return DeliveryOutcome.retry, f"HTTP {status}: names neither service_request_id nor token", None


class Open311Client:
    """One agency's GeoReport v2 endpoint."""

    def __init__(self, config: Open311Delivery, settings: DeliverySettings, *,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.settings = settings
        self._session = session
        self._own_session = session is None

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = guarded_session(self.settings.networks, self.settings.http_timeout_seconds)
        return self._session

    def _url(self, path: str) -> str:
        return f"{self.config.base_url}/{path}"

    async def _get(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        await check_url(self.config.base_url, self.settings.networks, resolve=False)
        query = {"api_key": self.config.api_key.reveal().get_secret_value(), **params}
        if self.config.jurisdiction_id:
            query["jurisdiction_id"] = self.config.jurisdiction_id
        async with self._http().get(self._url(path), params=query, allow_redirects=False) as resp:
            text = await resp.text()
            if resp.status != 200:
                return resp.status, _errors(text)
            try:
                return resp.status, json.loads(text)
            except ValueError:
                raise Open311Error(resp.status, f"not JSON: {text[:200]}") from None

    async def deliver(self, dispatch: Dispatch, *, dispatch_view: DispatchView | None = None) -> Attempt:
        """POST the dispatch; the Attempt's ``reference`` is the service_request_id, or
        ``token:<token>`` when the endpoint gives only a token (see :meth:`resolve_token`)."""
        clock = Stopwatch()

        def result(outcome: DeliveryOutcome, reply: str | None, status: int | None = None,
                   reference: str | None = None) -> Attempt:
            attempt = Attempt(method=DeliveryMethod.open311, outcome=outcome, status_code=status,
                              reply=bounded(reply), latency_ms=clock.ms(), reference=reference)
            log.info("open311 dispatch=%s agency=%s outcome=%s status=%s latency_ms=%d reference=%s",
                     dispatch.id, dispatch.agency_id, outcome.value, status, attempt.latency_ms, reference)
            return attempt

        request = open311_request(dispatch_view or view(dispatch), self.config)
        if request is None:
            return result(DeliveryOutcome.failed, f"no service_code for category {dispatch.category}")
        try:
            await check_url(self.config.base_url, self.settings.networks, resolve=False)
            form = request.form(self.config.api_key.reveal().get_secret_value())
            url = self._url("requests.json")
            async with self._http().post(url, data=form, allow_redirects=False) as resp:
                outcome, reply, reference = _answer(resp.status, await resp.text())
                return result(outcome, reply, resp.status, reference)
        except (DestinationRefused, SecretUnavailable) as exc:
            return result(DeliveryOutcome.failed, str(exc))
        except TimeoutError:
            return result(DeliveryOutcome.retry, f"no answer within {self.settings.http_timeout_seconds:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return result(DeliveryOutcome.retry, f"{type(exc).__name__}: {exc}")

    async def resolve_token(self, token: str) -> str | None:
        """The service_request_id a token became (None: not yet)."""
        status, data = await self._get(f"tokens/{token}.json", {})
        if status != 200 or not data:
            return None
        found = Created.model_validate(data[0])
        return found.service_request_id

    async def statuses(self, ids: Sequence[str]) -> list[RequestStatus]:
        """Current status of these service requests (GET requests.json?service_request_id=...)."""
        if not ids:
            return []
        status, data = await self._get("requests.json", {"service_request_id": ",".join(ids)})
        if status != 200:
            raise Open311Error(status, str(data))
        return [RequestStatus.model_validate(item) for item in data]

    async def updates(self, start: datetime, end: datetime) -> list[RequestUpdate] | None:
        """mySociety's servicerequestupdates between two times; None when the endpoint does not
        offer the extension (404, 501) or it is not enabled in the agency's configuration."""
        if not self.config.request_updates:
            return None
        params = {"start_date": _iso(start), "end_date": _iso(end)}
        status, data = await self._get("servicerequestupdates.json", params)
        if status in (404, 501):
            return None
        if status != 200:
            raise Open311Error(status, str(data))
        items = data.get("service_request_updates", []) if isinstance(data, dict) else data
        return [RequestUpdate.model_validate(item) for item in items]


class Open311Error(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

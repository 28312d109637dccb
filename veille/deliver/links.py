"""Signed, expiring response links: whoever holds a dispatch's e-mail answers it on the intake.

A link carries a token signed with ``itsdangerous`` (URL-safe timed serializer, HMAC-SHA1 key
derivation and signature by the library, salt per purpose) whose payload is the dispatch id,
the agency and, for the response page to publish a StatusUpdate and say what it answers without
a store, the incident id and a :class:`LinkSummary` (category, severity, municipality, when
reported): :meth:`ResponseLinks.for_dispatch` builds such a link from a Dispatch. The payload is
signed, not encrypted: it holds nothing personal (no description, address or contact).
:meth:`ResponseLinks.verify` refuses, each with a French message for the page:

* ``forged``: not signed by the hub's key (altered, truncated, made up);
* ``expired``: older than ``VEILLE_DELIVERY_LINK_MAX_AGE_HOURS`` (or dated in the future);
* ``other_dispatch``: signed for another dispatch than the one the page answers.

A link works once per status: :class:`UsedLinks` remembers each (dispatch, status) redeemed,
in a private file of the state dir (mode 0600, replaced atomically, a lock across processes),
as long as a link can live. The key rotates: ``VEILLE_DELIVERY_LINK_PREVIOUS_KEYS`` are still
accepted, new links are signed with ``VEILLE_DELIVERY_LINK_KEY``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from veille.deliver.settings import DeliverySettings
from veille.schemas.models import Dispatch, EventType, IncidentStatus
from veille.statedir import write_private

SALT = "veille.deliver.response-link.v1"
USED_FILE = Path("delivery") / "used-response-links.json"
# What the response page offers, in French; "rejected" needs a reason.
RESPONSE_STATUSES: dict[IncidentStatus, str] = {
    IncidentStatus.acknowledged: "Pris en compte",
    IncidentStatus.on_site: "Sur place",
    IncidentStatus.resolved: "Résolu",
    IncidentStatus.rejected: "Pas de notre ressort",
}
MESSAGES = {
    "forged": "Ce lien n'est pas valide : il a été modifié ou recopié incomplètement. "
              "Utilisez le lien complet reçu par courriel.",
    "expired": "Ce lien a expiré. Répondez par votre canal habituel ou demandez un nouveau lien à la "
               "cellule de veille.",
    "other_dispatch": "Ce lien concerne un autre signalement : il ne peut pas servir pour celui-ci.",
    "used": "Cette réponse a déjà été transmise avec ce lien.",
    "bad_status": "Cette réponse n'est pas proposée.",
}


class LinkRefused(ValueError):
    """A link that must not be honoured; ``reason`` is a stable code, the text is French."""

    def __init__(self, reason: str) -> None:
        super().__init__(MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True)
class LinkSummary:
    """What the response page shows of the dispatch (codes: the page words them in French)."""

    category: str | None = None
    severity: str | None = None
    municipality: str | None = None  # INSEE code
    reported_at: datetime | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"c": self.category, "v": self.severity, "m": self.municipality,
                               "t": int(self.reported_at.timestamp()) if self.reported_at else None}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_payload(cls, data: Any) -> LinkSummary | None:
        if not isinstance(data, dict):
            return None

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        at = data.get("t")
        reported = datetime.fromtimestamp(at, UTC) if isinstance(at, int) else None
        return cls(text("c"), text("v"), text("m"), reported)


@dataclass(frozen=True)
class LinkClaim:
    dispatch_id: UUID
    agency_id: str
    issued_at: datetime
    incident_id: UUID | None = None  # links made before it was signed in have none
    summary: LinkSummary | None = None


class ResponseLinks:
    """Makes and checks response links; ``clock`` (seconds since the epoch) is for tests."""

    def __init__(self, keys: Sequence[str], max_age: timedelta,
                 clock: Callable[[], float] = time.time) -> None:
        if not keys or not all(keys):
            raise ValueError("response links need a non-empty key")
        self.max_age = max_age

        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(list(keys), salt=SALT, signer=_Signer)

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> ResponseLinks:
        return cls(settings.link_keys, settings.link_max_age)

    def token(self, dispatch_id: UUID, agency_id: str, incident_id: UUID | None = None,
              summary: LinkSummary | None = None) -> str:
        payload: dict[str, Any] = {"d": dispatch_id.hex, "a": agency_id}
        if incident_id is not None:
            payload["i"] = incident_id.hex
        if summary is not None and summary.payload():
            payload["s"] = summary.payload()
        return str(self._serializer.dumps(payload))

    def url(self, base_url: str, dispatch_id: UUID, agency_id: str, incident_id: UUID | None = None,
            summary: LinkSummary | None = None) -> str:
        """``<base_url>/<dispatch id>/<token>``: the page answers the dispatch in its path."""
        token = self.token(dispatch_id, agency_id, incident_id, summary)
        return f"{base_url.rstrip('/')}/{dispatch_id}/{token}"

    def for_dispatch(self, base_url: str, dispatch: Dispatch) -> str | None:
        """The response link of an incident's dispatch (None for an alert: no status to answer),
        with everything the response page needs: ``VEILLE_DELIVERY_RESPONSE_BASE_URL`` is the
        ``base_url`` of a deployment (the intake's ``/reponse`` as the recipients reach it)."""
        if dispatch.event_type != EventType.incident:
            return None
        incident_id = _uuid(dispatch.event_id)
        if incident_id is None:
            return None
        summary = LinkSummary(dispatch.category, dispatch.severity, dispatch.municipality,
                              dispatch.reported_at)
        return self.url(base_url, dispatch.id, dispatch.agency_id, incident_id, summary)

    def verify(self, token: str, dispatch_id: UUID | str | None = None) -> LinkClaim:
        """The claim of a valid token for ``dispatch_id`` (when given), else LinkRefused."""
        try:
            payload, signed_at = self._serializer.loads(
                token, max_age=int(self.max_age.total_seconds()), return_timestamp=True)
        except SignatureExpired:
            raise LinkRefused("expired") from None
        except BadSignature:
            raise LinkRefused("forged") from None
        claim = _claim(payload, signed_at)
        if dispatch_id is not None and str(claim.dispatch_id) != str(_uuid(dispatch_id)):
            raise LinkRefused("other_dispatch")
        return claim

    def redeem(self, token: str, dispatch_id: UUID | str, status: IncidentStatus,
               used: UsedLinks) -> LinkClaim:
        """Verify, then spend the link for ``status``: a second answer with the same status is
        refused (``used``). Release it with ``used.release`` if publishing the answer fails."""
        if status not in RESPONSE_STATUSES:
            raise LinkRefused("bad_status")
        claim = self.verify(token, dispatch_id)
        if not used.claim(claim.dispatch_id, status):
            raise LinkRefused("used")
        return claim


def _uuid(value: UUID | str) -> UUID | None:
    try:
        return value if isinstance(value, UUID) else UUID(value)
    except ValueError:
        return None


def _claim(payload: Any, signed_at: datetime) -> LinkClaim:
    # Signed by us: a shape we did not write means a bug or a key shared with another purpose.
    if not isinstance(payload, dict) or not isinstance(payload.get("a"), str):
        raise LinkRefused("forged")
    dispatch = _uuid(str(payload.get("d")))
    if dispatch is None:
        raise LinkRefused("forged")
    incident = _uuid(str(payload["i"])) if "i" in payload else None
    if "i" in payload and incident is None:
        raise LinkRefused("forged")
    return LinkClaim(dispatch, payload["a"], signed_at, incident, LinkSummary.from_payload(payload.get("s")))


class UsedLinks:
    """The (dispatch id, status) pairs already answered through a link, kept ``retention``
    (at least the links' lifetime: an older link is refused as expired anyway)."""

    def __init__(self, path: Path, retention: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self.retention = retention
        self.clock = clock
        self._lock = threading.Lock()

    @classmethod
    def in_state_dir(cls, state_dir: Path, settings: DeliverySettings) -> UsedLinks:
        return cls(state_dir / USED_FILE, settings.link_max_age + timedelta(days=1))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        with self._lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield self._read()
            finally:
                os.close(fd)  # releases the flock

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        used = data.get("used", {}) if isinstance(data, dict) else {}
        return {str(k): str(v) for k, v in used.items()}

    def _write(self, used: dict[str, str]) -> None:
        oldest = (self.clock() - self.retention).astimezone(UTC).isoformat()
        kept = {k: v for k, v in used.items() if v >= oldest}  # ISO UTC strings sort by time
        write_private(self.path, json.dumps({"version": 1, "used": kept}, indent=0, sort_keys=True))

    @staticmethod
    def _key(dispatch_id: UUID, status: IncidentStatus) -> str:
        return f"{dispatch_id}:{status.value}"

    def claim(self, dispatch_id: UUID, status: IncidentStatus) -> bool:
        """Record the pair; False if it was already used."""
        with self._locked() as used:
            key = self._key(dispatch_id, status)
            if key in used:
                return False
            used[key] = self.clock().astimezone(UTC).isoformat()
            self._write(used)
            return True

    def release(self, dispatch_id: UUID, status: IncidentStatus) -> None:
        with self._locked() as used:
            if used.pop(self._key(dispatch_id, status), None) is not None:
                self._write(used)

    def used(self, dispatch_id: UUID, status: IncidentStatus) -> bool:
        with self._locked() as used:
            return self._key(dispatch_id, status) in used

    def answered(self, dispatch_id: UUID) -> set[IncidentStatus]:
        """The statuses of ``dispatch_id`` already answered through a link (one read)."""
        with self._locked() as used:
            return {s for s in RESPONSE_STATUSES if self._key(dispatch_id, s) in used}

"""The id of a dispatch: which event went to which agency for which service, provably.

The router derives it for every dispatch it publishes, and again to check that a status
update answers a dispatch that was really made; the simulator, playing the agencies, derives
it to answer its dispatches. It lives beside the routing decision that says which (agency,
service) pairs an event goes to, so that neither needs the router's Kafka stage.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from functools import lru_cache

from veille.schemas.models import EventType, ServiceKind


def dispatch_id(key: bytes, event_type: EventType, event_id: str, agency_id: str,
                service: ServiceKind) -> uuid.UUID:
    """The id of a dispatch: HMAC(key, event, agency, service) shaped as a UUID.

    Deterministic, so every re-delivery carries the same id (agencies deduplicate what
    at-least-once delivery may repeat); keyed, so only the router can derive it: an agency
    quotes it in its status updates to prove it was dispatched the incident (a status update
    in another agency's name, or for an incident never dispatched to it, has no valid id).
    """
    return uuid.UUID(dispatch_ref(key, event_type, event_id, agency_id, service))


def dispatch_ref(key: bytes, event_type: EventType, event_id: str, agency_id: str,
                 service: ServiceKind) -> str:
    """:func:`dispatch_id` as text, built without a UUID object (the router's hot path)."""
    # StrEnums format as their value; .value is a Python-level descriptor, twice per dispatch.
    digest = keyed_hash(key).digest(f"{event_type}:{event_id}:{agency_id}:{service}".encode())
    h = digest[:16].hex()
    # Version 4 and the RFC 4122 variant, what uuid.UUID(version=4) sets: the 13th hex digit is
    # 4, the 17th is 10xx in binary (8, 9, a or b) with the digest's bits 5-4 of byte 8.
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[(digest[8] >> 4) & 3]}{h[17:20]}-{h[20:]}"


_VARIANT = "89ab"


class KeyedHash:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer states computed once: per message
    two ``copy()`` of hashlib states, in C. ``hmac.HMAC.copy()`` and ``digest()`` went through
    Python-level wrappers, 6 µs per dispatch id in the router's profile; the bytes are the same
    (``tests/veille/test_dispatch_ids.py``). Short messages only: hashlib keeps the GIL below
    2 kB, which is what the router wants (see :func:`keyed_mac`)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, message: bytes) -> str:
        return self.digest(message).hex()


@lru_cache(maxsize=16)
def keyed_hash(key: bytes) -> KeyedHash:
    return KeyedHash(key)


@lru_cache(maxsize=16)
def keyed_mac(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 state keyed with ``key``, to ``copy()`` per message, never to update.

    A keyed state copied per id, not hmac.digest(): the one-shot call releases the GIL around
    a 2 µs hash, and in the router (faust's consumer thread beside it) getting the GIL back
    cost ~45 µs per dispatch (profiled during a drain). The router's reporter pseudonyms use
    it for the same reason.
    """
    return hmac.new(key, digestmod=hashlib.sha256)


__all__ = ["KeyedHash", "dispatch_id", "dispatch_ref", "keyed_hash", "keyed_mac"]

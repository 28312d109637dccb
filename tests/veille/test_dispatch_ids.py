"""veille/territory/dispatch.py: the hand-keyed SHA-256 is HMAC-SHA256, byte for byte."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid

import pytest

from veille.schemas.models import EventType, ServiceKind
from veille.territory.dispatch import KeyedHash, dispatch_id, dispatch_ref


@pytest.mark.parametrize("key_len", [0, 1, 16, 32, 63, 64, 65, 200])
def test_keyed_hash_is_hmac_sha256(key_len: int) -> None:
    rng = random.Random(key_len)
    key = rng.randbytes(key_len)
    keyed = KeyedHash(key)
    for n in (0, 1, 55, 56, 64, 100, 3000):
        message = rng.randbytes(n)
        expected = hmac.new(key, message, hashlib.sha256)
        assert keyed.digest(message) == expected.digest()
        assert keyed.hexdigest(message) == expected.hexdigest()


def test_dispatch_ids_are_the_hmac_shaped_as_a_uuid() -> None:
    key = b"a dispatch key"
    for service in ServiceKind:
        event_id = str(uuid.uuid4())
        mac = hmac.new(key, f"incident:{event_id}:mairie-35401:{service.value}".encode(), hashlib.sha256)
        expected = uuid.UUID(bytes=mac.digest()[:16], version=4)
        assert dispatch_ref(key, EventType.incident, event_id, "mairie-35401", service) == str(expected)
        assert dispatch_id(key, EventType.incident, event_id, "mairie-35401", service) == expected

"""The reference a resident gets: a keyed MAC of the incident id, not the id itself.

The incident id is chosen by the publisher (a desk tool may count 1, 2, 3 in UUID clothing) and
travels to every dispatched body; a reference made of it would let anyone who knows or guesses
one id read another's tracking page. ``HMAC-SHA256(VEILLE_NOTIFY_REFERENCE_KEY, incident id)``
truncated to 80 bits, in Crockford's base32 (no I, L, O, U: read over the phone without
confusion), grouped by four: ``7KQ2-M9XD-4RTA-HV3E``. Deterministic, so the intake's read model
indexes every routed incident by its reference without storing a table, as the router derives
dispatch ids (``veille/territory/dispatch.py``). 2^80 references: a page rate-limited per
address cannot be enumerated.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from uuid import UUID

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){3}$")


def reference(key: str, incident_id: UUID | str) -> str:
    ident = UUID(str(incident_id))
    digest = hmac.new(key.encode(), b"veille.reference.v1:" + ident.bytes, hashlib.sha256).digest()
    number = int.from_bytes(digest[:10], "big")  # 80 bits
    chars = "".join(ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(16)))
    return "-".join(chars[i:i + 4] for i in range(0, 16, 4))


def normalise(text: str) -> str | None:
    """A reference as a person may type it (lower case, spaces, O for 0, I/L for 1), or None."""
    cleaned = re.sub(r"[\s-]", "", text.upper()).replace("O", "0").replace("I", "1").replace("L", "1")
    if len(cleaned) != 16:
        return None
    candidate = "-".join(cleaned[i:i + 4] for i in range(0, 16, 4))
    return candidate if PATTERN.match(candidate) else None

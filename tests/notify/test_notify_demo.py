"""`veille demo` on the session broker: one incident reported with consent; the demo prints the
reference, the tracking URL and the messages the resident received (the local SMTP mailbox)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import KafkaFixture

pytestmark = pytest.mark.kafka


def test_demo_prints_what_the_resident_received(kafka: KafkaFixture) -> None:
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "VEILLE_STATE_DIR": str(kafka.settings.state_dir), "VEILLE_TOPIC_PREFIX": prefix,
           "VEILLE_CLICKHOUSE_DATABASE": prefix, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "veille.cli", "demo", "--seconds", "2", "--rate", "20",
                           "--seed", "7"], env=env, capture_output=True, text=True, timeout=400)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    found = re.search(r"and a photo: reference ([0-9A-Z]{4}(?:-[0-9A-Z]{4}){3})\n"
                      r"  tracking page: (http://127\.0\.0\.1:\d+/suivi/\S+) "
                      r"\(résolu while the demo ran\)\n  messages she received \(2\):", out)
    assert found, out[-4000:]
    ref = found.group(1)
    assert found.group(2).endswith(f"/suivi/{ref}")
    assert f"── Votre signalement {ref} : pris en compte" in out
    assert f"── Votre signalement {ref} : résolu" in out
    assert re.search(r"her photo, stripped of its EXIF and GPS, kept as sha256 [0-9a-f]{12}…", out)
    assert "Le service compétent indique que le problème signalé est résolu." in out
    assert "habitante@" not in out.split("messages she received")[1]  # messages hold no address
    print(out[out.index("A resident reported"):])

"""`veille demo` on the session broker reports one incident with a photo: the town hall's webhook
receives its signed URL, and the URL serves the photo stripped (what the demo prints)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import KafkaFixture

pytestmark = pytest.mark.kafka


def test_the_demo_delivers_a_photo_by_signed_url(kafka: KafkaFixture) -> None:
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "VEILLE_STATE_DIR": str(kafka.settings.state_dir), "VEILLE_TOPIC_PREFIX": prefix,
           "VEILLE_CLICKHOUSE_DATABASE": prefix, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "veille.cli", "demo", "--seconds", "2", "--rate", "20",
                           "--seed", "7"], env=env, capture_output=True, text=True, timeout=400)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    lines = out.splitlines()
    photo = "  photo of « Avaloir bouché » → mairie-35401"
    (head,) = [i for i, line in enumerate(lines) if line.startswith(photo)]
    assert "signed URL valid until" in lines[head]
    assert "/intake/photos/" in lines[head + 1]
    served = lines[head + 2]
    assert "served: image/jpeg" in served and "1200x900" in served and "0 EXIF tags" in served, out

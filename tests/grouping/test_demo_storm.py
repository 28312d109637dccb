"""`veille demo` with grouping on prints the storm: its cases, one spanning two municipalities,
and the dispatches the bodies got instead of one per report (veille/local/demo_storm.py)."""

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


def test_the_demo_shows_the_storm_grouped(kafka: KafkaFixture) -> None:
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "VEILLE_STATE_DIR": str(kafka.settings.state_dir), "VEILLE_TOPIC_PREFIX": prefix,
           "VEILLE_CLICKHOUSE_DATABASE": prefix, "PYTHONUNBUFFERED": "1", "VEILLE_GROUPING": "true"}
    done = subprocess.run([sys.executable, "-m", "veille.cli", "demo", "--seconds", "2", "--rate", "20",
                           "--seed", "7"], env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    grouped = re.search(r"grouped: (\d+) into (\d+) cases", out)
    assert grouped, out
    assert 40 <= int(grouped.group(2)) <= 48, out  # 40 spots; a few decided by two cells may split
    across = re.search(r"cases spanning two municipalities: (\d+)", out)
    assert across and int(across.group(1)) >= 1, out
    assert re.search(r"bodies have \d+ dispatches to answer \(cases\) \+ \d+ updates", out), out
    print("\n".join(line for line in out.splitlines() if "case" in line or "Storm" in line))

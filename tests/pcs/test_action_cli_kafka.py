"""`veille pcs action add` on a real broker: the same publish function as the desk's form
(veille/pcs/record.py) puts one ``prevention`` event on the cascade topic; bad counts are
refused with exit code 2 and nothing published."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import hub_settings, settings_env
from pcs_helpers import cascade_events

from veille.pcs import events

pytestmark = pytest.mark.kafka


def test_action_add_publishes_one_prevention_event(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path / "state")
    base = [sys.executable, "-m", "veille.cli", "pcs", "action", "add", "35401", "--kind",
            "neighbourhood_meeting", "--date", "2026-10-02", "--area", "Mairie"]
    env = settings_env(settings)
    bad = subprocess.run([*base, "--residents", "-4"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    ok = subprocess.run([*base, "--residents", "30", "--landlords", "2", "--id", "m-cli"], env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip() == "m-cli", ok.stderr
    [ev] = cascade_events(settings, lambda out: len(out) >= 1, timeout=30)
    assert isinstance(ev, events.PreventionEvent) and ev.report_ids == ()
    assert ev.action.id == "m-cli" and ev.action.total == 32 and ev.action.municipality == "35401"

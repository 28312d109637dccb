"""`veille demo --keep-running` prints the relays' form and a demo login that works."""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path
from typing import Any

from hub_helpers import hub_settings, settings_env
from relay_helpers import log_in_with_printed_lines

from veille.local.demo import relay_form


def test_demo_relay_form_lines_log_in(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    with relay_form(settings, tmp_path / "logs", settings_env(settings)) as lines:
        login = re.search(r"login (\S+)  password (\S+)", lines[1])
        assert login, lines
        with closing(log_in_with_printed_lines("\n".join(lines))) as client:
            assert "Signaler pour un habitant" in client.get("").text
    # A second run issues a new password for the same account (only hashes are kept).
    with relay_form(settings, tmp_path / "logs", settings_env(settings)) as again:
        assert again[1] != lines[1] and login.group(1) in again[1]

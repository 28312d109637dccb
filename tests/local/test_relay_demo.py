"""`veille demo --keep-running` prints the relays' form and a demo login that works."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from hub_helpers import hub_settings, settings_env

from veille.local.demo import relay_form


def test_demo_relay_form_lines_log_in(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    with relay_form(settings, tmp_path / "logs", settings_env(settings)) as lines:
        url = re.search(r"(http://\S+/relais/)", lines[0])
        login = re.search(r"login (\S+)  password (\S+)", lines[1])
        assert url and login, lines
        with httpx.Client(base_url=url.group(1), timeout=30) as client:
            page = client.get("connexion").text
            token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
            assert token
            resp = client.post("connexion", data={"login": login.group(1), "password": login.group(2),
                                                  "csrf_token": token.group(1)})
            assert resp.status_code == 303 and resp.headers["location"] == "/relais/"
            assert "Signaler pour un habitant" in client.get("").text
    # A second run issues a new password for the same account (only hashes are kept).
    with relay_form(settings, tmp_path / "logs", settings_env(settings)) as again:
        assert again[1] != lines[1] and login.group(1) in again[1]

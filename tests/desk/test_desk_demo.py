"""`veille demo --keep-running` prints the agencies' desk and a demo login (a chef) that works."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from desk_helpers import CSRF
from hub_helpers import hub_settings, settings_env

from veille.local.demo import relay_form

pytestmark = pytest.mark.kafka


def test_demo_prints_the_desk_and_a_login_that_works(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    with relay_form(settings, tmp_path / "logs", settings_env(settings)) as lines:
        printed = "\n".join(lines)
        where = re.search(r"Agency desk \((.+)\): (http://127\.0\.0\.1:\d+/agence/)", printed)
        login = re.search(r"login (demo-agence)  password (\S+)", printed)
        assert where and login, printed
        with httpx.Client(base_url=where.group(2), timeout=20) as client:
            token = CSRF.search(client.get("connexion").text)
            assert token
            resp = client.post("connexion", data={"csrf_token": html.unescape(token.group(1)),
                                                  "login": login.group(1), "password": login.group(2)})
            assert resp.status_code == 303 and resp.headers["Location"] == "/agence/"
            page = html.unescape(client.get("").text)
            assert f"Signalements de {where.group(1)}" in page and "Exporter en CSV" in page

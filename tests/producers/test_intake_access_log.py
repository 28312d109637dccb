"""The intake's access log: no response-link token, no address of a link's holder, no query."""

from __future__ import annotations

import logging
import uuid

import pytest

from veille.producers.access_log import AccessLogger, loggable_path


def test_the_access_log_keeps_tokens_addresses_and_queries_out(caplog: pytest.LogCaptureFixture) -> None:
    token = "eyJkIjoiYWJjIn0.aBcDeF.signature"
    assert loggable_path(f"/reponse/{uuid.UUID(int=1)}/{token}") == f"/reponse/{uuid.UUID(int=1)}/…"
    assert loggable_path("/reponse/static/response.css") == "/reponse/static/response.css"
    assert loggable_path("/open311/v2/requests.json") == "/open311/v2/requests.json"

    class Request:
        path, method, remote = f"/reponse/{uuid.UUID(int=1)}/{token}", "GET", "203.0.113.9"

        class version:
            major, minor = 1, 1

    class Response:
        status, body_length = 200, 1234

    logger = logging.getLogger("test.access")
    with caplog.at_level(logging.INFO, logger="test.access"):
        AccessLogger(logger, "").log(Request(), Response(), 0.01)  # type: ignore[arg-type]
        Request.path = "/open311/v2/requests.json"  # its query string (api_key=…) is not in .path
        AccessLogger(logger, "").log(Request(), Response(), 0.01)  # type: ignore[arg-type]
    first, second = caplog.messages
    assert token not in first and "203.0.113.9" not in first and "/reponse/" in first and " 200 " in first
    assert "203.0.113.9" in second and "api_key" not in second

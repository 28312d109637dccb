"""The intake's access log: what aiohttp's default logs, minus what must not be in a log.

aiohttp's default line holds the whole request target and the Referer. Here the query string
is never logged (Open311 clients put their ``api_key`` there), nor the Referer, and under the
response page (``/reponse/``) neither the link's token (it answers for a dispatch) nor the
client's address (the holder of an e-mail is a person): ``/reponse/<dispatch id>/…``; under the
tracking pages (``/suivi/``), neither the reference (it opens a resident's page) nor the client's
address: ``/suivi/…``.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from veille.photos.links import PATH as PHOTOS_PATH
from veille.producers.response import PREFIX as RESPONSE_PREFIX

TRACKING_PREFIX = "/suivi"  # veille.producers.tracking.PREFIX (not imported: it needs the notifier's modules)


def loggable_path(path: str) -> str:
    """``path`` without secrets: ``/reponse/<id>/<token>`` -> ``/reponse/<id>/…``,
    ``/photos/<token>`` -> ``/photos/…`` (a photo's signed URL)."""
    if path.startswith(PHOTOS_PATH + "/"):
        return PHOTOS_PATH + "/…"
    if path.startswith(RESPONSE_PREFIX + "/") and not path.startswith(RESPONSE_PREFIX + "/static/"):
        parts = path.split("/", 3)  # "", "reponse", "<id>", "<token>..."
        return "/".join(parts[:3]) + ("/…" if len(parts) > 3 else "")
    if path.startswith(TRACKING_PREFIX + "/") and not path.startswith(TRACKING_PREFIX + "/static/") \
            and path != TRACKING_PREFIX + "/":
        return TRACKING_PREFIX + "/…"
    return path


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = request.path
        private = path.startswith((RESPONSE_PREFIX + "/", PHOTOS_PATH + "/", TRACKING_PREFIX + "/"))
        self.logger.info('%s "%s %s HTTP/%d.%d" %d %d %.3fs', "-" if private else request.remote or "-",
                         request.method, loggable_path(path), request.version.major, request.version.minor,
                         response.status, response.body_length, time)

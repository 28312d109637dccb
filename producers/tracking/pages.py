"""HTML of the tracking pages: Jinja2 templates, autoescaped, texts from ``locale/fr/tracking.json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from veille.web.i18n import page_texts

_ENV = Environment(loader=PackageLoader("veille.producers.tracking", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
# The reference in the address is a capability: never sent as a Referer, never cached by a
# shared cache, never framed, never indexed. No script at all.
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow",
           "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                      "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"}


def render(request: web.Request, name: str, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> web.Response:
    def static(filename: str) -> str:
        return str(request.app.router["tracking-static"].url_for(filename=filename))

    body = _ENV.get_template(name).render(t=page_texts("tracking"), common=page_texts("common"),
                                          static=static, **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={**HEADERS, **(headers or {})})

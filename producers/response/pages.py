"""HTML of the response page: Jinja2 templates, autoescaped, texts from ``locale/fr/response.json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from veille.web.i18n import page_texts

_ENV = Environment(loader=PackageLoader("veille.producers.response", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
# The page's address is a credential (the signed token): never sent as a Referer, never cached,
# never framed, never indexed. No script at all; no inline style.
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow",
           "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                      "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"}


def render(request: web.Request, name: str, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> web.Response:
    def static(filename: str) -> str:
        return str(request.app.router["response-static"].url_for(filename=filename))

    form = context.get("form")
    csrf = form.csrf_token.current_token if form is not None and hasattr(form, "csrf_token") else ""
    body = _ENV.get_template(name).render(t=page_texts("response"), common=page_texts("common"),
                                          static=static, csrf=csrf, **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={**HEADERS, **(headers or {})})

"""HTML of the desk's pages: Jinja2 templates, autoescaped, texts from ``locale/fr/desk.json``."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from veille.web.i18n import page_texts
from veille.web.oidc import with_provider_form_action

_ENV = Environment(loader=PackageLoader("veille.producers.desk", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
# The pages hold what a body may know of a reporter: never in a shared cache, never framed,
# never sent as a Referer. No inline script or style: the page's data travels in a JSON
# script element.
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                      "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"}


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    router = request.app.router

    def url(route: str, **parts: str) -> str:
        return str(router[route].url_for(**parts))

    def static(filename: str) -> str:
        return str(router["desk-static"].url_for(filename=filename))

    form = context.get("form")
    csrf = form.csrf_token.current_token if form is not None and hasattr(form, "csrf_token") else ""
    body = _ENV.get_template(name).render(t=page_texts("desk"), common=page_texts("common"), url=url,
                                          static=static, csrf=csrf, new_id=lambda: str(uuid.uuid4()),
                                          **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=with_provider_form_action(request.app, HEADERS))

"""The front-end libraries shipped inside the package, served under ``/static/vendor/``.

``make assets`` (part of ``make setup``) installs the versions pinned in ``web/package.json``
and copies their built files into ``veille/web/vendor``; ``VERSIONS`` there records them.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

VENDOR_DIR = Path(__file__).with_name("vendor")
VENDOR_PREFIX = "/static/vendor"
# What the pages load; axe.min.js is there for the accessibility tests only.
SERVED = ("leaflet.js", "leaflet.css", "uPlot.iife.min.js", "uPlot.min.css")


class AssetsMissing(RuntimeError):
    pass


def check_vendor() -> None:
    missing = [name for name in SERVED if not (VENDOR_DIR / name).is_file()]
    if missing:
        raise AssetsMissing(f"front-end files missing in {VENDOR_DIR}: {', '.join(missing)}; "
                            "run `make assets` (npm installs the versions pinned in web/package.json)")


def add_vendor_routes(app: web.Application) -> None:
    """Serve the vendored libraries; they never change within a release, so cache them."""
    check_vendor()
    app.router.add_static(VENDOR_PREFIX, VENDOR_DIR, append_version=False)

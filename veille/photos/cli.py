"""``veille photos purge``: apply the photos' retention (run it daily)."""

from __future__ import annotations

import argparse

from veille.config import get_settings
from veille.photos.retention import closed_in_store, purge
from veille.photos.settings import PhotoSettings
from veille.photos.store import open_store


def _cmd_purge(args: argparse.Namespace) -> int:
    from veille.sinks.store import open_store as open_shared_store

    settings, photos = get_settings(), PhotoSettings()
    shared = open_shared_store(settings)
    try:
        report = purge(open_store(photos, settings.state_dir),
                       closed_in_store(shared.query, shared.database), photos)
    finally:
        shared.close()
    print(f"photos: {report.references_dropped} references past retention dropped, "
          f"{report.photos_deleted} photos deleted, {report.photos_kept} kept", flush=True)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("photos", help="the reports' photos: retention",
                       description="Photos are kept VEILLE_PHOTOS_RETENTION_DAYS_AFTER_CLOSED days after "
                                   "their incident is closed, VEILLE_PHOTOS_MAX_RETENTION_DAYS at most.")
    psub = p.add_subparsers(dest="photos_command", metavar="ACTION", required=True)
    run = psub.add_parser("purge", help="delete the photos whose retention is over (run daily)")
    run.set_defaults(func=_cmd_purge)

"""``veille keycloak fetch | start | stop``: the local OpenID Connect provider (tests, demos)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from veille.config import get_settings
from veille.local.keycloak import MIN_JAVA, STARTUP_TIMEOUT, KeycloakError, LocalKeycloak
from veille.local.processes import reporting

_reporting_errors = reporting("keycloak", KeycloakError)


@_reporting_errors
def _cmd_fetch(args: argparse.Namespace) -> int:
    keycloak = LocalKeycloak(get_settings())
    began = time.monotonic()
    path = keycloak.fetch(force=args.force)
    print(f"Keycloak {keycloak.version} in {path} ({time.monotonic() - began:.1f} s)")
    return 0


@_reporting_errors
def _cmd_start(args: argparse.Namespace) -> int:
    keycloak = LocalKeycloak(get_settings())
    info = keycloak.start(timeout=args.timeout)
    print(f"keycloak running: pid {info.pid}, {info.url} (started in {info.startup_seconds or 0:.1f} s, "
          f"Java: {info.java}); administrator {info.admin_user}, password in {keycloak.state_file}")
    for realm_file in args.realm or ():
        name = keycloak.import_realm(info, Path(realm_file))
        print(f"realm {name}: issuer {info.issuer(name)}")
    return 0


@_reporting_errors
def _cmd_stop(args: argparse.Namespace) -> int:
    stopped = LocalKeycloak(get_settings()).stop(timeout=args.timeout)
    print("keycloak stopped" if stopped else "keycloak was not running")
    return 0


def add_commands(sub: Any) -> None:
    parser = sub.add_parser(
        "keycloak", help="run a local OpenID Connect provider (Keycloak) for the single sign-on's tests",
        description=f"Local Keycloak (start-dev, in-memory database, 127.0.0.1 only) from the "
        f"distribution Maven fetches into the cache. Needs Java {MIN_JAVA}+ and Maven. Not for "
        "production: point VEILLE_OIDC_ISSUER at the deployment's provider.")
    cmds = parser.add_subparsers(dest="keycloak_command", metavar="ACTION", required=True)
    p = cmds.add_parser("fetch", help="download and unpack Keycloak into the cache")
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=_cmd_fetch)
    p = cmds.add_parser("start", help="start Keycloak in the background and wait until it answers")
    p.add_argument("--realm", action="append", help="a realm file (JSON export) to import; repeatable")
    p.add_argument("--timeout", type=float, default=STARTUP_TIMEOUT,
                   help="seconds to wait (default %(default)s)")
    p.set_defaults(func=_cmd_start)
    p = cmds.add_parser("stop", help="stop Keycloak (SIGTERM, then SIGKILL)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default %(default)s)")
    p.set_defaults(func=_cmd_stop)

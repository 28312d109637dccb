"""The processes the local servers (broker, cluster nodes, registry) run: ports, liveness, reaping,
stopping, and how their commands report errors.

The servers are detached JVMs whose PIDs are recorded in their state dirs; these helpers
tell whether such a PID is still alive (not a zombie), reap the ones this process started,
and pick loopback ports.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM's server sockets: a port in TIME_WAIT after a stop counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (all held open together while picking)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
    return ports


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# Popen objects of the servers this process started: kept so they can be reaped (a dead
# child stays a zombie, with an empty /proc cmdline, until its parent waits for it).
children: dict[int, subprocess.Popen[bytes]] = {}


def reap(pid: int) -> None:
    proc = children.get(pid)
    if proc is not None and proc.poll() is not None:
        del children[pid]


def pid_alive(pid: int) -> bool:
    reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def set_parent_death_signal() -> None:  # runs in the child between fork and exec
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class PortInUse(RuntimeError):
    """The port asked for is taken."""


def choose_ports(wanted: int | None, recorded: int | None, recorded_second: int | None) -> tuple[int, int]:
    """A server's (main, second) loopback ports: ``wanted`` (PortInUse when taken), else the
    ``recorded`` one of its previous start if still free (clients may have cached it), else a
    free one; the second likewise from ``recorded_second``, never equal to the main port."""
    if wanted is not None and not port_is_free(wanted):
        raise PortInUse(f"port {wanted} on 127.0.0.1 is already in use")
    if wanted is None and recorded and port_is_free(recorded):
        wanted = recorded
    picks = iter(free_ports(2))
    main = wanted or next(picks)
    if recorded_second and recorded_second != main and port_is_free(recorded_second):
        return main, recorded_second
    return main, next(p for p in picks if p != main)


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether ``pid`` is gone (reaped, when this process started it) within ``timeout``."""
    proc = children.get(pid)
    if proc is not None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        children.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL (and wait 10 s more). Returns whether it
    had to kill."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 10.0)
    return True


Command = Callable[[argparse.Namespace], int]


def reporting(command: str, error: type[Exception]) -> Callable[[Command], Command]:
    """A sub-command of ``veille <command>`` that prints ``error`` on one line and exits 1."""
    def decorate(func: Command) -> Command:
        @functools.wraps(func)
        def wrapper(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except error as exc:
                print(f"veille {command}: error: {exc}", file=sys.stderr)
                return 1
        return wrapper
    return decorate

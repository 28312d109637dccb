"""State files: the small JSON files a process leaves in the state dir for others to read.

Every one is written atomically (a reader never sees half a file) with :func:`write_json`, or
readable by its owner only with :func:`write_private` (passwords), and read with
:func:`read_json`, which takes a missing or half-written file for an empty one. Lists of
credentials (intake keys, relay accounts) are a :class:`RecordFile`. The local
servers (broker, registry) keep theirs in a :class:`StateDir`, with a lock that serialises
start/stop across processes; ``process_argv`` tells whether a recorded PID is still the server
of that state dir (PIDs are reused), by its command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

R = TypeVar("R", bound=BaseModel)


def process_argv(pid: int) -> list[bytes]:
    """The command line of ``pid`` (empty when it is gone or unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, never briefly wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # the umask cannot widen it, but an existing tmp file could
    tmp.replace(path)


class RecordFile(Generic[R]):
    """A private JSON list of records keyed by their ``id``, read again whenever it changes on
    disk: the serving process sees at once what the CLI issued, rotated or revoked."""

    def __init__(self, path: Path, model: type[R]) -> None:
        self.path = path
        self.model = model
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._records: dict[str, R] = {}

    def load(self) -> dict[str, R]:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                self._records, self._mtime = {}, None
                return self._records
            if mtime != self._mtime:
                rows = json.loads(self.path.read_text())
                self._records = {r["id"]: self.model.model_validate(r) for r in rows}
                self._mtime = mtime
            return self._records

    def save(self, records: Mapping[str, R]) -> None:
        write_private(self.path, json.dumps([r.model_dump(mode="json") for r in records.values()], indent=2))


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Replace ``path`` with ``data`` as JSON in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(data), indent=1) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_process_info(path: Path, **fields: Any) -> Path:
    """This process's state file: its PID and what it serves (URLs), for others to find it."""
    return write_json(path, {**fields, "pid": os.getpid()})


def live_process_info(path: Path) -> dict[str, Any] | None:
    """The state file at ``path`` when the process it names is still alive."""
    info = read_json(path)
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def wait_for_process_info(path: Path, proc: subprocess.Popen[Any], timeout: float = 60) -> dict[str, Any]:
    """The state file ``proc`` writes at ``path`` once it serves (it names ``proc``'s PID).

    Raises RuntimeError if ``proc`` exits first, TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{path.stem} exited early with code {proc.returncode}")
        info = read_json(path)
        if info.get("pid") == proc.pid:
            return info
        time.sleep(0.2)
    raise TimeoutError(f"{path.stem} did not start within {timeout:.0f}s")


class StateDir:
    """Base of the local servers: subclasses say where their dir and state file are."""

    @property
    def dir(self) -> Path:
        raise NotImplementedError

    @property
    def state_file(self) -> Path:
        raise NotImplementedError

    def _read_state(self) -> dict[str, Any]:
        return read_json(self.state_file)

    def _write_state(self, data: Mapping[str, Any]) -> None:
        write_json(self.state_file, data)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop of one state dir across processes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

"""What every background server the project starts itself (broker, registry) keeps on disk.

A state dir holds one JSON state file (PID, ports, versions) written atomically, and a lock
that serialises start/stop across processes. ``process_argv`` tells whether a recorded PID is
still the server of that state dir (PIDs are reused), by its command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def process_argv(pid: int) -> list[bytes]:
    """The command line of ``pid`` (empty when it is gone or unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


class StateDir:
    """Base of the local servers: subclasses say where their dir and state file are."""

    @property
    def dir(self) -> Path:
        raise NotImplementedError

    @property
    def state_file(self) -> Path:
        raise NotImplementedError

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, data: Mapping[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(dict(data), indent=1) + "\n")
        tmp.replace(self.state_file)

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

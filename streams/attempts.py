"""Failed attempts per source offset, kept across router restarts.

A batch whose handling raised (a bug, a client library failure) is never acked: the router
stops with ``EXIT_BATCH_FAILED`` and its successor reads the same messages again. Without
memory it would fail on them again, forever: a restart loop in which nothing behind the bad
message is ever routed. So the offsets of a failed batch are written down as *suspects*;
the next router handles suspects one at a time (each sent and acked alone), which isolates
the message that fails; a message that failed alone is dead-lettered (``repeated_failure``)
on its next attempt instead of being handled again.

The file lives in the router's state dir and is small: only offsets of failed batches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

Key = tuple[str, int, int]  # topic, partition, offset


@dataclass
class Attempt:
    failures: int
    isolated: bool  # failed while handled alone: the message itself is the cause


class AttemptLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[Key, Attempt] = {}
        try:
            for row in json.loads(path.read_text()):
                self.entries[(row["topic"], row["partition"], row["offset"])] = Attempt(
                    int(row["failures"]), bool(row["isolated"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            # A damaged file only costs the isolation pass it described; never stop on it.
            self.entries = {}

    def __bool__(self) -> bool:
        return bool(self.entries)

    def get(self, key: Key) -> Attempt | None:
        return self.entries.get(key)

    def condemned(self, key: Key) -> bool:
        """The message failed when handled alone: dead-letter it rather than try again."""
        found = self.entries.get(key)
        return found is not None and found.isolated

    def failed(self, keys: list[Key]) -> None:
        """Record a failed attempt on ``keys`` (isolated when there is one) and save."""
        for key in keys:
            previous = self.entries.get(key)
            self.entries[key] = Attempt((previous.failures if previous else 0) + 1, len(keys) == 1)
        self.save()

    def done(self, key: Key) -> None:
        self.entries.pop(key, None)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"topic": t, "partition": p, "offset": o, "failures": a.failures, "isolated": a.isolated}
                for (t, p, o), a in sorted(self.entries.items())]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a file

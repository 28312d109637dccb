"""Router memory with its de-duplication window full (not a test).

``python -m benchmarks.dedup_memory [ids]`` fills the router's own ``DedupWindow`` the way the
router does (``BatchDedup.remember`` then ``commit`` per batch of 1,000 events, ids being
UUID strings) and prints the resident memory of this process before and after: what a router
that has seen ``ids`` events within 24 hours holds on top of its base. Runs in its own
process so nothing else inflates the numbers.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

from veille.streams.dedup import DEDUP_CAPACITY, DedupWindow

BATCH = 1_000


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass(frozen=True)
class DedupMemory:
    ids: int
    base_mb: float  # the process with the router's modules imported, window empty
    full_mb: float  # the same with the window holding ``ids`` ids
    seconds: float  # to fill it

    @property
    def per_id_bytes(self) -> float:
        return (self.full_mb - self.base_mb) * 1e6 / self.ids


def fill(ids: int) -> DedupMemory:
    import veille.streams.app  # noqa: F401  (the router process imports all of it)

    gc.collect()
    base = rss_bytes()
    window = DedupWindow(capacity=max(ids, DEDUP_CAPACITY))
    value = os.urandom(600)  # an incident's size; only its digest is kept
    now = time.time()
    t0 = time.perf_counter()
    for start in range(0, ids, BATCH):
        batch = window.batch()
        for i in range(min(BATCH, ids - start)):
            batch.owner = i
            batch.remember(str(uuid.uuid4()), value, now)
        batch.commit(lambda _owner: True)
    seconds = time.perf_counter() - t0
    gc.collect()
    assert len(window) == ids
    return DedupMemory(ids, base / 1e6, rss_bytes() / 1e6, seconds)


def measure(ids: int = DEDUP_CAPACITY) -> DedupMemory:
    """In a fresh interpreter: nothing the caller allocated counts."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.dedup_memory", str(ids), "--json"],
                         capture_output=True, text=True, check=True, timeout=600)
    return DedupMemory(**json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ids = int(sys.argv[1]) if len(sys.argv) > 1 else DEDUP_CAPACITY
    m = fill(ids)
    if "--json" in sys.argv:
        print(json.dumps({"ids": m.ids, "base_mb": m.base_mb, "full_mb": m.full_mb, "seconds": m.seconds}))
        return
    print(f"router modules imported, empty window: {m.base_mb:,.0f} MB resident")
    print(f"with {m.ids:,} ids in the window:      {m.full_mb:,.0f} MB resident "
          f"({m.per_id_bytes:,.0f} bytes per id; filled in {m.seconds:.1f} s)")


if __name__ == "__main__":
    main()

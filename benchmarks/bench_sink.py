"""Rows/s into the embedded chDB store (not a test):
``python -m benchmarks.bench_sink [rows] [batch] [passes] [workdir]`` (``--json``: one JSON line).

On a fresh store in a temp dir, with the real tables, views, TTLs and dedup settings:
  insert    Arrow batches already built → store.insert (the store's own speed; target >= 300k rows/s)
  decode    Avro bytes → plain checked values (per message, as the sink does)
  to_rows   decoded values → Arrow tables (per batch)
  decode + rows: both, per message: the sink's Python work on one core (target >= 150k msg/s)
The machine is shared: numbers vary by 2x between runs; the best pass is the store's capacity.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.pure import as_in_a_component
from veille.kafka import Message
from veille.schemas.models import DispatchTarget, RoutedIncident
from veille.sinks.decode import decode
from veille.sinks.rows import plain_incident, to_rows
from veille.sinks.store import ChdbStore


def incidents(n: int) -> list[RoutedIncident]:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return [
        RoutedIncident(
            id=uuid.uuid4(), municipality=f"354{i % 50:02d}", category=("flood", "theft", "graffiti")[i % 3],
            severity="moderate", channel=("app", "phone", "web")[i % 3],
            location={"lat": 48.1, "lon": -1.7}, occurred_at=base,
            reported_at=base + timedelta(seconds=i % 600),
            routed_at=base + timedelta(seconds=i % 600 + 1), reporter_pseudonym=f"p{i % 1000}",
            dispatches=[DispatchTarget(agency_id=f"pm-{i % 50}", service="municipal_police", rule="r",
                                       cross_boundary=i % 4 == 0)],
        )
        for i in range(n)
    ]


@dataclass(frozen=True)
class SinkNumbers:
    total: int
    batch: int
    passes: int
    insert_rates: list[float]  # rows/s of each pass
    to_rows_rate: float  # records/s
    decode_rate: float  # messages/s
    decode_rows_rate: float  # messages/s through both
    stored: int  # distinct incidents after every pass (FINAL)
    reports: int  # distinct reports in the reports_daily view
    arrow_mb: float

    @property
    def best(self) -> float:
        return max(self.insert_rates)

    @property
    def median(self) -> float:
        return statistics.median(self.insert_rates)


def measure(total: int = 200_000, batch: int = 10_000, passes: int = 3, workdir: Path | None = None
            ) -> SinkNumbers:
    """Every number this script prints, on a fresh store in ``workdir`` (default: a temp dir)."""
    records = incidents(total)
    stored_at = datetime.now(UTC)
    sample = [r.encode() for r in records[:20_000]]
    to_rows([plain_incident(r) for r in records[:100]], stored_at)  # pyarrow's first-call setup
    with as_in_a_component():
        t0 = time.perf_counter()
        decoded = [decode(Message("bench", 0, 0, None, value)) for value in sample]
        decode_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(decoded), batch):
            to_rows(decoded[i:i + batch], stored_at)
        sample_rows_s = time.perf_counter() - t0
    decode_rate = len(sample) / decode_s
    decode_rows_rate = len(sample) / (decode_s + sample_rows_s)
    # The insert passes use the plain values too, as the sink does.
    plain = [plain_incident(r) for r in records]
    chunks = [plain[i:i + batch] for i in range(0, total, batch)]
    with as_in_a_component():
        t0 = time.perf_counter()
        built = [to_rows(c, stored_at) for c in chunks]
        to_rows_s = time.perf_counter() - t0

    rates: list[float] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = ChdbStore(Path(tmp) / "chdb")
        try:
            store.migrate()
            # Each pass re-inserts the same incidents under new tokens (a replay outside the
            # dedup window): full work for the table and its view, and the ids collapse on FINAL.
            for p in range(passes):
                t0 = time.perf_counter()
                for i, tables in enumerate(built):
                    store.insert("incidents", tables["incidents"], f"incidents|bench:{p}:{i}")
                rates.append(total / (time.perf_counter() - t0))
            stored = store.query("SELECT count() AS n FROM veille.incidents FINAL")[0]["n"]
            reports = store.query(
                "SELECT toUInt64(uniqExactMerge(reports)) AS n FROM veille.reports_daily")[0]["n"]
        finally:
            store.close()
    arrow_mb = sum(t["incidents"].nbytes for t in built) / 1e6
    return SinkNumbers(total, batch, passes, rates, total / to_rows_s, decode_rate, decode_rows_rate, stored,
                       reports, arrow_mb)


def measure_in_a_process(total: int, batch: int, passes: int, workdir: Path | None = None) -> SinkNumbers:
    """:func:`measure` in a fresh interpreter, as the sink runs: the caller's heap (a benchmark
    holding its pool of events) slowed the per-message work by up to half when measured in it."""
    args = [sys.executable, "-m", "benchmarks.bench_sink", "--json", str(total), str(batch), str(passes)]
    if workdir is not None:
        args.append(str(workdir))
    out = subprocess.run(args, capture_output=True, text=True, timeout=1800,
                         cwd=Path(__file__).resolve().parent.parent)  # where `benchmarks` imports from
    if out.returncode != 0:
        raise RuntimeError(f"bench_sink exited {out.returncode}: {out.stderr[-2000:]}")
    return SinkNumbers(**json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    args = sys.argv[1:]
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    total = int(args[0]) if args else 200_000
    batch = int(args[1]) if len(args) > 1 else 10_000
    passes = int(args[2]) if len(args) > 2 else 3
    n = measure(total, batch, passes, Path(args[3]) if len(args) > 3 else None)
    if as_json:
        print(json.dumps(asdict(n)))
        return
    print(f"{total:,} incidents, batches of {batch:,}, chDB with the sink's tables, views and dedup settings")
    print(f"  insert Arrow into incidents (+ reports_daily view): best {n.best:,.0f} rows/s, "
          f"median {n.median:,.0f} rows/s over {n.passes} passes ({n.arrow_mb:.0f} MB Arrow)")
    print(f"  to_rows (plain values -> Arrow, incidents + dispatches): {n.to_rows_rate:,.0f} records/s")
    print(f"  decode (single-object Avro -> checked plain values):   {n.decode_rate:,.0f} messages/s")
    print(f"  decode + rows (the sink's Python work per message):    {n.decode_rows_rate:,.0f} messages/s")
    print(f"  distinct incidents after {n.passes} passes: {n.stored:,} (FINAL), "
          f"reports in view: {n.reports:,}")


if __name__ == "__main__":
    main()

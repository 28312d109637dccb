"""Prometheus metrics of the store sink (default registry, served on /metrics by the sink)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_ROWS = Histogram(
    "veille_sink_batch_rows", "Messages per written batch",
    buckets=(1, 10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000),
)
INSERT_SECONDS = Histogram(
    "veille_sink_insert_seconds", "Duration of one insert into a store table", ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ROWS_WRITTEN = Counter("veille_sink_rows_written_total", "Rows inserted into the store", ["table"])
WRITE_FAILURES = Counter("veille_sink_write_failures_total", "Failed attempts to write a batch")
DEAD_LETTERED = Counter("veille_sink_dead_lettered_total", "Messages sent to the dead-letter topic",
                        ["reason"])
END_TO_END = Histogram(
    "veille_sink_end_to_end_seconds", "From an incident's reported_at to its storage",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
CONSUMER_LAG = Gauge("veille_sink_consumer_lag", "Messages behind the high watermark",
                     ["topic", "partition"])
LAST_COMMIT = Gauge("veille_sink_last_commit_timestamp",
                    "Unix time of the last offset commit (alert when it stops moving)")
CONSUMER_REJOINS = Counter("veille_sink_consumer_rejoins_total",
                           "Times the sink's consumer was fenced (static membership) and replaced")

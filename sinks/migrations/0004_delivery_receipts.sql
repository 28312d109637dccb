-- Delivery receipts (issue 21): one row per attempt to push a dispatch to its agency by webhook,
-- e-mail or Open311 (`veille deliver run` publishes them on <prefix>.delivery). Like the event
-- tables of 0001: replayed insert blocks are skipped (insert_deduplication_token), and a receipt
-- stored twice (replay outside the dedup window, a receipt re-published) collapses on merge
-- since its key names the attempt and its end; readers use FINAL. Two attempts are two rows,
-- even when a restarted deliverer numbers an attempt again (their `at` differ).
-- No personal data: the reply is the destination's answer or the error (never a secret, never
-- the message), but it belongs to a dispatch, so it follows the incident TTL.

CREATE TABLE IF NOT EXISTS ${db}.delivery_receipts
(
    dispatch_id UUID,
    agency_id LowCardinality(String),
    method LowCardinality(String),
    attempt UInt32,
    outcome LowCardinality(String),
    status_code Nullable(UInt16),
    reply Nullable(String),
    latency_ms UInt64,
    at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (agency_id, dispatch_id, method, attempt, at)
TTL toDateTime(at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

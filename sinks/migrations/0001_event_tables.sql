-- Event-level tables: latest state of what went through the router.
-- Every table dedups replayed insert blocks (insert_deduplication_token) within a window of
-- 10000 blocks, and is a ReplacingMergeTree so that rows replayed outside that window (or
-- re-emitted upstream) collapse on merge; readers use FINAL.
-- TTL: incident-level rows are personal-data adjacent (places, times, pseudonyms) and expire
-- after ${incident_ttl_days} days; the aggregates of 0002 are kept ${aggregate_ttl_days} days.

CREATE TABLE IF NOT EXISTS ${db}.incidents
(
    id UUID,
    municipality LowCardinality(String),
    category LowCardinality(String),
    severity LowCardinality(String),
    channel LowCardinality(String),
    lat Nullable(Float64),
    lon Nullable(Float64),
    occurred_at DateTime64(3, 'UTC'),
    reported_at DateTime64(3, 'UTC'),
    routed_at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC'),
    reporter_pseudonym Nullable(String),
    agencies Array(LowCardinality(String)),
    cross_boundary Bool,
    -- routed_at in ms: a later routing decision about the same incident wins.
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(reported_at)
ORDER BY (municipality, id)
TTL toDateTime(reported_at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS ${db}.dispatches
(
    event_type LowCardinality(String),
    event_id String,
    agency_id LowCardinality(String),
    service LowCardinality(String),
    rule LowCardinality(String),
    cross_boundary Bool,
    -- the incident's municipality; '' for an alert (see municipalities)
    municipality LowCardinality(String),
    municipalities Array(LowCardinality(String)),
    category LowCardinality(String),
    severity LowCardinality(String),
    reported_at DateTime64(3, 'UTC'),
    routed_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(reported_at)
ORDER BY (event_type, event_id, agency_id, service, rule)
TTL toDateTime(reported_at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- The free-text note of a status update is NOT stored: it may name people.
CREATE TABLE IF NOT EXISTS ${db}.status_events
(
    id UUID,
    incident_id UUID,
    agency_id LowCardinality(String),
    status LowCardinality(String),
    at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (incident_id, id)
TTL toDateTime(at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS ${db}.alerts
(
    identifier String,
    sender String,
    sent DateTime64(3, 'UTC'),
    status LowCardinality(String),
    msg_type LowCardinality(String),
    event String,
    category LowCardinality(String),
    severity LowCardinality(String),
    urgency LowCardinality(String),
    headline Nullable(String),
    municipalities Array(LowCardinality(String)),
    agencies Array(LowCardinality(String)),
    routed_at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(sent)
ORDER BY (sender, identifier)
TTL toDateTime(sent) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

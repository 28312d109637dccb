-- Materialized views feeding the monitoring-cell indicators.
-- Every aggregate is IDEMPOTENT (uniqExact over event ids, min, argMax, max): a row that
-- reaches a view twice (replay outside the dedup window, upstream re-emission) changes
-- nothing. Block dedup (deduplicate_blocks_in_dependent_materialized_views=1 at insert and
-- non_replicated_deduplication_window on the target tables) only saves the work.
-- Days are local days in Europe/Paris: a cell reads "reports of Monday" in local time.

CREATE TABLE IF NOT EXISTS ${db}.reports_daily
(
    day Date,
    municipality LowCardinality(String),
    category LowCardinality(String),
    channel LowCardinality(String),
    reports AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(day)
ORDER BY (municipality, day, category, channel)
TTL day + INTERVAL ${aggregate_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.reports_daily_mv TO ${db}.reports_daily AS
SELECT
    toDate(reported_at, 'Europe/Paris') AS day,
    municipality,
    category,
    channel,
    uniqExactState(id) AS reports
FROM ${db}.incidents
GROUP BY day, municipality, category, channel;

CREATE TABLE IF NOT EXISTS ${db}.dispatch_daily
(
    day Date,
    agency_id LowCardinality(String),
    municipality LowCardinality(String),
    service LowCardinality(String),
    dispatches AggregateFunction(uniqExact, String),
    cross_boundary AggregateFunction(uniqExact, Nullable(String))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(day)
ORDER BY (agency_id, municipality, day, service)
TTL day + INTERVAL ${aggregate_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.dispatch_daily_mv TO ${db}.dispatch_daily AS
SELECT
    toDate(reported_at, 'Europe/Paris') AS day,
    agency_id,
    municipality,
    service,
    uniqExactState(event_id) AS dispatches,
    uniqExactState(if(cross_boundary, event_id, NULL)) AS cross_boundary
FROM ${db}.dispatches
WHERE event_type = 'incident'
GROUP BY day, agency_id, municipality, service;

-- Per incident and agency: first reaction, first resolution, latest status. Holds no
-- personal data but is incident-level, so it follows the incident TTL.
CREATE TABLE IF NOT EXISTS ${db}.incident_lifecycle
(
    incident_id UUID,
    agency_id LowCardinality(String),
    acknowledged_at AggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    resolved_at AggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    latest_status AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (incident_id, agency_id)
TTL toDateTime(last_at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Any agency action after receipt counts as acknowledging the incident.
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.incident_lifecycle_mv TO ${db}.incident_lifecycle AS
SELECT
    incident_id,
    agency_id,
    minState(if(status != 'received', at, NULL)) AS acknowledged_at,
    minState(if(status = 'resolved', at, NULL)) AS resolved_at,
    argMaxState(toString(status), at) AS latest_status,
    max(at) AS last_at
FROM ${db}.status_events
GROUP BY incident_id, agency_id;

CREATE TABLE IF NOT EXISTS ${db}.alerts_daily
(
    day Date,
    municipality LowCardinality(String),
    status LowCardinality(String),
    severity LowCardinality(String),
    alerts AggregateFunction(uniqExact, String, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(day)
ORDER BY (municipality, day, status, severity)
TTL day + INTERVAL ${aggregate_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.alerts_daily_mv TO ${db}.alerts_daily AS
SELECT
    toDate(sent, 'Europe/Paris') AS day,
    municipality,
    status,
    severity,
    uniqExactState(sender, identifier) AS alerts
FROM ${db}.alerts
ARRAY JOIN municipalities AS municipality
GROUP BY day, municipality, status, severity;

-- Latest known state of each incident, for ad-hoc queries (not used by the indicators).
CREATE VIEW IF NOT EXISTS ${db}.incident_state AS
SELECT
    i.*,
    l.status AS status,
    l.acknowledged_at AS acknowledged_at,
    l.resolved_at AS resolved_at
FROM ${db}.incidents AS i FINAL
LEFT JOIN
(
    SELECT
        incident_id,
        argMax(status, last_at) AS status,
        min(acknowledged_at) AS acknowledged_at,
        min(resolved_at) AS resolved_at
    FROM
    (
        SELECT
            incident_id,
            argMaxMerge(latest_status) AS status,
            minMerge(acknowledged_at) AS acknowledged_at,
            minMerge(resolved_at) AS resolved_at,
            max(last_at) AS last_at
        FROM ${db}.incident_lifecycle
        GROUP BY incident_id, agency_id
    )
    GROUP BY incident_id
) AS l ON l.incident_id = i.id;

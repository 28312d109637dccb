-- Re-routings and escalations (issue 22): one row per dispatch the stream processor made after
-- routing (`veille router escalations` publishes Redispatch records on <prefix>.routed): a
-- refused dispatch re-routed to the next body (kind 'rerouted'), or an overdue one escalated
-- to its supervisor (kind 'escalated'). The dispatch itself is also a row of `dispatches`
-- (written by the sink from the same record), so per-body counts and deadlines include it.
-- A record stored twice (a re-published escalation after a kill -9 carries the same
-- deterministic id) collapses on merge; readers use FINAL. No personal data: the refusal's
-- free text never leaves the status topic; it follows the incident TTL.

CREATE TABLE IF NOT EXISTS ${db}.redispatches
(
    id UUID,
    kind LowCardinality(String),
    incident_id UUID,
    agency_id LowCardinality(String),
    service LowCardinality(String),
    rule LowCardinality(String),
    cross_boundary Bool,
    hop UInt16,
    previous_id UUID,
    previous_agency_id LowCardinality(String),
    reason LowCardinality(String),
    step LowCardinality(Nullable(String)),
    municipality LowCardinality(String),
    category LowCardinality(String),
    severity LowCardinality(String),
    reported_at DateTime64(3, 'UTC'),
    refused_at DateTime64(3, 'UTC'),
    routed_at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(routed_at)
ORDER BY (incident_id, id)
TTL toDateTime(routed_at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Why a body refused (StatusUpdate v3 reason code: not_competent, wrong_location, duplicate,
-- no_action_needed, other; NULL before v3 or on other statuses), for the "refusals by reason"
-- indicator. A code, never the refusal's free text.
ALTER TABLE ${db}.status_events ADD COLUMN IF NOT EXISTS reason LowCardinality(Nullable(String));

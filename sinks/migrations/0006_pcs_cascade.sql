-- The PCS cascade (issue 27): one row per event of <prefix>.pcs.cascade (veille pcs worker and
-- the representatives' page): activations, notifications, acknowledgements, checks. Counts
-- only: ids of activations and representatives, channels, outcomes and statuses; never a name,
-- an address, a need, a contact, nor even the register entry's id (a check is a status).
-- A row stored twice (a replayed block outside the dedup window) collapses on merge: the key
-- names the event (readers use FINAL).

CREATE TABLE IF NOT EXISTS ${db}.pcs_cascade
(
    activation String,
    municipality LowCardinality(String),
    kind LowCardinality(String),
    owner String,
    target String,
    step UInt16,
    channel LowCardinality(String),
    outcome LowCardinality(String),
    status LowCardinality(String),
    event_key String,
    at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (municipality, activation, kind, event_key)
TTL toDateTime(at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Prevention actions (exploratory walks, neighbourhood meetings, mediation sessions): date,
-- area, participants by kind as counts, never names. Recorded by `veille pcs action add` on
-- <prefix>.pcs.cascade; a re-recorded action (same id) replaces the earlier one.
CREATE TABLE IF NOT EXISTS ${db}.prevention_actions
(
    id String,
    municipality LowCardinality(String),
    kind LowCardinality(String),
    day Date,
    area String,
    residents UInt32,
    representatives UInt32,
    police UInt32,
    landlords UInt32,
    associations UInt32,
    at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(at)
ORDER BY (municipality, id);

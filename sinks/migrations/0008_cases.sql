-- Cases (issue 25, docs/grouping.md "What the store and the residents see"): nearby reports of
-- one category grouped as they arrive. Every report is still a row of `incidents` (and counted
-- in reports_daily, participation by channel, as before); RoutedIncident v2 adds the case it was
-- grouped into (`case_id`, NULL when not grouped: grouping off, a sensitive category, no point;
-- equal to `id` for the case's first report) and the bodies that received it as an update of
-- their dispatch of the case (`update_agencies`; those that received a dispatch stay in
-- `agencies` and in `dispatches`). A RoutedIncident v1 stores case_id NULL, no updates.
ALTER TABLE ${db}.incidents ADD COLUMN IF NOT EXISTS case_id Nullable(UUID);
ALTER TABLE ${db}.incidents ADD COLUMN IF NOT EXISTS update_agencies Array(LowCardinality(String));

-- A body split a report out of its case (CaseSplit v1 on <prefix>.routed, the agency desk's
-- action). Ids and times only. A report split by any body is, from then on, a case of its own
-- in the views below (its own count of one, its own acknowledgement): the body answers it on
-- its own dispatch, and the report's status follows that dispatch. The same split stored twice
-- (same action id) collapses on merge; readers use FINAL.
CREATE TABLE IF NOT EXISTS ${db}.case_splits
(
    id UUID,
    incident_id UUID,
    case_id UUID,
    agency_id LowCardinality(String),
    service LowCardinality(String),
    dispatch_id UUID,
    at DateTime64(3, 'UTC'),
    stored_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (incident_id, id)
TTL toDateTime(at) + INTERVAL ${incident_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Every stored report with the case it counts in now (`case_of`): its case, or itself when it
-- was never grouped or was split out. `grouped`: it was put into a case by the grouping worker
-- (a split report stays grouped: it was). Event-level, read FINAL.
CREATE VIEW IF NOT EXISTS ${db}.case_reports AS
SELECT
    i.*,
    i.case_id IS NOT NULL AS grouped,
    i.id IN (SELECT incident_id FROM ${db}.case_splits FINAL) AS split,
    if(i.case_id IS NULL OR split, i.id, assumeNotNull(i.case_id)) AS case_of
FROM ${db}.incidents AS i FINAL;

-- One row per case of grouped reports (a report never grouped is not a case; a split report is
-- a case of one). The category and first report are the case's first report's (its id is the
-- case id), or the earliest stored report's when that one is not stored (expired, not yet
-- read). Severity: the most severe report's (a case raised by its size, `severe_at`, is
-- visible on the dispatches, not here). first_acknowledged_at: the earliest action of any body
-- on any dispatch of the case (its first report's, and later reports' sent as a body's first
-- dispatch of the case), from incident_lifecycle.
CREATE VIEW IF NOT EXISTS ${db}.cases AS
SELECT
    r.case_of AS case_id,
    argMin(r.category, (r.id != r.case_of, r.reported_at)) AS category,
    min(r.reported_at) AS first_report_at,
    max(r.reported_at) AS last_report_at,
    count() AS reports,
    arraySort(groupUniqArray(r.municipality)) AS municipalities,
    arrayElement(['minor', 'moderate', 'severe', 'critical'],
                 greatest(1, max(indexOf(['minor', 'moderate', 'severe', 'critical'], r.severity))))
        AS severity,
    max(r.split) AS split,
    min(r.lat) AS min_lat, max(r.lat) AS max_lat, min(r.lon) AS min_lon, max(r.lon) AS max_lon,
    avg(r.lat) AS lat, avg(r.lon) AS lon,
    min(l.acknowledged_at) AS first_acknowledged_at
FROM ${db}.case_reports AS r
LEFT JOIN
(
    SELECT incident_id, minMerge(acknowledged_at) AS acknowledged_at
    FROM ${db}.incident_lifecycle
    GROUP BY incident_id
) AS l ON l.incident_id = r.id
WHERE r.grouped
GROUP BY r.case_of;

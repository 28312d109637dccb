-- The reports born from a prevention action (issue 27): the ids of the incidents a walk gave
-- rise to, as the `prevention` event lists them (veille/pcs/events.py PreventionEvent), so the
-- store joins them with the incidents' status events (veille/reads/pcs.py walk_reports_sql).
-- Ids only: the incidents themselves are stored as usual.
ALTER TABLE ${db}.prevention_actions ADD COLUMN IF NOT EXISTS report_ids Array(String);

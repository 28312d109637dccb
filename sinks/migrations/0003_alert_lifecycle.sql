-- CAP lifecycle of the alerts (issue 12): an Update or Cancel names the alerts it replaces in
-- `references` ("sender,identifier,sent" triples). Nothing is rewritten in place: the
-- replaced row stays as received and the views below derive the state at query time, so the
-- order in which the messages arrive does not matter (a Cancel stored before its alert still
-- closes it). Only the same sender may close or supersede its own alerts: the hub does not let
-- one authority withdraw another's warning.

ALTER TABLE ${db}.alerts ADD COLUMN IF NOT EXISTS scope LowCardinality(String) DEFAULT 'Public';
ALTER TABLE ${db}.alerts ADD COLUMN IF NOT EXISTS references Array(String);
-- Latest expires of the infos; NULL if one info never expires (and for rows stored before 0003).
ALTER TABLE ${db}.alerts ADD COLUMN IF NOT EXISTS expires Nullable(DateTime64(3, 'UTC'));
-- The whole Alert record as JSON (official text, no personal data): served back as CAP XML.
ALTER TABLE ${db}.alerts ADD COLUMN IF NOT EXISTS cap_json Nullable(String);

-- One row per (replaced alert, message replacing it).
CREATE VIEW IF NOT EXISTS ${db}.alert_closures AS
SELECT
    splitByChar(',', ref)[2] AS identifier,
    sender,
    identifier AS by_identifier,
    msg_type AS by_msg_type,
    sent AS by_sent
FROM ${db}.alerts FINAL
ARRAY JOIN references AS ref
WHERE msg_type IN ('Update', 'Cancel') AND splitByChar(',', ref)[1] = sender;

-- Alerts in force: an Alert or Update not cancelled, not superseded by an Update, not expired.
CREATE VIEW IF NOT EXISTS ${db}.active_alerts AS
SELECT *
FROM ${db}.alerts FINAL
WHERE msg_type IN ('Alert', 'Update')
  AND (expires IS NULL OR expires > now64(3))
  AND (sender, identifier) NOT IN (SELECT sender, identifier FROM ${db}.alert_closures);

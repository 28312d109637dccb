"""The store sink: routed records → chDB (embedded, default) or a ClickHouse server.

Modules: ``rows`` (records → Arrow tables, pure), ``store`` (Store protocol, chDB and
ClickHouse backends, versioned migrations in ``migrations/``), ``pipeline`` (decode →
batch → write → commit, at-least-once + idempotent store), ``indicators`` (monitoring-cell
indicators), ``service`` (HTTP /metrics and /indicators), ``cli`` (``veille sink run``,
``veille indicators``, ``veille store migrate``).
"""

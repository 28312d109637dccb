"""The store sink: routed records and delivery receipts → chDB (embedded, default) or a ClickHouse server.

Modules: ``rows`` (records → Arrow tables, pure), ``store`` (Store protocol, chDB and
ClickHouse backends, versioned migrations in ``migrations/``), ``pipeline`` (decode →
batch → write → commit, at-least-once + idempotent store), ``cli`` (``veille sink run``,
``veille indicators``, ``veille store migrate``). What is read from the store (indicators,
console, CAP feed, the HTTP side) is in ``veille.reads``.
"""

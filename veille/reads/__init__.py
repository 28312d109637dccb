"""The read side of the store: what the hub tells people from what the sink stored.

Modules: ``indicators`` (the monitoring cells' indicators, each defined once for the CLI, the
HTTP API, the console and the annual report), ``deadlines`` (late dispatches), ``alert_state``
(CAP alert lifecycle), ``cap_feed`` (CAP 1.2 and Atom out), ``app`` (the HTTP routes on aiohttp),
``service`` (the HTTP side started beside the sink), ``console/`` (the web console's pages,
filters and queries). It reads the store of ``veille.sinks`` (``Store``, the migrations' tables and
views); the write side never imports it, only ``veille sink run`` starts it.
"""

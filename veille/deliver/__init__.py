"""Delivery of dispatches to the bodies that run no Kafka consumer: webhook, e-mail, Open311.

The building blocks, each usable alone (the ``veille deliver run`` consumer wires them to the
dispatch topics): :mod:`.config` (an agency's ``delivery:`` section), :mod:`.ssrf` (where the
hub may send requests), :mod:`.webhook`, :mod:`.email` and :mod:`.open311_client` (one attempt
each, an :class:`~.outcome.Attempt`), :mod:`.links` (signed response links), :mod:`.retry`
(backoff per destination, when a dispatch is undelivered). ``docs/delivery.md`` documents them.
"""

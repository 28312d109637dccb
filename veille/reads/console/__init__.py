"""The monitoring cells' web console: pages, filters, queries, export and annual report
(its routes are in ``veille.reads.app``)."""

"""Grouping nearby reports into cases as they arrive (issue 25, docs/grouping.md).

Pure logic, no Kafka and no faust: :mod:`.cells` (H3 cells and distances), :mod:`.envelope`
(the records of ``<prefix>.grouping``), :mod:`.cases` (what one record does to one cell's
state), :mod:`.records` (the Dispatch and RoutedIncident values a decision produces). The
faust worker that applies them is ``streams/grouping.py``; the router's side is one branch in
``streams/router.py``.
"""

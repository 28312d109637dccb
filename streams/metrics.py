"""Prometheus metrics of the router (served on /metrics by ``veille router run``)."""

from prometheus_client import Counter, Gauge, Histogram

from veille.streams.membership import Progress

ROUTED = Counter("veille_router_routed_total", "Dispatches produced, per agency and service",
                 ["agency", "service"])
CROSS_BOUNDARY = Counter("veille_router_cross_boundary_total",
                         "Dispatches to a body other than the municipality where it happened",
                         ["service"])
EVENTS = Counter("veille_router_events_total", "Messages consumed by outcome",
                 ["source", "outcome"])
DEAD_LETTERED = Counter("veille_router_dead_lettered_total", "Messages dead-lettered, by reason",
                        ["reason"])
CASE_SPLITS = Counter("veille_router_case_splits_total",
                      "Reports split out of a case by a body (docs/grouping.md): forwarded, or "
                      "dead-lettered by reason", ["outcome"])
UNROUTABLE = Counter("veille_router_unroutable_total", "Events no rule or area could route")
DUPLICATES = Counter("veille_router_duplicates_total", "Re-sent events dropped (same id, same bytes)")
ROUTING_SECONDS = Histogram("veille_router_routing_seconds", "Time to decide one event",
                            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1))
BATCH_SECONDS = Histogram("veille_router_batch_seconds",
                          "Time from batch start to every output acknowledged by Kafka",
                          buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PIPELINE_SECONDS = Histogram("veille_router_latency_seconds",
                             "reported_at to routed, per event",
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60))
SEND_RETRIES = Counter("veille_router_send_retries_total",
                       "Output batches re-sent after Kafka refused or timed out")
CONSUMER_LAG = Gauge("veille_consumer_lag", "Messages not yet committed by a consumer group",
                     ["group", "topic", "partition"])
STOPPED_INVALID = Counter("veille_router_stopped_invalid_total",
                          "Times the router stopped because most of its sources were invalid at once")
# Per-source quarantine (streams/quarantine.py). Sources are bounded (max_sources) and only a
# source that sent a hundred messages, most of them invalid, ever gets a label here.
SOURCE_QUARANTINED = Gauge("veille_router_source_quarantined",
                           "1 while the source is quarantined (its garbage dead-lettered in ranges)",
                           ["source"])
QUARANTINES = Counter("veille_router_quarantines_total", "Times a source entered quarantine", ["source"])
QUARANTINED_MESSAGES = Counter("veille_router_quarantined_messages_total",
                               "Invalid messages of a quarantined source, dead-lettered in range letters",
                               ["source"])
RANGE_LETTERS = Counter("veille_router_range_letters_total",
                        "Range dead letters written (each stands for range_count messages)")
STALLED = Counter("veille_router_stalled_exits_total", "Exits because no batch completed despite a backlog")
# Last completed batch / assignment and the assigned partitions (read by the stall watchdog).
PROGRESS = Progress()
BATCH_FAILURES = Counter("veille_router_batch_failures_total",
                         "Batches that could not be handled (the router stops, nothing acked)")
# Re-routing and escalation (veille router escalations, streams/escalation*.py).
REROUTED = Counter("veille_reroutes_total", "Refused dispatches re-routed to the next body, by step",
                   ["step"])
REROUTE_HOP_LIMIT = Counter("veille_reroute_hop_limit_total",
                            "Refusals that reached the hop limit (sent to the monitoring cell)")
REROUTE_EXHAUSTED = Counter("veille_reroute_exhausted_total",
                            "Refusals with no body left to re-route to (the monitoring cell refused)")
REFUSALS_IGNORED = Counter("veille_reroute_refusals_ignored_total",
                           "Refusals not re-routed, by why (unknown dispatch, already re-routed, "
                           "other reason)", ["why"])
FOLLOWUP_SKIPPED = Counter("veille_escalation_records_skipped_total",
                           "Records of the routed topic the escalation worker could not read (logged)")
SPLITS_TIMED = Counter("veille_escalation_case_splits_total",
                       "CaseSplit records read by the escalation worker, by what they did (split: the "
                       "update got its own deadlines; already, not_an_update, unknown_report)",
                       ["outcome"])
ESCALATED = Counter("veille_escalations_total",
                    "Overdue dispatches escalated to a supervisor, by deadline", ["deadline"])
ESCALATION_NO_SUPERVISOR = Counter("veille_escalation_no_supervisor_total",
                                   "Overdue dispatches whose body declares no supervisor")
PENDING_DEADLINES = Gauge("veille_escalation_pending_deadlines",
                          "Deadlines this worker watches (its partitions), not yet met or escalated")
# Grouping nearby reports into cases (veille router grouping, streams/grouping.py): cases opened,
# reports joined, updates sent, shadows, severity raises, probes and forwarded joins, replays.
GROUPING = Counter("veille_grouping_events_total", "What the grouping worker did, by kind", ["kind"])
GROUPING_SKIPPED = Counter("veille_grouping_records_skipped_total",
                           "Records of the grouping topic the worker could not read (logged)")

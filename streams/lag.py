"""Consumer-group lag, read from the broker: end offsets minus committed offsets.

Computed out-of-band with the admin API so it is right even when the consumer itself
is stuck (the case the lag alert exists for).
"""

from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec


def group_lag(admin: AdminClient, group: str, timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """(topic, partition) -> messages not yet committed by ``group``."""
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                            request_timeout=timeout)[group]
    committed = {(tp.topic, tp.partition): tp.offset for tp in fut.result().topic_partitions}
    if not committed:
        return {}
    ends = admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest() for t, p in committed},
                              request_timeout=timeout)
    lag = {}
    for tp, f in ends.items():
        end = f.result().offset
        done = committed[(tp.topic, tp.partition)]
        lag[(tp.topic, tp.partition)] = max(0, end - max(done, 0)) if done >= 0 else end
    return lag


class CommittedLag:
    """Lag of ``group`` on ``topics`` read with a plain consumer that never joins the group.

    The router's stall watchdog uses this instead of ``group_lag``: librdkafka's admin client
    aborted the router (``rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt > 0'
    failed``, SIGABRT) when its requests timed out during broker restarts (faulthandler
    tracebacks from `make chaos`). ``committed()`` and watermarks do not go through that code.
    """

    def __init__(self, conf: dict[str, str | int | float | bool], group: str, topics: list[str]) -> None:
        from confluent_kafka import Consumer

        self.topics = topics
        self.consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False,
                                  "log_level": 0, "error_cb": lambda _err: None})

    def lag(self, timeout: float = 10.0) -> dict[tuple[str, int], int]:
        md = self.consumer.list_topics(timeout=timeout)
        tps = [TopicPartition(t, p) for t in self.topics if t in md.topics
               for p in md.topics[t].partitions]
        out = {}
        for tp in self.consumer.committed(tps, timeout=timeout):
            low, high = self.consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            out[(tp.topic, tp.partition)] = max(0, high - (tp.offset if tp.offset >= 0 else low))
        return out

    def close(self) -> None:
        self.consumer.close()


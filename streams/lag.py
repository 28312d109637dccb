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

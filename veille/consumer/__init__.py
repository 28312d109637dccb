"""The consumer runtime: one loop (``runner``) and one step interface (``steps``) for every
confluent-kafka consumer of the hub (the sink, the Open311 read model, the demo's reader)."""

from veille.consumer.runner import Assignment, Fenced, StepFactory, StreamRunner, check_error
from veille.consumer.steps import LastStep, MessageRejected, Offsets, ProcessingStep

__all__ = ["Assignment", "Fenced", "LastStep", "MessageRejected", "Offsets", "ProcessingStep", "StepFactory",
           "StreamRunner", "check_error"]

"""The one interface every step of a consumer implements (in the spirit of getsentry/arroyo's
``ProcessingStrategy``), and the handle the runner gives the chain to commit.

A consumer is a chain of steps assembled top to bottom in one place (``decode → batch →
write → commit`` for the sink). Each step takes work in ``submit``, does what is due in
``poll`` (a time-bound batch, a retry whose backoff elapsed) and hands its result to its
``next_step``, typed as this same interface. A step that cannot take more now raises
``MessageRejected``: the runner (``veille/consumer/runner.py``) then pauses the partitions,
keeps polling so the consumer stays in its group, and submits the same message again later.
Backpressure is handled there, once.

``join`` finishes what the step holds (within ``timeout`` seconds: a shutdown or a revocation)
and joins the next step; ``close`` says no more will be submitted. After an exception, the
runner neither joins nor commits: what was not committed is read again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from confluent_kafka import TopicPartition

T_contra = TypeVar("T_contra", contravariant=True)


class MessageRejected(Exception):
    """This step cannot take the item now; submit the same item again later."""


class ProcessingStep(Protocol[T_contra]):
    def submit(self, item: T_contra) -> None:
        """Take one item, or raise ``MessageRejected``."""

    def poll(self) -> None:
        """Do what is due (time-bound work, retries) and poll the next step."""

    def join(self, timeout: float | None = None) -> None:
        """Finish what is held, within ``timeout`` seconds, then join the next step."""

    def close(self) -> None:
        """No more submissions."""


class LastStep(Generic[T_contra]):
    """A step with no next one and nothing held: only ``submit`` to write (a read model's apply,
    a commit). ``poll``, ``join`` and ``close`` have nothing to do."""

    def submit(self, item: T_contra) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class Offsets(Protocol):
    """What a chain may ask of its consumer: commit, after the write; report its lag; pause
    some partitions (a step that is behind on part of its input only)."""

    def commit(self, offsets: Sequence[TopicPartition]) -> bool:
        """Synchronous; False when the commit failed (the batch will be read again)."""

    def report_lag(self) -> None:
        """Refresh the lag gauge from the committed offsets (while a write fails, nothing is
        committed, so the backlog shows)."""

    def hold(self, partitions: Sequence[TopicPartition]) -> None:
        """Pause these partitions only (one destination is behind; the others go on)."""

    def release(self, partitions: Sequence[TopicPartition]) -> None:
        """Resume partitions paused with :meth:`hold`."""

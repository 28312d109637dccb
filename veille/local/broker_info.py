"""What ``veille broker`` reports of the local broker: the record ``start`` writes to
``broker.json`` (``BrokerInfo``) and what ``status`` finds (``BrokerStatus``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BrokerInfo:
    """A running local broker, as recorded in ``broker.json``."""

    pid: int
    bootstrap: str
    port: int
    controller_port: int
    cluster_id: str
    kafka_version: str
    started_at: str  # ISO 8601, UTC
    startup_seconds: float | None  # process spawn -> first metadata answer
    formatted: bool = False  # this start formatted the storage (first start of a state dir)
    already_running: bool = False  # start() found it running and did nothing
    auth: bool = False  # SASL/SCRAM + ACLs on the client listener


@dataclass(frozen=True)
class BrokerStatus:
    running: bool  # the recorded PID is our java kafka.Kafka process
    answering: bool  # it answered a metadata request
    pid: int | None
    bootstrap: str | None
    broker_dir: str
    started_at: str | None = None

    def describe(self) -> str:
        if not self.running:
            where = f" (last address {self.bootstrap})" if self.bootstrap else ""
            return f"broker not running{where}; state in {self.broker_dir}"
        health = "answering" if self.answering else "NOT answering"
        return (
            f"broker running, pid {self.pid}, {self.bootstrap}, {health}, "
            f"since {self.started_at}; state in {self.broker_dir}"
        )

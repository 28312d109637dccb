"""The router's consumer-group membership and its stall watchdog's rules.

Static membership (``group.instance.id``): a router killed by ``kill -9`` or by its own
watchdog (``os._exit``) never sends a LeaveGroup; with a dynamic member id its successor
would wait for the dead member's session timeout before getting any partition, longer than
the stall window, and be killed in turn (the livelock of issue 9). With a stable instance
id the coordinator hands the dead member's partitions to its successor at once. The id is
derived as every consumer's (``veille.kafka.static_member_id``); the sink's settings are
beside it there, so that the sink needs nothing of the router's stage.

The watchdog only counts idle time while this worker has partitions assigned, from the
later of its last completed batch and its last assignment, and only against the backlog of
those partitions: joining or rebalancing is never a stall. A join that never completes
while the group has a backlog is bounded separately (``join_limit``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from veille.config import Settings
from veille.kafka import static_member_id

# Margin on top of the session timeout for a successor to rejoin, be assigned partitions
# and complete a first batch (metadata, JoinGroup/SyncGroup, offset fetch, first fetch).
REJOIN_MARGIN = 10.0


def instance_id(settings: Settings) -> str:
    """The router's group.instance.id: ``VEILLE_ROUTER_INSTANCE_ID`` or the derived default."""
    return settings.router_instance_id or static_member_id(settings, "router")


def rejoin_seconds(settings: Settings) -> float:
    """Longest a successor may legitimately need before its first batch."""
    return settings.router_session_seconds + REJOIN_MARGIN


def check_stall_window(settings: Settings) -> str | None:
    """An error message if the stall window is too short for a rejoin, else None."""
    if settings.router_session_seconds < 6:
        return (f"VEILLE_ROUTER_SESSION_SECONDS={settings.router_session_seconds:g} is below the "
                "broker's minimum session timeout (6 s by default): the router could never join")
    need = rejoin_seconds(settings)
    if settings.router_stall_seconds < need:
        return (f"VEILLE_ROUTER_STALL_SECONDS={settings.router_stall_seconds:g} is shorter than a "
                f"rejoin can take ({need:g} s = VEILLE_ROUTER_SESSION_SECONDS "
                f"{settings.router_session_seconds:g} + {REJOIN_MARGIN:g} s margin): the watchdog "
                "would stop routers that are only rejoining their group. Set it to at least "
                f"{need:g}, or lower VEILLE_ROUTER_SESSION_SECONDS.")
    return None


def faust_consumer_settings(settings: Settings) -> dict[str, Any]:
    """faust settings of the group membership (faust requires request > session timeout)."""
    session = settings.router_session_seconds
    return {
        "consumer_group_instance_id": instance_id(settings),
        "broker_session_timeout": session,
        "broker_heartbeat_interval": max(1.0, min(3.0, session / 5)),
        "broker_request_timeout": max(90.0, session + 30.0),
        # How long the coordinator waits for every member to rejoin during a rebalance.
        "broker_rebalance_timeout": max(30.0, session),
    }


@dataclass
class Progress:
    """What the faust worker tells the watchdog (thread-safe: the probe runs in a thread)."""

    last: float = field(default_factory=time.monotonic)  # last batch or assignment
    assigned: frozenset[tuple[str, int]] | None = None  # None: joining / rebalancing
    joining_since: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def batch_done(self) -> None:
        with self.lock:
            self.last = time.monotonic()

    def revoked(self) -> None:
        with self.lock:
            if self.assigned is not None:
                self.joining_since = time.monotonic()
            self.assigned = None

    def assigned_to(self, partitions: set[tuple[str, int]]) -> None:
        with self.lock:
            self.assigned = frozenset(partitions)
            self.last = time.monotonic()

    def snapshot(self) -> tuple[float, frozenset[tuple[str, int]] | None, float]:
        with self.lock:
            return self.last, self.assigned, self.joining_since


def stall_reason(progress: Progress, lags: dict[tuple[str, int], int], stall_seconds: float,
                 join_limit: float, now: float | None = None) -> str | None:
    """Why the router should exit for its supervisor to restart it, or None."""
    now = time.monotonic() if now is None else now
    last, assigned, joining_since = progress.snapshot()
    if assigned is None:
        waiting = sum(lags.values())
        joining = now - joining_since
        if waiting > 0 and joining > join_limit:
            return (f"still joining the consumer group after {joining:.0f}s with {waiting} "
                    "messages waiting")
        return None
    waiting = sum(lag for tp, lag in lags.items() if tp in assigned)
    idle = now - last
    if waiting > 0 and idle > stall_seconds:
        return f"no batch completed for {idle:.0f}s with {waiting} messages waiting on its partitions"
    return None

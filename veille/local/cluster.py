"""A local three-node Kafka cluster (KRaft, combined broker+controller nodes).

``veille broker start --nodes 3`` runs it with the production topic settings of the README:
replication factor 3, ``min.insync.replicas`` 2 (internal topics too), so that losing one
node loses nothing and blocks nobody, and losing two makes publishers fail loudly (not
enough in-sync replicas) instead of acknowledging writes that one disk holds.

Layout, under ``VEILLE_STATE_DIR/broker``:
  cluster.json                  nodes, ports, cluster id (the cluster's own record)
  broker.json                   bootstrap (all three nodes) + auth: what clients read
  admin-credentials.json        the superuser, shared by the three nodes (mode 0600)
  node-<id>/                    each node as a LocalBroker: data, logs, its own broker.json

Each node is a :class:`veille.local.broker.LocalBroker` whose directory is ``node-<id>``; the
cluster adds the shared cluster id, credentials and the quorum voters, and starts the three
processes before waiting for any (a node answers only once a controller quorum exists).
Heaps default to ``VEILLE_BROKER_HEAP`` (512m): three fit on the 2-core development machine.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veille.config import ADMIN_CREDENTIALS_FILE, BROKER_STATE_FILE, Settings
from veille.local.broker import STARTUP_TIMEOUT, LocalBroker
from veille.local.broker_config import BrokerError
from veille.local.broker_storage import random_cluster_id, read_admin_credentials
from veille.local.processes import free_ports, port_is_free
from veille.statedir import write_json, write_private

CLUSTER_FILE = "cluster.json"


def cluster_properties(node_id: int, voters: str, replicas: int = 3, min_isr: int = 2) -> dict[str, str]:
    """What a cluster node overrides in the single-node properties."""
    return {
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        # Leaders move back to their preferred node soon after it returns.
        "leader.imbalance.check.interval.seconds": "10",
    }


class ClusterNode(LocalBroker):
    """One node: a LocalBroker living in ``<broker dir>/node-<id>``."""

    def __init__(self, settings: Settings, node_id: int, root: Path) -> None:
        super().__init__(settings)
        self.node_id = node_id
        self._root = root

    @property
    def dir(self) -> Path:
        return self._root / f"node-{self.node_id}"


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    running: bool
    answering: bool
    pid: int | None
    bootstrap: str


class LocalCluster:
    def __init__(self, settings: Settings, nodes: int = 3) -> None:
        if nodes < 3:
            raise BrokerError("a local cluster has at least 3 nodes (replication factor 3, min ISR 2)")
        self.settings = settings
        self.root = settings.broker_dir
        recorded = self._record().get("nodes")
        self.size = int(recorded or nodes)
        self.nodes = [ClusterNode(settings, i, self.root) for i in range(1, self.size + 1)]

    @staticmethod
    def exists(settings: Settings) -> bool:
        return (settings.broker_dir / CLUSTER_FILE).exists()

    @property
    def bootstrap(self) -> str:
        ports = self._record().get("ports") or []
        return ",".join(f"127.0.0.1:{p}" for p in ports)

    def node(self, node_id: int) -> ClusterNode:
        return self.nodes[node_id - 1]

    def _record(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / CLUSTER_FILE).read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _prepare(self, auth: bool) -> dict[str, Any]:
        """Ports, cluster id and shared credentials, chosen once and kept across starts."""
        record = self._record()
        if record:
            return record
        if (self.root / "data").exists():
            raise BrokerError(f"{self.root} holds a single-node broker: use another VEILLE_STATE_DIR "
                              "for the cluster (or remove this one)")
        self.root.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * self.size)
        record = {"nodes": self.size, "ports": ports[:self.size], "controller_ports": ports[self.size:],
                  "cluster_id": random_cluster_id(), "auth": auth}
        # One superuser for every node (each formats its storage with it).
        LocalBroker(self.settings)._ensure_admin_credentials()
        write_json(self.root / CLUSTER_FILE, record)
        return record

    def _node_extra(self, record: dict[str, Any], node: ClusterNode) -> dict[str, str]:
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(record["controller_ports"], 1))
        return cluster_properties(node.node_id, voters)

    def _seed(self, record: dict[str, Any], node: ClusterNode) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        shared = self.root / ADMIN_CREDENTIALS_FILE
        if shared.exists() and not node.admin_credentials_file.exists():
            write_private(node.admin_credentials_file, shared.read_text())
        # The node's ports are the cluster's (the quorum voters name the controller ports).
        state = node._read_state()
        state.update({"cluster_id": record["cluster_id"], "port": record["ports"][node.node_id - 1],
                      "controller_port": record["controller_ports"][node.node_id - 1]})
        node._write_state(state)

    def start(self, timeout: float = STARTUP_TIMEOUT, *, die_with_parent: bool = False,
              auth: bool | None = None) -> str:
        """Start every node not running, then wait until each answers; returns the bootstrap."""
        use_auth = self.settings.broker_auth if auth is None else auth
        record = self._prepare(use_auth)
        for node in self.nodes:
            self.start_node(node.node_id, die_with_parent=die_with_parent, wait=False)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self.wait_node(node.node_id, max(1.0, deadline - time.monotonic()))
        self._publish(record)
        return self.bootstrap

    def start_node(self, node_id: int, *, die_with_parent: bool = False, wait: bool = True,
                   timeout: float = STARTUP_TIMEOUT) -> None:
        record = self._record() or self._prepare(self.settings.broker_auth)
        node = self.node(node_id)
        self._seed(record, node)
        port = record["ports"][node_id - 1]
        st = node.status()
        if not st.running:
            deadline = time.monotonic() + 10
            while not port_is_free(port) and time.monotonic() < deadline:
                time.sleep(0.1)
        node.start(port=port, die_with_parent=die_with_parent, auth=bool(record["auth"]),
                   extra_properties=self._node_extra(record, node), wait=False)
        if wait:
            self.wait_node(node_id, timeout)

    def wait_node(self, node_id: int, timeout: float) -> None:
        node = self.node(node_id)
        state = node._read_state()
        if not state.get("pid"):
            raise BrokerError(f"node {node_id} is not running")
        node._wait_answering(state["pid"], state["bootstrap"], timeout)

    def _publish(self, record: dict[str, Any]) -> None:
        """broker.json + admin credentials where every client looks (Settings.kafka_bootstrap)."""
        info = {"bootstrap": self.bootstrap, "nodes": self.size, "cluster_id": record["cluster_id"],
                "auth": record["auth"], "kafka_version": self.nodes[0].kafka_version,
                "replication_factor": 3, "min_insync_replicas": 2,
                "libs_dir": str(self.nodes[0].libs_dir)}
        write_json(self.root / BROKER_STATE_FILE, info)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> bool:
        return self.node(node_id).stop(timeout)

    def kill_node(self, node_id: int) -> bool:
        return self.node(node_id).kill()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node at once: one by one, the last ones would lose the controller quorum
        and wait for it until SIGKILL."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.nodes)) as pool:
            stopped = list(pool.map(lambda n: n.stop(timeout), self.nodes))
        return any(stopped)

    def kill(self) -> bool:
        return any([n.kill() for n in self.nodes])

    def status(self, timeout: float = 2.0) -> list[NodeStatus]:
        out = []
        ports = self._record().get("ports") or [0] * self.size
        for node in self.nodes:
            st = node.status(timeout)
            out.append(NodeStatus(node.node_id, st.running, st.answering, st.pid,
                                  f"127.0.0.1:{ports[node.node_id - 1]}"))
        return out

    def describe(self) -> str:
        lines = [f"{self.size}-node cluster, bootstrap {self.bootstrap}; state in {self.root}"]
        for st in self.status():
            health = ("answering" if st.answering else "NOT answering") if st.running else "stopped"
            lines.append(f"  node {st.node_id}: {st.bootstrap}, "
                         + (f"pid {st.pid}, {health}" if st.running else health))
        return "\n".join(lines)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def admin_of(settings: Settings) -> tuple[str, str] | None:
    return read_admin_credentials(settings.broker_dir)


# ----------------------------------------------------------------- `veille broker ...` for a cluster


def cmd_start(settings: Settings, nodes: int, timeout: float, auth: bool | None) -> int:
    cluster = LocalCluster(settings, nodes)
    began = time.monotonic()
    bootstrap = cluster.start(timeout=timeout, auth=auth)
    print(f"{cluster.size}-node cluster running: {bootstrap} ({time.monotonic() - began:.1f} s); "
          "replication factor 3, min.insync.replicas 2")
    print(cluster.describe())
    return 0


def cmd_stop(settings: Settings, timeout: float) -> int:
    stopped = LocalCluster(settings).stop(timeout)
    print("cluster stopped" if stopped else "cluster was not running")
    return 0


def cmd_restart(settings: Settings, timeout: float) -> int:
    """Rolling restart: one node at a time, each back before the next goes."""
    cluster = LocalCluster(settings)
    for node in cluster.nodes:
        cluster.stop_node(node.node_id, timeout)
        cluster.start_node(node.node_id)
    print(cluster.describe())
    return 0


def cmd_status(settings: Settings, as_json: bool) -> int:
    cluster = LocalCluster(settings)
    states = cluster.status()
    if as_json:
        print(json.dumps({"bootstrap": cluster.bootstrap, "nodes": [vars(s) for s in states]}))
    else:
        print(cluster.describe())
    return 0 if any(s.running for s in states) else 3

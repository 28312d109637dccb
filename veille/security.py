"""Who may do what on the hub's Kafka: SCRAM users, ACLs and client quotas.

``veille security provision`` (``veille/security_cli.py``) derives everything from the territory file:

* one SCRAM-SHA-512 user per municipality (``muni-<INSEE>``), per agency (``agency-<id>``)
  and per hub component (``router``, ``sink``, ``intake``, ``simulator``, ``deliver``), with random
  passwords kept in ``state_dir/credentials.json`` (mode 0600, the local credential store:
  copy them into the platform's secret store for a deployment);
* ACLs (the broker denies what no ACL allows): see :func:`acl_plan`, the single statement
  of the policy, tested without a broker;
* per-municipality quotas (``producer_byte_rate``, ``request_percentage``) so that one
  misbehaving publisher is throttled instead of starving the others.

Re-running is safe: existing users keep their password, existing ACLs are left as they are,
quotas already applied to this cluster with the same values are skipped. ``--rotate NAME``
gives a user a new password; its clients must be restarted with it (the old one stops
working at once for new connections). Provisioning only adds: ACLs of a municipality or
agency removed from the territory stay until deleted by hand.

Idempotent producers need no ``IdempotentWrite`` on the cluster: since Kafka 3.0 (KIP-679)
``WRITE`` on any topic is enough to get a producer id, and the tests check it on Kafka 4.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from veille.config import Settings
from veille.quotas import QuotaError, apply_quotas
from veille.statedir import write_private
from veille.topics import Topics

COMPONENTS = ("router", "sink", "intake", "simulator", "deliver", "notify", "pcs")
CREDENTIALS_FILE = "credentials.json"
SCRAM_ITERATIONS = 8192


class SecurityError(RuntimeError):
    """Provisioning could not be completed."""


def municipality_user(insee: str) -> str:
    return f"muni-{insee}"


def agency_user(agency_id: str) -> str:
    return f"agency-{agency_id}"


def agency_group_prefix(agency_id: str) -> str:
    """Consumer groups an agency may use: ``agency-<id>.<anything>``."""
    return f"agency-{agency_id}."


def principals(municipalities: Iterable[str], agencies: Iterable[str]) -> list[str]:
    return ([municipality_user(m) for m in sorted(municipalities)]
            + [agency_user(a) for a in sorted(agencies)] + list(COMPONENTS))


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``user`` may ``operation`` on ``resource`` ``name`` (literal or prefix)."""

    user: str
    resource: str  # topic | group | cluster
    name: str
    operation: str  # AclOperation name: READ, WRITE, DESCRIBE, CREATE, DESCRIBE_CONFIGS
    prefixed: bool = False

    def binding(self) -> AclBinding:
        return AclBinding(
            ResourceType[self.resource.upper()], self.name,
            ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL,
            f"User:{self.user}", "*", AclOperation[self.operation], AclPermissionType.ALLOW,
        )

    @classmethod
    def of(cls, binding: AclBinding) -> Grant:
        restype, operation = binding.restype, binding.operation
        assert isinstance(restype, ResourceType) and isinstance(operation, AclOperation)
        return cls(binding.principal.removeprefix("User:"), restype.name.lower(), binding.name,
                   operation.name, binding.resource_pattern_type == ResourcePatternType.PREFIXED)


def acl_plan(prefix: str, municipalities: Iterable[str], agencies: Iterable[str]) -> list[Grant]:
    """Every ACL of the hub for one deployment (topic prefix), sorted, without duplicates.

    READ and WRITE imply DESCRIBE on the broker; DESCRIBE is still listed for writers
    because librdkafka asks for the topic's metadata before its first write.
    """
    t = Topics(prefix)
    out: set[Grant] = set()

    def topic(user: str, name: str, *ops: str, prefixed: bool = False) -> None:
        out.update(Grant(user, "topic", name, op, prefixed) for op in ops)

    def group(user: str, name: str, prefixed: bool = False) -> None:
        out.add(Grant(user, "group", name, "READ", prefixed))

    intake_prefix = f"{prefix}.intake."
    for insee in municipalities:
        # Its own intake topic only: a municipality cannot publish in another's name.
        topic(municipality_user(insee), t.intake(insee), "WRITE", "DESCRIBE")
    for agency in agencies:
        user = agency_user(agency)
        topic(user, t.dispatch(agency), "READ", "DESCRIBE")
        group(user, agency_group_prefix(agency), prefixed=True)
        topic(user, t.status, "WRITE", "DESCRIBE")  # status updates of the incidents it handles

    # Router (faust app "<prefix>-router"): every source in, every routed output out, and its
    # own internal topics (table changelog, assignor leader topic), which faust creates.
    topic("router", intake_prefix, "READ", "DESCRIBE", prefixed=True)
    for name in (t.alerts, t.status):
        topic("router", name, "READ", "DESCRIBE")
    group("router", f"{prefix}-router")
    topic("router", f"{prefix}-router-", "CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS",
          prefixed=True)
    topic("router", f"{prefix}.dispatch.", "WRITE", "DESCRIBE", prefixed=True)
    for name in (t.routed, t.dead_letter, t.dead_letter_restricted):
        topic("router", name, "WRITE", "DESCRIBE")
    # The router's second app, "<prefix>-escalations" (veille router escalations, same principal):
    # reads the routing records back, keeps its tables in its own changelog topics.
    topic("router", t.routed, "READ")
    group("router", f"{prefix}-escalations")
    topic("router", f"{prefix}-escalations-", "CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS",
          prefixed=True)
    # Its third, "<prefix>-grouping" (veille router grouping, docs/grouping.md): the repartition
    # topic (reports with their contacts: the router alone reads and writes it, like dispatches)
    # and its table's changelog. It writes the dispatches and routing records of grouped reports.
    topic("router", t.grouping, "READ", "WRITE", "DESCRIBE")
    group("router", f"{prefix}-grouping")
    topic("router", f"{prefix}-grouping-", "CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS",
          prefixed=True)

    # Sink: routing records and delivery receipts in, its dead letters out.
    topic("sink", t.routed, "READ", "DESCRIBE")
    topic("sink", t.delivery, "READ", "DESCRIBE")
    topic("sink", t.pcs_cascade, "READ", "DESCRIBE")  # counts only: no register content
    group("sink", f"{prefix}.sink")
    topic("sink", t.dead_letter, "WRITE", "DESCRIBE")

    # The HTTP intake publishes on behalf of apps and town-hall tools, for any municipality
    # (it checks the municipality of each report itself); the simulator is a test harness
    # that does the same.
    for user in ("intake", "simulator"):
        topic(user, intake_prefix, "WRITE", "DESCRIBE", prefixed=True)
        for name in (t.alerts, t.status):
            topic(user, name, "WRITE", "DESCRIBE")
    # The deliverer reads every dispatch topic, writes its receipts, and the statuses Open311
    # bodies report back (as those bodies would; the router checks each dispatch id).
    topic("deliver", f"{prefix}.dispatch.", "READ", "DESCRIBE", prefixed=True)
    group("deliver", f"{prefix}.deliver")
    for name in (t.delivery, t.status):
        topic("deliver", name, "WRITE", "DESCRIBE")
    # The intake's Open311 read model reads the routing records (assigned partitions, no
    # consumer group, no committed offsets): the same personal-data-free view as the sink's.
    topic("intake", t.routed, "READ", "DESCRIBE")
    # The agencies' desk (producers/desk/) reads the same way every agency's dispatches (what the
    # personal-data rules give each body, shown to that body's accounts only) and the receipts.
    topic("intake", f"{prefix}.dispatch.", "READ", "DESCRIBE", prefixed=True)
    topic("intake", t.delivery, "READ", "DESCRIBE")
    # Consents to hear back hold contacts: the intake writes them (and the withdrawals of its
    # unsubscribe links), the notifier alone reads them and writes the tombstones of retention.
    topic("intake", t.notify_consent, "WRITE", "DESCRIBE")
    topic("notify", t.notify_consent, "READ", "WRITE", "DESCRIBE")
    topic("notify", t.routed, "READ", "DESCRIBE")
    # Its state changelog (ids, statuses, times; no contact): written and restored by it alone.
    topic("notify", t.notify_tracks, "READ", "WRITE", "DESCRIBE")
    group("notify", f"{prefix}.notify")
    # The PCS cascade (veille pcs worker, faust app "<prefix>-pcs"): routed alerts in, its own
    # topic of activations/notifications/checks (ids and counts, no register content) and its
    # tables' changelogs; the intake's representatives' page writes acknowledgements and checks.
    topic("pcs", t.routed, "READ", "DESCRIBE")
    topic("pcs", t.pcs_cascade, "READ", "WRITE", "DESCRIBE")
    group("pcs", f"{prefix}-pcs")
    topic("pcs", f"{prefix}-pcs-", "CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS", prefixed=True)
    topic("intake", t.pcs_cascade, "WRITE", "DESCRIBE")
    return sorted(out)


def quota_plan(settings: Settings, municipalities: Iterable[str]) -> dict[str, dict[str, float]]:
    """Client quotas per user: every municipality gets the same, nobody else has one."""
    values = {"producer_byte_rate": float(settings.municipality_producer_byte_rate),
              "request_percentage": float(settings.municipality_request_percentage)}
    return {municipality_user(m): dict(values) for m in sorted(municipalities)}


# --------------------------------------------------------------------------- credential store


@dataclass
class CredentialStore:
    """``state_dir/credentials.json``: passwords and what was applied where (mode 0600)."""

    path: Path
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    quotas: dict[str, Any] = field(default_factory=dict)  # {"cluster_id": ..., "applied": {...}}

    @classmethod
    def load(cls, state_dir: Path) -> CredentialStore:
        path = state_dir / CREDENTIALS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise SecurityError(f"{path}: unreadable credential store ({exc})") from exc
        return cls(path, dict(data.get("users", {})), dict(data.get("quotas", {})))

    def password(self, user: str) -> str:
        try:
            return self.users[user]["password"]
        except KeyError:
            raise SecurityError(f"no password for {user!r} in {self.path}: run "
                                "`veille security provision` first") from None

    def save(self) -> None:
        data = {"mechanism": "SCRAM-SHA-512", "users": self.users, "quotas": self.quotas}
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_credentials(settings: Settings) -> CredentialStore:
    return CredentialStore.load(settings.state_dir)


# --------------------------------------------------------------------------- provisioning


@dataclass
class ProvisionReport:
    users_created: list[str] = field(default_factory=list)
    users_reset: list[str] = field(default_factory=list)  # on the broker, password unknown here
    users_rotated: list[str] = field(default_factory=list)
    users_kept: int = 0
    acls_total: int = 0
    acls_added: int = 0
    quotas_applied: list[str] = field(default_factory=list)
    quotas_kept: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        lines = [
            f"users: {len(self.users_created)} created, {len(self.users_rotated)} rotated, "
            f"{len(self.users_reset)} reset, {self.users_kept} unchanged",
            f"ACLs: {self.acls_total} in the plan, {self.acls_added} added",
            f"quotas: {len(self.quotas_applied)} applied, {self.quotas_kept} unchanged",
        ]
        if self.users_reset:
            lines.append("reset (existed on the broker with a password not in the store): "
                         + ", ".join(self.users_reset))
        return "\n".join(lines) + f"\n({self.seconds:.1f} s)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _scram_users(admin: AdminClient, timeout: float) -> set[str]:
    try:
        future = admin.describe_user_scram_credentials(request_timeout=timeout)
        assert not isinstance(future, dict)  # no user list given: one future for all
        described = future.result()
    except KafkaException as exc:
        raise SecurityError(f"cannot list SCRAM users (are you a Kafka admin?): {exc}") from exc
    return {user for user, desc in described.items() if desc.scram_credential_infos}


def ensure_users(admin: AdminClient, store: CredentialStore, users: Sequence[str],
                 rotate: Iterable[str] = (), report: ProvisionReport | None = None,
                 timeout: float = 30.0) -> ProvisionReport:
    report = report or ProvisionReport()
    rotate = set(rotate)
    unknown = rotate - set(users)
    if unknown:
        raise SecurityError(f"--rotate: not a hub principal: {', '.join(sorted(unknown))}")
    on_broker = _scram_users(admin, timeout)
    upserts: list[UserScramCredentialAlteration] = []
    for user in users:
        known = user in store.users
        if user in rotate:
            report.users_rotated.append(user)
        elif known and user in on_broker:
            report.users_kept += 1
            continue
        elif known:  # the broker lost it (new cluster, same state dir): same password again
            report.users_created.append(user)
        elif user in on_broker:  # someone else's password: ours replaces it
            report.users_reset.append(user)
        else:
            report.users_created.append(user)
        if user in rotate or not known:
            store.users[user] = {"password": secrets.token_urlsafe(24), "updated_at": _now()}
        upserts.append(UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
            store.users[user]["password"].encode()))
    if upserts:
        store.save()  # before the broker knows them: a crash here only loses unused passwords
        for user, fut in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).items():
            try:
                fut.result()
            except KafkaException as exc:
                raise SecurityError(f"creating SCRAM user {user!r} failed: {exc}") from exc
    return report


def _acl_set(admin: AdminClient, timeout: float) -> set[Grant]:
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                           AclOperation.ANY, AclPermissionType.ANY)
    return {Grant.of(b) for b in admin.describe_acls(flt, request_timeout=timeout).result()
            if b.permission_type == AclPermissionType.ALLOW and b.host == "*"}


def current_acls(admin: AdminClient, timeout: float = 30.0) -> set[Grant]:
    """Every ALLOW ACL on the cluster (for any host ``*``), as Grants."""
    return _acl_set(admin, timeout)


def ensure_acls(admin: AdminClient, plan: Sequence[Grant], report: ProvisionReport | None = None,
                timeout: float = 30.0) -> ProvisionReport:
    report = report or ProvisionReport()
    missing = [g for g in plan if g not in _acl_set(admin, timeout)]
    report.acls_total = len(plan)
    if missing:
        for binding, fut in admin.create_acls([g.binding() for g in missing],
                                              request_timeout=timeout).items():
            try:
                fut.result()
            except KafkaException as exc:
                raise SecurityError(f"creating ACL {binding} failed: {exc}") from exc
    report.acls_added = len(missing)
    return report


def ensure_quotas(admin: AdminClient, settings: Settings, store: CredentialStore,
                  quotas: dict[str, dict[str, float]], report: ProvisionReport | None = None,
                  timeout: float = 30.0) -> ProvisionReport:
    report = report or ProvisionReport()
    cluster = admin.describe_cluster(request_timeout=timeout).result().cluster_id
    same_cluster = store.quotas.get("cluster_id") == cluster
    applied: dict[str, Any] = store.quotas.get("applied", {}) if same_cluster else {}
    todo = {user: values for user, values in quotas.items() if applied.get(user) != values}
    try:
        apply_quotas(settings, todo)
    except QuotaError as exc:
        raise SecurityError(str(exc)) from None
    store.quotas = {"cluster_id": cluster, "applied": {**applied, **todo}}
    store.save()
    report.quotas_applied = sorted(todo)
    report.quotas_kept = len(quotas) - len(todo)
    return report


def require_admin(admin: AdminClient, user: str, timeout: float = 30.0) -> None:
    """Refuse clearly, before any admin call, when the Kafka user may not administer the cluster.

    Asked first because some admin calls made by a non-admin do not fail cleanly:
    confluent-kafka 2.16.1 aborts the process (SIGABRT, ``munmap_chunk(): invalid pointer``)
    in ``describe_user_scram_credentials`` when the broker refuses it.
    """
    cluster = admin.describe_cluster(include_authorized_operations=True, request_timeout=timeout)
    # The broker lists the caller's cluster operations only to those allowed to DESCRIBE the
    # cluster: a non-admin gets None (seen on Kafka 4.1), an admin gets ALTER among them.
    allowed = cluster.result(timeout=timeout).authorized_operations or []
    if AclOperation.ALTER not in allowed and AclOperation.ALL not in allowed:
        raise SecurityError(
            f"Kafka user {user!r} may not administer the cluster (ALTER on the cluster is needed to "
            "create users and ACLs): run `veille security provision` as a Kafka admin "
            "(VEILLE_SASL_USERNAME/VEILLE_SASL_PASSWORD of a superuser)")


def provision(settings: Settings, *, rotate: Iterable[str] = (), quotas: bool = True,
              timeout: float = 30.0) -> ProvisionReport:
    """Users, ACLs and quotas of the territory of ``settings``, as its Kafka user (an admin)."""
    from veille.territory import load_territory

    began = time.monotonic()
    territory = load_territory(settings.territory_dir)
    municipalities, agencies = sorted(territory.municipalities), sorted(territory.agencies)
    admin = AdminClient(settings.kafka_client_config())
    require_admin(admin, settings.kafka_credentials().username or "(anonymous)", timeout)
    store = load_credentials(settings)
    report = ensure_users(admin, store, principals(municipalities, agencies), rotate, timeout=timeout)
    ensure_acls(admin, acl_plan(settings.topic_prefix, municipalities, agencies), report, timeout)
    if quotas:
        ensure_quotas(admin, settings, store, quota_plan(settings, municipalities), report, timeout)
    report.seconds = time.monotonic() - began
    return report


def settings_for(settings: Settings, user: str) -> Settings:
    """``settings`` connecting as hub principal ``user`` (password from the credential store)."""
    return settings.with_kafka_user(user, load_credentials(settings).password(user))


def user_env(settings: Settings, user: str) -> dict[str, str]:
    """Environment for a `veille ...` subprocess that must run as ``user``."""
    return {"VEILLE_SASL_USERNAME": user,
            "VEILLE_SASL_PASSWORD": load_credentials(settings).password(user)}

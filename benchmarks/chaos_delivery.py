"""``make chaos`` (delivery): a body's webhook down for minutes, then back.

On its own broker, one deliverer with the production retry settings (full-jitter backoff per
destination, capped at ``VEILLE_DELIVERY_RETRY_MAX_SECONDS``, 60 s) serves three local bodies
(webhook, e-mail, Open311: ``veille/local/demo_delivery.py``) while dispatches arrive at a
steady rate. The webhook answers 503 for ``--outage`` seconds, then 204. Printed: how long after
the webhook came back every dispatch had reached it, how many reached the two other bodies
during the outage (they must not wait behind it), duplicates (same dispatch id twice: allowed,
at-least-once), and the undelivered receipts the outage produced. Not a test: numbers depend
on the machine and on the jitter.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from benchmarks.delivery import produce_dispatches, router_dispatches
from benchmarks.pipeline import Child, hub_env
from benchmarks.results import say
from veille.config import Settings
from veille.deliver.settings import DeliverySettings
from veille.local.broker import LocalBroker
from veille.local.demo_delivery import LocalBodies
from veille.schemas import codec
from veille.territory.topics import territory_topic_specs
from veille.topics import Topics, ensure_topics


def _receipts(s: Settings) -> Counter[tuple[str, str]]:
    consumer = Consumer({**s.kafka_client_config(), "group.id": f"chaos-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([Topics(s.topic_prefix).delivery])
    out: Counter[tuple[str, str]] = Counter()
    idle = 0
    try:
        while idle < 6:
            msgs = consumer.consume(1000, timeout=0.5)
            idle = 0 if msgs else idle + 1
            for msg in msgs:
                if msg.error() is None:
                    v = codec.decode(msg.value()).value
                    out[(v["method"], v["outcome"])] += 1
    finally:
        consumer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos_delivery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=120.0, help="seconds the webhook answers 503")
    parser.add_argument("--rate", type=float, default=6.0, help="dispatches/s, all bodies together")
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="veille-chaos-delivery-"))
    settings = Settings().model_copy(update={"state_dir": state, "bootstrap_servers": "",
                                             "clickhouse_url": ""})
    broker = LocalBroker(settings)
    info = broker.start(die_with_parent=True)
    try:
        base = settings.model_copy(update={"bootstrap_servers": info.bootstrap})
        creds = base.kafka_credentials()
        base = base.model_copy(update={"security_protocol": creds.protocol, "sasl_username": creds.username,
                                       "sasl_password": SecretStr(creds.password)})
        with LocalBodies(base.territory_dir, state) as bodies:
            s = base.model_copy(update={"topic_prefix": "chaos", "territory_dir": bodies.target,
                                        "state_dir": state / "deliver"})
            ensure_topics(AdminClient(s.kafka_client_config()), territory_topic_specs(s))
            env = {**hub_env(s), **bodies.env, "VEILLE_SECURITY_PROTOCOL": creds.protocol,
                   "VEILLE_SASL_USERNAME": creds.username, "VEILLE_SASL_PASSWORD": creds.password,
                   "VEILLE_DELIVERY_UNDELIVERED_AFTER_MINUTES": "1"}
            (state / "logs").mkdir(exist_ok=True)
            child = Child("deliver", ["deliver", "run", "--metrics-port", "0"], env, state / "logs")
            try:
                child.wait_info(s.state_dir / "deliver.json")
                items = router_dispatches(s, max(3, int(args.rate * args.outage / 3)), seed=41)
                webhook_ids = {str(codec.decode(v).value["id"]) for t, _, v, _ in items
                               if t == Topics(s.topic_prefix).dispatch("mairie-35401")}
                bodies.receiver.status = 503
                say(f"webhook down for {args.outage:.0f}s; {len(items)} dispatches at {args.rate:.0f}/s")
                feeder = threading.Thread(target=produce_dispatches, args=(s, items, args.rate))
                feeder.start()
                time.sleep(args.outage)
                others_during = len(bodies.mailbox.messages) + len(bodies.geo.posted)
                feeder.join()
                bodies.receiver.status = 204
                back = time.monotonic()
                say("webhook back")
                deadline = back + 900
                while time.monotonic() < deadline:
                    got = {str(p["dispatch_id"]) for p in bodies.receiver.received}
                    if got >= webhook_ids:
                        break
                    time.sleep(0.2)
                recovered = time.monotonic() - back
                got_ids = [str(p["dispatch_id"]) for p in bodies.receiver.received]
                receipts = _receipts(s)
            finally:
                child.stop()
        others_total = len(items) - len(webhook_ids)
        print(f"\nwebhook down {args.outage:.0f}s while {len(items)} dispatches arrived "
              f"({len(webhook_ids)} for it):")
        print(f"  every one of them at the webhook {recovered:.1f}s after it came back "
              f"({'all' if set(got_ids) >= webhook_ids else 'NOT all'} delivered)")
        print(f"  the e-mail and Open311 bodies during the outage: {others_during} of the "
              f"{others_total} dispatches for them delivered (they do not wait behind the webhook)")
        print(f"  receipts: {dict(sorted(receipts.items()))}")
        cap = DeliverySettings().retry_max_seconds
        print(f"  backoff: full jitter per destination, capped at {cap:g} s "
              "(VEILLE_DELIVERY_RETRY_MAX_SECONDS)")
        return 0 if set(got_ids) >= webhook_ids else 1
    finally:
        broker.stop(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())

"""The console's counts from the cascade's events, on known events."""

from __future__ import annotations

from veille.pcs import events
from veille.pcs.summary import summarise


def test_counts_per_town() -> None:
    e = events
    evs = [
        e.ActivationEvent(activation="a1", at=0, municipality="35401", source="alert", source_id="x",
                          severity="Severe", representatives=("r1", "r2", "r3")),
        e.NotifiedEvent(activation="a1", at=1, notification="n1", municipality="35401", owner="r1",
                        target="r1", step=0, channel="email", outcome="delivered"),
        e.NotifiedEvent(activation="a1", at=1, notification="n2", municipality="35401", owner="r2",
                        target="r2", step=0, channel="sms", outcome="failed"),
        e.NotifiedEvent(activation="a1", at=1, notification="n3", municipality="35401", owner="r3",
                        target="r3", step=0, channel="email", outcome="delivered"),
        e.NotifiedEvent(activation="a1", at=2, notification="n4", municipality="35401", owner="r3",
                        target="cellule", step=1, channel="email", outcome="delivered"),
        e.AckEvent(activation="a1", at=3, owner="r1", by="r1"),
        e.CheckEvent(activation="a1", at=3, owner="r1", person="p1", status=e.CheckStatus.absent),
        e.CheckEvent(activation="a1", at=4, owner="r1", person="p1", status=e.CheckStatus.seen),
        e.CheckEvent(activation="a1", at=4, owner="r1", person="p2", status=e.CheckStatus.needs_help),
        e.AckEvent(activation="zz", at=3, owner="r1", by="r1"),  # unknown activation: ignored
    ]
    counts = summarise(evs)["35401"].counts({"r1": 2, "r2": 4, "r3": 1})
    assert counts == {"activations": 1, "representatives_notified": 3, "representatives_reached": 2,
                      "representatives_acknowledged": 1, "persons_checked": 2, "persons_ok": 1,
                      "persons_need_help": 1, "persons_absent": 0,
                      "persons_not_reached": 5, "escalated_to_cell": 1}

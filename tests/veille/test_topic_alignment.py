"""Aligning topic configs never weakens durability (veille.topics, without Kafka)."""

from __future__ import annotations

import pytest

from veille.topics import TopicSpec, _not_lowered


def test_min_insync_replicas_is_never_lowered(caplog: pytest.LogCaptureFixture) -> None:
    spec = TopicSpec("t.intake.35401", 3, 1, {"min.insync.replicas": "1", "retention.ms": "1000"})
    # A router started without VEILLE_MIN_INSYNC_REPLICAS on a cluster set up with 2.
    assert _not_lowered(spec, {"min.insync.replicas": "2"}) == {"retention.ms": "1000"}
    assert "keeping min.insync.replicas=2" in caplog.text
    assert _not_lowered(spec, {"min.insync.replicas": "1"}) == spec.config
    raised = TopicSpec("t", 3, 3, {"min.insync.replicas": "2"})
    assert _not_lowered(raised, {"min.insync.replicas": "1"}) == {"min.insync.replicas": "2"}
    assert _not_lowered(raised, {}) == {"min.insync.replicas": "2"}

"""Take-back's victim trimming (`_minimize`) skips re-evicting and re-placing for a trial whose victims
cannot free the gang's need in its domain. With `VALIDATE_SKIPS` every skipped trial is redone anyway and
must fail, and every trial redone must find the room the check predicted (a zone's room counts the nodes
of its racks: a check that counted only a domain's own members let every zone-level trial through); the
clusters are the engine benchmark's full ones (every GPU used by preemptible gangs of 20
queues), small, where trimming does remove victims (skipping every trial fails this test)."""

from __future__ import annotations

import pytest

from scheduler.actions.common import takeback
from tests.benchmod import load


def _engine():  # type: ignore[no-untyped-def]
    return load("engine")


@pytest.mark.parametrize(("nodes", "gangs", "seed"), [(60, 20, 7), (120, 40, 7), (120, 40, 8), (200, 60, 9)])
def test_skipped_trials_would_fail(nodes: int, gangs: int, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine()
    plain = engine.run_size(nodes, gangs, seed, full=True)
    monkeypatch.setattr(takeback, "VALIDATE_SKIPS", True)
    checked = engine.run_size(nodes, gangs, seed, full=True)
    assert plain["evicted"] > 0
    assert (checked["pods_placed"], checked["evicted"]) == (plain["pods_placed"], plain["evicted"])

"""run_session: the one function that runs a scheduling cycle's actions over one snapshot.

The daemon, `simulate`, `replay` and the debug API's `Simulate` all call it. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping

from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.gcpause import paused_gc
from scheduler.framework.record import SessionRecord
from scheduler.framework.registry import REGISTRY
from scheduler.framework.session import Session


def run_session(
    snapshot: Snapshot,
    config: SchedulerConfig,
    now: float,
    cycle: int = 0,
    hold: Mapping[str, str] | None = None,
) -> SessionRecord:
    """Open a session, run the configured actions in order, return the record.

    `hold` maps job keys to why they sit this cycle out (the daemon's bind backoff). The record's
    `commits` list what the binder must apply, in order; `decisions` say why for every job."""
    actions = [REGISTRY.action(name) for name in config.actions]
    with paused_gc():
        session = Session(snapshot, config, now=now, cycle=cycle, hold=hold)
        for act in actions:
            act(session)
        session.close()
    return session.record

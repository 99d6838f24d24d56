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
    pod_budget: int | None = None,
) -> SessionRecord:
    """Open a session, run the configured actions in order, return the record.

    `hold` maps job keys to why they sit this cycle out (the daemon's bind backoff). `pod_budget` (the
    daemon's) ends the cycle once allocate has placed that many pods: the record's `deferred` lists the
    jobs left untried and the actions after allocate do not run (take-back and stale-gang eviction run in
    the cycle that decides the backlog's last slice). The record's `commits` list what the binder must
    apply, in order; `decisions` say why for every job tried."""
    actions = [(name, REGISTRY.action(name)) for name in config.actions]
    with paused_gc():
        session = Session(snapshot, config, now=now, cycle=cycle, hold=hold, pod_budget=pod_budget)
        for i, (_, act) in enumerate(actions):
            act(session)
            if session.record.deferred:
                session.record.actions = tuple(name for name, _ in actions[: i + 1])
                break
        session.close()
    return session.record

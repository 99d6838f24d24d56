"""Preempt: a gang takes room from lower-priority preemptible gangs of its own queue."""

from __future__ import annotations

from scheduler.actions.common.takeback import Rules, run_takeback
from scheduler.framework.jobs import Job
from scheduler.framework.registry import action
from scheduler.framework.session import Session


def _victim(session: Session, preemptor: Job, victim: Job) -> str | None:
    if victim.queue != preemptor.queue:
        return "in another queue (that is reclaim's)"
    if not session.preemptible(victim):
        return "non-preemptible"
    if victim.priority >= preemptor.priority:
        return "not of lower priority"
    return None


@action("preempt")
def preempt(session: Session) -> None:
    run_takeback(session, Rules("preempt", _victim), lambda s, j: None)

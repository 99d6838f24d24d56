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
    # the group key is what `_victim` reads of a victim
    rules = Rules("preempt", _victim, group=lambda s, v: (v.queue, s.preemptible(v), v.priority))
    run_takeback(session, rules, lambda s, j: None)

"""Consolidate: a gang that fits nowhere moves running preemptible gangs out of its way, only when every
one of them is re-placed elsewhere in the same statement (their re-created pods land there next)."""

from __future__ import annotations

from scheduler.actions.common.takeback import Rules, run_takeback
from scheduler.framework.jobs import Job
from scheduler.framework.registry import action
from scheduler.framework.session import Session


def _victim(session: Session, preemptor: Job, victim: Job) -> str | None:
    if not session.preemptible(victim):
        return "non-preemptible"
    if not all(p.controlled for p in victim.bound):
        return "has pods no controller would re-create"
    return None


@action("consolidate")
def consolidate(session: Session) -> None:
    run_takeback(session, Rules("consolidate", _victim, replace_victims=True), lambda s, j: None)

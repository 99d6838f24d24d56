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


def _group(session: Session, victim: Job) -> tuple[bool, bool]:
    """What `_victim` reads of a victim."""
    return session.preemptible(victim), all(p.controlled for p in victim.bound)


def _eligible(session: Session, job: Job) -> str | None:
    """Moving gangs frees no capacity: the cluster's idle room must hold the gang for it to help."""
    table = session.table
    idle = list(table.cluster.free)
    for rel in table.releasing.values():
        for i, v in enumerate(rel):
            idle[i] -= v
    need: dict[int, int] = {}
    for p in job.pending:
        for i, v in table.sparse_known(p.request):
            need[i] = need.get(i, 0) + v
    if any(idle[i] < v for i, v in need.items()):
        return "the cluster's idle capacity is smaller than the gang: moving others cannot make room"
    return None


@action("consolidate")
def consolidate(session: Session) -> None:
    rules = Rules("consolidate", _victim, replace_victims=True, group=_group)
    run_takeback(session, rules, _eligible)

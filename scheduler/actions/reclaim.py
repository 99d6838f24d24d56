"""Reclaim: a gang of a queue below its fair share takes room from preemptible gangs of queues above
theirs, never taking a victim queue below its fair share nor its own queue above its share."""

from __future__ import annotations

from scheduler.actions.common.takeback import Rules, run_takeback
from scheduler.actions.common.victims import Unit
from scheduler.api.resources import format_quantity
from scheduler.framework.jobs import Job
from scheduler.framework.queues import QUEUE_DIMS, QueueNode, is_under_fair_share, share_ratio
from scheduler.framework.registry import action
from scheduler.framework.session import Session

_EPS = 1e-9


def _path(session: Session, queue: str) -> list[QueueNode]:
    node = session.queues.nodes.get(queue)
    return node.path() if node is not None else []


def _eligible(session: Session, job: Job) -> str | None:
    path = _path(session, job.queue)
    if not path:
        return f"queue {job.queue} is unknown"
    leaf = path[-1]
    if not is_under_fair_share(leaf):
        return f"queue {job.queue} is not below its fair share"
    need: dict[str, float] = {}
    for p in job.pending:
        for dim in QUEUE_DIMS:
            need[dim] = need.get(dim, 0.0) + p.request.get(dim)
    for n in path:
        for dim, v in need.items():
            if v and n.allocated.get(dim, 0.0) + v > n.fair_share.get(dim, 0.0) + _EPS:
                return f"reclaim would take queue {n.name} above its fair share"
    return None


def _victim(session: Session, preemptor: Job, victim: Job) -> str | None:
    if victim.queue == preemptor.queue:
        return "in the gang's own queue (that is preempt's)"
    if not session.preemptible(victim):
        return "non-preemptible"
    ours = {id(n) for n in _path(session, preemptor.queue)}
    theirs = [n for n in _path(session, victim.queue) if id(n) not in ours]
    if not theirs or not any(share_ratio(n) > 1.0 + _EPS for n in theirs):
        return "its queue is not above its fair share"
    return None


def _after_evict(session: Session, preemptor: Job, unit: Unit) -> str | None:
    """After the eviction (already applied to the queues' usage) each victim queue must still be at or
    above its fair share: on its dominant resource, as `share_ratio` measures being over it for `_victim`.
    A resource the queue uses less than its share of (cpu on a GPU cluster, typically) does not make every
    eviction "take it below": KAI's fair-share strategy likewise asks only that the victim queue be over
    its share in some resource."""
    ours = {id(n) for n in _path(session, preemptor.queue)}
    for n in _path(session, unit.job.queue):
        if id(n) not in ours and share_ratio(n) + _EPS < 1.0:
            return f"reclaim would take queue {n.name} below its fair share"
    return None


def _after_place(session: Session, preemptor: Job) -> str | None:
    for n in _path(session, preemptor.queue):
        for dim in QUEUE_DIMS:
            used, fair = n.allocated.get(dim, 0.0), n.fair_share.get(dim, 0.0)
            if used > fair + _EPS and any(p.request.get(dim) for p in preemptor.pending):
                return (
                    f"reclaim would take queue {n.name} above its fair share "
                    f"({format_quantity(dim, int(used))} of {format_quantity(dim, int(fair))} {dim})"
                )
    return None


@action("reclaim")
def reclaim(session: Session) -> None:
    # the group key is what `_victim` reads of a victim
    rules = Rules("reclaim", _victim, _after_evict, _after_place, group=lambda s, v: (v.queue, s.preemptible(v)))
    run_takeback(session, rules, _eligible)

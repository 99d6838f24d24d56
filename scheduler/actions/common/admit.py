"""Queue admission for one gang's minimum, checked before any placement is tried (allocate and
take-back alike): the queue's limits, and KAI's rule that non-preemptible work runs only in quota."""

from __future__ import annotations

from scheduler.actions.common.gang import GroupPlan, PlacementError
from scheduler.api.queue import UNLIMITED
from scheduler.api.reasons import Reason
from scheduler.api.resources import format_quantity
from scheduler.framework.jobs import Job
from scheduler.framework.queues import QUEUE_DIMS
from scheduler.framework.session import Session

_EPS = 1e-9


def admit(session: Session, job: Job, gp: GroupPlan) -> None:
    """Raise PlacementError when the queue may not take the gang's minimum."""
    head = session.headroom(job.queue)
    for i, left in sorted(head.items()):
        if gp.need_vec[i] > left + _EPS:
            dim = session.table.dims[i]
            need = format_quantity(dim, gp.need_vec[i])
            room = format_quantity(dim, max(0, int(left)))
            raise PlacementError(
                Reason.OVER_LIMIT,
                f"queue {job.queue} (or a parent) would exceed its {dim} limit: the gang needs {need} {dim}, "
                f"{room} {dim} left under the limit",
            )
    if session.preemptible(job):
        return
    used_by = session.nonpreemptible_used()
    index = session.table.dim_index
    node = session.queues.nodes.get(job.queue)
    while node is not None:
        for dim in QUEUE_DIMS:
            quota = node.queue.resource(dim).quota
            at = index.get(dim)
            want = gp.need_vec[at] if at is not None else 0
            if want <= 0 or quota == UNLIMITED:
                continue
            used = sum(v.get(dim, 0.0) for q, v in used_by.items() if _under(session, q, node.name))
            if used + want > quota + _EPS:
                raise PlacementError(
                    Reason.NON_PREEMPTIBLE_OVER_QUOTA,
                    f"the gang is non-preemptible (priority {job.priority}) and may run only within queue "
                    f"{node.name}'s quota: it needs {format_quantity(dim, want)} {dim}, and non-preemptible work "
                    f"already uses {format_quantity(dim, int(used))} of its {format_quantity(dim, quota)} {dim}; "
                    "raise the queue's quota, or make the gang preemptible (a priority class below 100 or the "
                    "label kai.scheduler/preemptibility: preemptible)",
                )
        node = node.parent


def _under(session: Session, leaf: str, ancestor: str) -> bool:
    node = session.queues.nodes.get(leaf)
    return node is not None and any(n.name == ancestor for n in node.path())

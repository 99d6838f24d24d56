"""Stale-gang eviction: a gang running below its minimum for longer than the grace period is evicted
whole (its running half holds resources and serves nothing).

When a gang is first seen below its minimum the session records the time (`record.stale`, persisted on
the PodGroup by the backend, so a restart keeps counting); once it is whole again the mark is cleared. A
gang whose missing members this cycle placed is not stale."""

from __future__ import annotations

from scheduler.actions.common.victims import live_pods
from scheduler.framework.jobs import Group, Job, leaf_minimum
from scheduler.framework.registry import action
from scheduler.framework.session import Session


def _below_minimum(session: Session, job: Job) -> bool:
    """Fewer pods run than the gang needs (counting what this cycle placed for it): a leaf below its
    minMember, or fewer satisfied children than minSubGroup (all of them when it is unset)."""
    decision = session.record.decisions.get(job.key)
    placed = {pod for pod, _ in decision.pods} if decision is not None else set()

    def satisfied(g: Group) -> bool:
        if g.is_leaf():
            have = sum(1 for p in g.bound if not p.deleting and p.key not in session.gone)
            have += sum(1 for p in g.pending if p.key in placed)
            return have >= leaf_minimum(g)
        need = g.min_sub_group if g.min_sub_group is not None else len(g.children)
        return sum(1 for c in g.children if satisfied(c)) >= need

    return not satisfied(job.root)


@action("stalegangeviction")
def stale_gang_eviction(session: Session) -> None:
    grace = session.config.stale_gang_grace_seconds
    for key in sorted(session.running_gangs):
        job = session.running_gangs[key]
        pg = job.pod_group
        if pg is None:
            continue
        # a gang one of whose pods has succeeded is finishing, not stale: its members end apart (KAI's rule)
        finishing = key in session.snapshot.finished
        stale = not finishing and _below_minimum(session, job) and bool(live_pods(session, job))
        if not stale:
            if pg.stale_since is not None:
                session.record.stale[key] = None
            continue
        since = pg.stale_since
        if since is None:
            session.record.stale[key] = session.now
            since = session.now
        if grace < 0:
            continue
        if session.now - since < grace:
            session.record.wake_at(since + grace)
            continue
        stmt = session.statement(job)
        stmt.evict_many([p for p in live_pods(session, job) if p.node_name in session.table.by_name], "stalegang")
        stmt.commit()
        session.record.stale[key] = None

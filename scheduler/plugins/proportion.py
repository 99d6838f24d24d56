"""Proportion: queue usage, fair share (KAI's rule), queue order, queue validity and limits.

Fair share, per resource, top-down: every queue first gets deserved = min(quota, requested); what is
left goes to queues by priority, highest first, and inside one priority by overQuotaWeight in
water-filling rounds, never beyond what a queue requests or its limit. Children divide their parent's
share the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scheduler.api.pod import Pod
from scheduler.api.queue import UNLIMITED
from scheduler.api.resources import Resources
from scheduler.framework.plugin import Plugin
from scheduler.framework.queues import QUEUE_DIMS, QueueNode, QueueTree, is_under_fair_share, share_ratio
from scheduler.framework.record import QueueShare
from scheduler.framework.registry import plugin

if TYPE_CHECKING:
    from scheduler.framework.session import Session

_EPS = 1e-9


def compute_fair_share(tree: QueueTree, total: Mapping[str, float]) -> None:
    """Requested and allocated must be set on leaves first; they are summed upwards here."""
    for root in tree.roots:
        _sum_up(root)
    for dim in QUEUE_DIMS:
        _divide(tree.roots, total.get(dim, 0.0), dim)


def _sum_up(node: QueueNode) -> None:
    for child in node.children:
        _sum_up(child)
        for dim in QUEUE_DIMS:
            node.allocated[dim] = node.allocated.get(dim, 0.0) + child.allocated.get(dim, 0.0)
            node.requested[dim] = node.requested.get(dim, 0.0) + child.requested.get(dim, 0.0)


def _cap(node: QueueNode, dim: str) -> float:
    limit = node.queue.resource(dim).limit
    req = node.requested.get(dim, 0.0)
    return req if limit == UNLIMITED else min(req, float(limit))


def _divide(siblings: list[QueueNode], available: float, dim: str) -> None:
    share = {id(n): 0.0 for n in siblings}
    remaining = max(available, 0.0)
    # 1. deserved = min(quota, requested), higher priority first when capacity is short
    for prio in sorted({n.queue.priority for n in siblings}, reverse=True):
        tier = [n for n in siblings if n.queue.priority == prio]
        want = {}
        for n in tier:
            quota = n.queue.resource(dim).quota
            q = _cap(n, dim) if quota == UNLIMITED else min(float(quota), _cap(n, dim))
            want[id(n)] = max(q, 0.0)
        total_want = sum(want.values())
        scale = 1.0 if total_want <= remaining or total_want <= 0 else remaining / total_want
        for n in tier:
            share[id(n)] = want[id(n)] * scale
            n.deserved[dim] = want[id(n)] * scale
        remaining = max(0.0, remaining - total_want * scale)  # float rounding must not go below zero
    # 2. the remainder by priority, then overQuotaWeight water-filling
    for prio in sorted({n.queue.priority for n in siblings}, reverse=True):
        active = [n for n in siblings if n.queue.priority == prio]
        while remaining > _EPS:
            active = [
                n for n in active if _cap(n, dim) - share[id(n)] > _EPS and n.queue.resource(dim).over_quota_weight > 0
            ]
            if not active:
                break
            weights = sum(n.queue.resource(dim).over_quota_weight for n in active)
            given = 0.0
            for n in active:
                offer = remaining * n.queue.resource(dim).over_quota_weight / weights
                take = min(offer, _cap(n, dim) - share[id(n)])
                share[id(n)] += take
                given += take
            remaining -= given
            if given <= _EPS:
                break
    for n in siblings:
        n.fair_share[dim] = share[id(n)]
        _divide(n.children, share[id(n)], dim)


def queue_order_key(node: QueueNode) -> tuple[tuple[int, int, float, str, str], ...]:
    """Hierarchical: compare parents first. Per level: under fair share first, then higher priority,
    then smaller share of its fair share (DRF), then age, then name."""
    key = []
    for n in node.path():
        if n.level_key is None:
            n.level_key = (
                0 if is_under_fair_share(n) else 1,
                -n.queue.priority,
                share_ratio(n),
                n.queue.creation,
                n.name,
            )
        key.append(n.level_key)
    return tuple(key)


@plugin("proportion")
class Proportion(Plugin):
    """Queue usage moves with every placement and eviction (also inside trials, through the handlers),
    so queue order and limits always see the statement's state; fair share is computed once at open."""

    name = "proportion"

    def open(self, session: Session) -> None:
        """Allocated (our bound pods) and requested (allocated + pending) per leaf, then fair share."""
        # (job, namespace, request) -> (its queue and every ancestor, the amounts queues count of it)
        self._charges: dict[tuple[str, str, Resources], tuple[list[QueueNode], list[tuple[str, float]]]] = {}
        queues, snapshot, config = session.queues, session.snapshot, session.config
        group_queue = {job.key: job.queue for job in session.jobs if job.pod_group is not None}
        for key, pg in snapshot.pod_groups.items():
            group_queue.setdefault(key, pg.queue or "")
        # summed as integers per queue, then charged once per queue: exact in any order (one Resources or
        # one float update per running gang was most of this method's cost)
        ours_used: dict[str, int] = {}
        per_queue: dict[str, dict[str, int]] = {}
        for (group, label), used in snapshot.usage.items():
            queue = (group_queue.get(group) if group else None) or label or config.default_queue
            acc = per_queue.get(queue)
            if acc is None:
                acc = per_queue[queue] = {}
            for name, v in used.items:
                ours_used[name] = ours_used.get(name, 0) + v
                acc[name] = acc.get(name, 0) + v
        for queue in sorted(per_queue):
            node = queues.nodes.get(queue)
            if node is None:
                continue
            acc = per_queue[queue]
            for dim in QUEUE_DIMS:
                v = acc.get(dim, 0)
                node.allocated[dim] = node.allocated.get(dim, 0.0) + v
                node.requested[dim] = node.requested.get(dim, 0.0) + v
        for job in session.jobs:
            node = queues.nodes.get(job.queue)
            if node is None or node.children:
                continue
            # pod by pod: requests are whole numbers, so the sums are exact in any grouping (counting alike
            # requests first cost a Counter per job, most of this loop for a backlog of single pods)
            for pod in job.pending:
                req = pod.request
                for dim in QUEUE_DIMS:
                    node.requested[dim] = node.requested.get(dim, 0.0) + req.get(dim)
        # capacity for queues: ready nodes' allocatable minus what other schedulers' pods use
        total: dict[str, float] = {}
        other: dict[str, int] = {}  # what pods of other schedulers use: every pod's usage less ours
        for node_name, u in snapshot.node_used.items():
            if node_name in snapshot.nodes:
                for name, v in u.items:
                    other[name] = other.get(name, 0) + v
        for name, v in ours_used.items():
            other[name] = other.get(name, 0) - v
        table = session.table
        for i, kube_node in enumerate(table.nodes):
            if table.schedulable[i] and not kube_node.unschedulable:
                for dim in QUEUE_DIMS:
                    total[dim] = total.get(dim, 0.0) + kube_node.allocatable.get(dim)
        for dim in QUEUE_DIMS:
            total[dim] = max(0.0, total.get(dim, 0.0) - max(0, other.get(dim, 0)))
        compute_fair_share(queues, total)

        def res(values: dict[str, float]) -> Resources:
            return Resources.of((d, round(v)) for d, v in values.items())

        for name, node in queues.nodes.items():
            session.record.queues[name] = QueueShare(
                name=name,
                parent=node.queue.parent,
                fair_share=res(node.fair_share),
                allocated=res(node.allocated),
                requested=res(node.requested),
                deserved=res(node.deserved),
                under_fair_share=is_under_fair_share(node),
            )

    def on_allocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        self._charge(session, pods, 1)

    def on_deallocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        self._charge(session, pods, -1)

    def _charge(self, session: Session, pods: Sequence[Pod], sign: int) -> None:
        """One call is pods of one job with one request: charge the job's queue and every ancestor."""
        pod = pods[0]
        key = (pod.group_key or pod.name, pod.namespace, pod.request)
        entry = self._charges.get(key)
        if entry is None:
            node = session.queues.nodes.get(session.queue_of(pod))
            path = node.path() if node is not None else []
            for qn in path:
                for dim in QUEUE_DIMS:
                    qn.allocated.setdefault(dim, 0.0)
            amounts = [(dim, float(q)) for dim in QUEUE_DIMS if (q := pod.request.get(dim))]
            entry = self._charges[key] = (path, amounts)
        path, amounts = entry
        n = sign * len(pods)
        for qn in path:
            alloc = qn.allocated
            for dim, v in amounts:
                alloc[dim] += v * n
            qn.level_key = None

    def queue_order(self, session: Session, queue: QueueNode) -> tuple[Any, ...]:
        return queue_order_key(queue)

    def queue_headroom(self, session: Session, queue: str) -> dict[str, float]:
        """What the queue (and every ancestor) may still take before its limit."""
        out: dict[str, float] = {}
        node = session.queues.nodes.get(queue)
        while node is not None:
            for dim in QUEUE_DIMS:
                limit = node.queue.resource(dim).limit
                if limit != UNLIMITED:
                    left = limit - node.allocated.get(dim, 0.0)
                    out[dim] = min(out.get(dim, left), left)
            node = node.parent
        return out

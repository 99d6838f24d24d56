"""Queue hierarchy, fair share (KAI's rule) and queue order.

Fair share, per resource, top-down: every queue first gets deserved = min(quota, requested); what is
left goes to queues by priority, highest first, and inside one priority by overQuotaWeight in
water-filling rounds, never beyond what a queue requests or its limit. Children divide their parent's
share the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler.api.queue import UNLIMITED, Queue
from scheduler.api.reasons import Reason
from scheduler.api.resources import CPU, GPU, MEMORY

QUEUE_DIMS = (GPU, CPU, MEMORY)  # the resources queues account for
_EPS = 1e-9


@dataclass(slots=True, eq=False)
class QueueNode:
    queue: Queue
    children: list[QueueNode] = field(default_factory=list)
    parent: QueueNode | None = None
    problem: tuple[Reason, str] | None = None
    allocated: dict[str, float] = field(default_factory=dict)
    requested: dict[str, float] = field(default_factory=dict)
    deserved: dict[str, float] = field(default_factory=dict)
    fair_share: dict[str, float] = field(default_factory=dict)
    level_key: tuple[int, int, float, str, str] | None = None  # cached; cleared when allocated changes

    @property
    def name(self) -> str:
        return self.queue.name

    def path(self) -> list[QueueNode]:
        out: list[QueueNode] = []
        cur: QueueNode | None = self
        while cur is not None:
            out.append(cur)
            cur = cur.parent
        return out[::-1]


class QueueTree:
    def __init__(self, queues: Mapping[str, Queue]) -> None:
        self.nodes = {name: QueueNode(q) for name, q in sorted(queues.items())}
        self.roots: list[QueueNode] = []
        for name, node in self.nodes.items():
            q = node.queue
            if q.problems:
                node.problem = (Reason.INVALID_QUEUE, f"queue {name} is invalid: {'; '.join(q.problems)}")
            cycle = self._cycle(name)
            if cycle:
                node.problem = (
                    Reason.QUEUE_CYCLE,
                    "queue parents form a cycle: " + " -> ".join(cycle) + "; fix spec.parentQueue",
                )
                continue
            if q.parent and q.parent not in self.nodes:
                node.problem = (
                    Reason.QUEUE_DOES_NOT_EXIST,
                    f"queue {name} names parentQueue {q.parent!r}, which does not exist",
                )
                continue
            if q.parent:
                node.parent = self.nodes[q.parent]
                node.parent.children.append(node)
            else:
                self.roots.append(node)
        # problems are inherited: a job in a queue under a broken parent cannot be accounted for
        for node in self.nodes.values():
            for anc in node.path()[:-1]:
                if node.problem is None and anc.problem is not None:
                    node.problem = (anc.problem[0], f"parent of queue {node.name}: {anc.problem[1]}")

    def _cycle(self, name: str) -> list[str]:
        seen = [name]
        cur = self.nodes[name].queue.parent
        while cur and cur in self.nodes:
            if cur in seen:
                return [*seen[seen.index(cur) :], cur] if cur == name else []
            seen.append(cur)
            cur = self.nodes[cur].queue.parent
        return []

    def check_leaf(self, name: str) -> tuple[Reason, str] | None:
        node = self.nodes.get(name)
        if node is None:
            return (
                Reason.QUEUE_DOES_NOT_EXIST,
                f"queue {name!r} does not exist; create a Queue named {name} or set the kai.scheduler/queue "
                "label (or PodGroup spec.queue) to an existing leaf queue",
            )
        if node.problem is not None:
            return node.problem
        if node.children:
            kids = ", ".join(c.name for c in node.children)
            return (
                Reason.QUEUE_NOT_LEAF,
                f"queue {name} has child queues ({kids}); only leaf queues take jobs: submit to one of them",
            )
        return None

    def compute_fair_share(self, total: Mapping[str, float]) -> None:
        """Requested and allocated must be set on leaves first; they are summed upwards here."""
        for root in self.roots:
            _sum_up(root)
        for dim in QUEUE_DIMS:
            _divide(self.roots, total.get(dim, 0.0), dim)


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


def share_ratio(node: QueueNode) -> float:
    """allocated / fair share on the dominant resource (what the queue uses most of its share)."""
    ratio = 0.0
    for dim in QUEUE_DIMS:
        alloc = node.allocated.get(dim, 0.0)
        if alloc <= 0:
            continue
        fair = node.fair_share.get(dim, 0.0)
        ratio = max(ratio, alloc / fair if fair > _EPS else float("inf"))
    return ratio


def is_under_fair_share(node: QueueNode) -> bool:
    """No resource is used beyond its fair share, and some share is still unused (a zero share is never
    'under': such a queue gets only what the others leave)."""
    return share_ratio(node) < 1.0 and any(
        node.fair_share.get(d, 0.0) - node.allocated.get(d, 0.0) > _EPS for d in QUEUE_DIMS
    )


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

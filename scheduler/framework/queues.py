"""The queue hierarchy of one session: structure, validity and per-cycle usage (plugins fill usage and
fair share; the session orders queues through the plugins' queue_order hooks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.api.queue import Queue, QueueResource
from scheduler.api.reasons import Reason
from scheduler.api.resources import CPU, GPU, MEMORY
from scheduler.framework.config import SchedulerConfig

QUEUE_DIMS = (GPU, CPU, MEMORY)  # the resources queues account for
_EPS = 1e-9


def implicit_queues(queues: Mapping[str, Queue], config: SchedulerConfig) -> dict[str, Queue]:
    """The cluster's queues, plus default-parent-queue -> default-queue when it has none, as KAI's
    install creates them, so pods without a queue label are schedulable out of the box."""
    out = dict(queues)
    if config.implicit_default_queue and config.default_queue not in out:
        parent = config.default_parent_queue if config.default_parent_queue not in out else ""
        if parent:
            everything = QueueResource(quota=-1, limit=-1, over_quota_weight=1.0)
            out[parent] = Queue(parent, "", resources=tuple((d, everything) for d in sorted(QUEUE_DIMS)))
        # quota -1 (all it requests is deserved): non-preemptible work runs in it out of the box
        unlimited = QueueResource(quota=-1, limit=-1, over_quota_weight=1.0)
        out[config.default_queue] = Queue(
            config.default_queue, parent, resources=tuple((d, unlimited) for d in sorted(QUEUE_DIMS))
        )
    return out


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
    level_key: tuple[Any, ...] | None = None  # cached order key; cleared when allocated changes

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

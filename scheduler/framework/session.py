"""Session: one scheduling cycle over one snapshot. Pure: no I/O, no clock (`now` is given)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from scheduler.api.labels import PREEMPTIBILITY_LABEL
from scheduler.api.pod import Pod, PodConstraints
from scheduler.api.queue import Queue, QueueResource
from scheduler.api.resources import Resources
from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.jobs import Job, build_jobs
from scheduler.framework.nodes import NodeTable, TopologyTree
from scheduler.framework.queues import QueueTree
from scheduler.framework.record import JobFacts, QueueShare, SessionRecord
from scheduler.plugins.predicates import Predicates
from scheduler.plugins.proportion import QUEUE_DIMS, compute_fair_share, is_under_fair_share

# KAI's built-in priority classes, used when the cluster does not define them
BUILTIN_PRIORITIES = {"train": 50, "build-preemptible": 75, "build": 100, "inference": 125}
NON_PREEMPTIBLE_PRIORITY = 100  # KAI: priority >= 100 is non-preemptible unless labelled otherwise


def implicit_queues(queues: Mapping[str, Queue], config: SchedulerConfig) -> dict[str, Queue]:
    out = dict(queues)
    if config.implicit_default_queue and config.default_queue not in out:
        parent = config.default_parent_queue if config.default_parent_queue not in out else ""
        if parent:
            out[parent] = Queue(parent, "")
        unlimited = QueueResource(quota=0, limit=-1, over_quota_weight=1.0)
        out[config.default_queue] = Queue(
            config.default_queue, parent, resources=tuple((d, unlimited) for d in sorted(QUEUE_DIMS))
        )
    return out


class Session:
    def __init__(
        self,
        snapshot: Snapshot,
        config: SchedulerConfig,
        now: float,
        cycle: int = 0,
        hold: Mapping[str, str] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.hold = dict(hold or {})  # job key -> why it sits this cycle out (bind backoff)
        self.config = config
        self.now = now
        self.record = SessionRecord(cycle=cycle, now=now)
        nodes = [snapshot.nodes[n] for n in sorted(snapshot.nodes)]
        self.table = NodeTable(nodes, dict(snapshot.node_used), snapshot.pending_dims, config.node_order)
        self._labels = [n.label_map() for n in nodes]
        self.jobs: list[Job] = build_jobs(snapshot, config.default_queue)
        for job in self.jobs:
            job.priority = self.priority_of(job.priority_class, job.pending[0] if job.pending else None)
        self.queues = QueueTree(implicit_queues(snapshot.queues, config))
        self.predicates = Predicates()
        self._trees: dict[str, TopologyTree] = {}
        self._eligible: dict[PodConstraints, tuple[bytearray, dict[str, int], int]] = {}
        self._account_queues()

    def close(self) -> None:
        """Write the facts every sink reads (job priority and preemptibility) into the record."""
        for job in self.jobs:
            self.record.jobs[job.key] = JobFacts(job.priority, self.preemptible(job), job.queue)

    def preemptible(self, job: Job) -> bool:
        """spec.preemptibility, else the kai.scheduler/preemptibility label of a pod, else priority < 100."""
        value = job.pod_group.preemptibility if job.pod_group is not None else ""
        if not value:
            value = next(
                (p.label(PREEMPTIBILITY_LABEL) or "" for p in job.pending + job.bound if p.label(PREEMPTIBILITY_LABEL)),
                "",
            )
        if value in ("preemptible", "non-preemptible"):
            return value == "preemptible"
        return job.priority < NON_PREEMPTIBLE_PRIORITY

    # --- priorities -------------------------------------------------------------------------
    def priority_of(self, class_name: str, pod: Pod | None) -> int:
        if class_name:
            pc = self.snapshot.priority_classes.get(class_name)
            if pc is not None:
                return pc.value
            if class_name in BUILTIN_PRIORITIES:
                return BUILTIN_PRIORITIES[class_name]
        if pod is not None and pod.priority is not None:
            return pod.priority
        defaults = [pc.value for pc in self.snapshot.priority_classes.values() if pc.global_default]
        return max(defaults) if defaults else self.config.default_priority

    # --- topology ---------------------------------------------------------------------------
    def tree(self, name: str) -> TopologyTree | None:
        tree = self._trees.get(name)
        if tree is None:
            topo = self.snapshot.topologies.get(name)
            if topo is None:
                return None
            tree = self._trees[name] = self.table.build_topology(topo)
        return tree

    # --- static feasibility -----------------------------------------------------------------
    def eligible(self, c: PodConstraints) -> tuple[bytearray, dict[str, int], int]:
        """(mask over nodes, count of nodes failing per reason, number eligible), memoised per cycle."""
        hit = self._eligible.get(c)
        if hit is not None:
            return hit
        mask = bytearray(len(self.table.nodes))
        reasons: dict[str, int] = {}
        count = 0
        filt = self.predicates.node_filter
        for i, node in enumerate(self.table.nodes):
            why = filt(c, node, self._labels[i])
            if why is None:
                mask[i] = 1
                count += 1
            else:
                reasons[why] = reasons.get(why, 0) + 1
        hit = self._eligible[c] = (mask, reasons, count)
        return hit

    # --- queues -----------------------------------------------------------------------------
    def _account_queues(self) -> None:
        """Allocated (our bound pods) and requested (allocated + pending) per leaf, then fair share."""
        group_queue = {job.key: job.queue for job in self.jobs if job.pod_group is not None}
        for key, pg in self.snapshot.pod_groups.items():
            group_queue.setdefault(key, pg.queue or "")
        ours_used = Resources()
        for (group, label), used in sorted(self.snapshot.usage.items()):
            ours_used = ours_used + used
            queue = (group_queue.get(group) if group else None) or label or self.config.default_queue
            node = self.queues.nodes.get(queue)
            if node is None:
                continue
            for dim in QUEUE_DIMS:
                v = used.get(dim)
                node.allocated[dim] = node.allocated.get(dim, 0.0) + v
                node.requested[dim] = node.requested.get(dim, 0.0) + v
        for job in self.jobs:
            node = self.queues.nodes.get(job.queue)
            if node is None or node.children:
                continue
            counts = Counter(pod.request for pod in job.pending)
            for req, n in counts.items():
                for dim in QUEUE_DIMS:
                    node.requested[dim] = node.requested.get(dim, 0.0) + req.get(dim) * n
        # capacity for queues: ready nodes' allocatable minus what other schedulers' pods use
        total: dict[str, float] = {}
        other = (
            sum((u for n, u in self.snapshot.node_used.items() if n in self.snapshot.nodes), Resources()) - ours_used
        )
        for i, kube_node in enumerate(self.table.nodes):
            if self.table.schedulable[i] and not kube_node.unschedulable:
                for dim in QUEUE_DIMS:
                    total[dim] = total.get(dim, 0.0) + kube_node.allocatable.get(dim)
        for dim in QUEUE_DIMS:
            total[dim] = max(0.0, total.get(dim, 0.0) - max(0, other.get(dim)))
        compute_fair_share(self.queues, total)
        self.snapshot_queue_shares()

    def snapshot_queue_shares(self) -> None:
        def res(values: dict[str, float]) -> Resources:
            return Resources.of((d, round(v)) for d, v in values.items())

        for name, node in self.queues.nodes.items():
            self.record.queues[name] = QueueShare(
                name=name,
                parent=node.queue.parent,
                fair_share=res(node.fair_share),
                allocated=res(node.allocated),
                requested=res(node.requested),
                deserved=res(node.deserved),
                under_fair_share=is_under_fair_share(node),
            )

    def charge(self, queue: str, request: Resources) -> None:
        node = self.queues.nodes.get(queue)
        while node is not None:
            for dim in QUEUE_DIMS:
                node.allocated[dim] = node.allocated.get(dim, 0.0) + request.get(dim)
            node.level_key = None
            node = node.parent

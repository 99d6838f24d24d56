"""Session: one scheduling cycle over one snapshot. Pure: no I/O, no clock (`now` is given).

The session owns the per-cycle state (node table, topology trees, jobs, queue tree) and combines the
configured plugins' hooks, each one documented way (framework/plugin.py). It imports no plugin."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from scheduler.api.labels import PREEMPTIBILITY_LABEL, QUEUE_LABEL
from scheduler.api.pod import Pod, PodConstraints
from scheduler.api.reasons import Reason
from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.jobs import Job, build_jobs, build_running_gangs, build_running_jobs
from scheduler.framework.nodes import NAME_ORDER, NodeTable, TopologyTree
from scheduler.framework.plugin import HOOKS, Plugin, Problem, overrides
from scheduler.framework.queues import QueueTree, implicit_queues
from scheduler.framework.record import JobFacts, SessionRecord
from scheduler.framework.registry import REGISTRY
from scheduler.framework.statement import Statement

# KAI's built-in priority classes, used when the cluster does not define them
BUILTIN_PRIORITIES = {"train": 50, "build-preemptible": 75, "build": 100, "inference": 125}
NON_PREEMPTIBLE_PRIORITY = 100  # KAI: priority >= 100 is non-preemptible unless labelled otherwise
T = TypeVar("T")


class Session:
    def __init__(
        self,
        snapshot: Snapshot,
        config: SchedulerConfig,
        now: float,
        cycle: int = 0,
        hold: Mapping[str, str] | None = None,
        pod_budget: int | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.hold = dict(hold or {})  # job key -> why it sits this cycle out (bind backoff)
        self.pod_budget = pod_budget  # allocate stops trying jobs once it has placed this many pods
        self.config = config
        self.now = now
        self.record = SessionRecord(cycle=cycle, now=now, actions=tuple(config.actions))
        self.plugins: list[Plugin] = [REGISTRY.plugin(name)() for name in config.plugins]
        self._hooks: dict[str, list[Plugin]] = {h: [p for p in self.plugins if overrides(p, h)] for h in HOOKS}
        order = next((o for p in self._hooks["node_order"] if (o := p.node_order(self)) is not None), NAME_ORDER)
        nodes = [snapshot.nodes[n] for n in sorted(snapshot.nodes)]
        self.table = NodeTable(nodes, dict(snapshot.node_used), snapshot.pending_dims, order)
        self._labels = [n.label_map() for n in nodes]
        self.jobs: list[Job] = build_jobs(snapshot, config.default_queue)
        for job in self.jobs:
            job.priority = self.priority_of(job.priority_class, job.pending[0] if job.pending else None)
        self._running_gangs: dict[str, Job] | None = None
        self._running: dict[str, Job] | None = None
        self.gone: set[str] = set()  # pods evicted by a committed statement of this session
        self._np_used: dict[str, dict[str, float]] | None = None  # queue -> non-preemptible usage
        self._preemptible: dict[str, bool] = {}  # job key -> answer (fixed for the session)
        self._min_runtime: dict[tuple[str, bool], float] = {}  # (queue, reclaim) -> answer (fixed too)
        self.queues = QueueTree(implicit_queues(snapshot.queues, config))
        self._job_queue = {job.key: job.queue for job in self.jobs}
        self._by_key = {job.key: job for job in self.jobs}
        self._trees: dict[str, TopologyTree] = {}
        self._eligible: dict[PodConstraints, tuple[bytearray, dict[str, int], int]] = {}
        self._shared: dict[str, object] = {}
        for p in self._hooks["open"]:
            p.open(self)
        # asked once, after open: a plugin with nothing to track this cycle is not called per placement
        self._handlers_alloc = [p for p in self._hooks["on_allocate"] if p.follows_placements()]
        self._handlers_dealloc = [p for p in self._hooks["on_deallocate"] if p.follows_placements()]

    @property
    def running_gangs(self) -> dict[str, Job]:
        """The jobs with a PodGroup and a running pod (a job with pending pods too is the same object)."""
        if self._running_gangs is None:
            self._running_gangs = build_running_gangs(self.snapshot, self.config.default_queue, self.jobs)
            self._set_priorities(self._running_gangs.values())
        return self._running_gangs

    @property
    def running(self) -> dict[str, Job]:
        """Every job with a running pod: what take-back may evict (`running_gangs`, then each running pod
        without a PodGroup as a gang of one). Built when first asked: a cycle with nothing pending never asks
        (at 50,000 running pods the singles' jobs and their facts were two thirds of an idle cycle)."""
        if self._running is None:
            gangs = self.running_gangs
            self._running = build_running_jobs(self.snapshot, self.config.default_queue, gangs)
            self._set_priorities(j for k, j in self._running.items() if gangs.get(k) is not j)
        return self._running

    def _set_priorities(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            if not job.pending:
                job.priority = self.priority_of(job.priority_class, job.bound[0] if job.bound else None)

    def shared(self, name: str, make: Callable[[], T]) -> T:
        """Per-cycle state made once by whichever asks first: plugins share what several read (which pods
        run where) through the session, never reaching into each other, and each applies its own placement
        hooks to it, so what `make` builds must take the same update twice harmlessly; take-back's actions
        share their victim pool the same way. Each owner states its validity where it defines it."""
        hit = self._shared.get(name)
        if hit is None:
            hit = self._shared[name] = make()
        return cast(T, hit)

    def close(self) -> None:
        """Write the facts every sink reads (job priority and preemptibility) into the record: of every job
        with pending pods but those a sliced cycle left untried, every running gang with a PodGroup (whose
        status the sinks write), and, when take-back looked at them, every running job."""
        running = self._running if self._running is not None else self.running_gangs
        untried = set(self.record.deferred)
        pending = [j for j in self.jobs if j.key not in untried] if untried else self.jobs
        for job in [*pending, *(j for j in running.values() if not j.pending)]:
            self.record.jobs[job.key] = JobFacts(job.priority, self.preemptible(job), job.queue)
        for p in self._hooks["close"]:
            p.close(self)

    def node_labels(self, node: int) -> dict[str, str]:
        """A node's labels by table index (one dict per node per session: do not modify it)."""
        return self._labels[node]

    def hooked(self, hook: str) -> list[Plugin]:
        """The plugins that override `hook`, in configuration order."""
        return list(self._hooks[hook])

    def has_hook(self, hook: str) -> bool:
        return bool(self._hooks[hook])

    # --- facts ------------------------------------------------------------------------------
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

    def preemptible(self, job: Job) -> bool:
        """spec.preemptibility, else the kai.scheduler/preemptibility label of a pod, else priority < 100.
        Memoised per job key: a job's PodGroup, pods' labels and priority do not change in a session."""
        hit = self._preemptible.get(job.key)
        if hit is not None:
            return hit
        value = job.pod_group.preemptibility if job.pod_group is not None else ""
        if not value:  # the first pod labelled, pending ones first (asked of every running job: no copies)
            groups = (job.root,) if not job.root.children else job.root.walk()
            value = next((v for g in groups for p in g.pending if (v := p.label(PREEMPTIBILITY_LABEL))), "")
            value = value or next((v for g in groups for p in g.bound if (v := p.label(PREEMPTIBILITY_LABEL))), "")
        if value in ("preemptible", "non-preemptible"):
            hit = value == "preemptible"
        else:
            hit = job.priority < NON_PREEMPTIBLE_PRIORITY
        self._preemptible[job.key] = hit
        return hit

    def min_runtime(self, queue: str, reclaim: bool) -> float:
        """reclaimMinRuntime / preemptMinRuntime of the queue, else of its nearest ancestor that sets it,
        else 0; -1 means never. Memoised: the queue tree is fixed for the session, and take-back asks it
        of every running gang."""
        hit = self._min_runtime.get((queue, reclaim))
        if hit is not None:
            return hit
        value: float | None = None
        node = self.queues.nodes.get(queue)
        while node is not None and value is None:
            value = node.queue.reclaim_min_runtime if reclaim else node.queue.preempt_min_runtime
            node = node.parent
        hit = self._min_runtime[(queue, reclaim)] = value if value is not None else 0.0
        return hit

    def started(self, job: Job) -> float | None:
        """When the job's running pods started (the earliest status.startTime), None if none says."""
        times = [p.start_time for p in job.bound if p.start_time is not None]
        return min(times) if times else None

    def nonpreemptible_used(self) -> dict[str, dict[str, float]]:
        """Per leaf queue, what non-preemptible jobs use (running, and placed by this session so far)."""
        if self._np_used is None:
            self._np_used = {}
            for job in self.running.values():
                if not self.preemptible(job):
                    self._charge_np(job.queue, [p for p in job.bound if not p.deleting], 1)
        return self._np_used

    def _charge_np(self, queue: str, pods: Sequence[Pod], sign: int) -> None:
        assert self._np_used is not None
        used = self._np_used.setdefault(queue, {})
        for p in pods:
            for name, v in p.request.items:
                used[name] = used.get(name, 0.0) + sign * v

    def committed(self, job_key: str, placed: Sequence[Pod], evicted: Sequence[Pod]) -> None:
        """A statement was committed: keep the non-preemptible usage in step (when it is being tracked)."""
        if self._np_used is None:
            return
        job = self._by_key.get(job_key)
        if job is not None and placed and not self.preemptible(job):
            self._charge_np(job.queue, placed, 1)
        for p in evicted:
            victim = self.running.get(p.group_key or p.key)
            if victim is not None and not self.preemptible(victim):
                self._charge_np(victim.queue, [p], -1)

    def queue_of(self, pod: Pod) -> str:
        """The queue a pod's usage counts against: its job's, its PodGroup's, its label, else the default."""
        key = pod.group_key or pod.key
        queue = self._job_queue.get(key)
        if queue is None and pod.group_key:
            pg = self.snapshot.pod_groups.get(pod.group_key)
            queue = pg.queue if pg is not None else None
        return queue or pod.label(QUEUE_LABEL) or self.config.default_queue

    # --- topology ---------------------------------------------------------------------------
    def tree(self, name: str) -> TopologyTree | None:
        tree = self._trees.get(name)
        if tree is None:
            topo = self.snapshot.topologies.get(name)
            if topo is None:
                return None
            tree = self._trees[name] = self.table.build_topology(topo)
        return tree

    # --- feasibility ------------------------------------------------------------------------
    def eligible(self, c: PodConstraints) -> tuple[bytearray, dict[str, int], int]:
        """(mask over nodes, count of nodes failing per reason, number eligible), memoised per cycle:
        static filters depend only on the constraints and the node, never on placements."""
        hit = self._eligible.get(c)
        if hit is not None:
            return hit
        mask = bytearray(len(self.table.nodes))
        reasons: dict[str, int] = {}
        count = 0
        filters = [p.node_filter for p in self._hooks["node_filter"]]
        for i, node in enumerate(self.table.nodes):
            labels = self._labels[i]
            why = None
            for f in filters:
                why = f(c, node, labels)
                if why is not None:
                    break
            if why is None:
                mask[i] = 1
                count += 1
            else:
                reasons[why] = reasons.get(why, 0) + 1
        hit = self._eligible[c] = (mask, reasons, count)
        return hit

    def dynamic_filters(self, pod: Pod) -> list[Plugin]:
        """The plugins whose pod_filter must see this pod (empty: the batch path applies)."""
        return [p for p in self._hooks["pod_filter"] if p.pod_filter_applies(pod)]

    def pod_filter(self, plugins: Sequence[Plugin], pod: Pod, node: int) -> str | None:
        for p in plugins:
            why = p.pod_filter(self, pod, node)
            if why is not None:
                return why
        return None

    def scorers(self, pod: Pod) -> list[Plugin]:
        """The plugins whose node_score tells nodes apart for this pod (empty: node order alone)."""
        return [p for p in self._hooks["node_score"] if p.node_score_applies(pod)]

    def node_score(self, pod: Pod, node: int, plugins: Sequence[Plugin] | None = None) -> int:
        return sum(p.node_score(self, pod, node) for p in (self._hooks["node_score"] if plugins is None else plugins))

    # --- orders -----------------------------------------------------------------------------
    def queue_order_key(self, name: str) -> tuple[Any, ...]:
        node = self.queues.nodes[name]
        return (*(p.queue_order(self, node) for p in self._hooks["queue_order"]), name)

    def queue_order_fn(self) -> Callable[[str], tuple[Any, ...]]:
        """`queue_order_key` as one closure, for the hot loop that picks the next queue every job."""
        fns = [p.queue_order for p in self._hooks["queue_order"]]
        nodes = self.queues.nodes
        if len(fns) == 1:
            f = fns[0]
            return lambda name: (f(self, nodes[name]), name)
        return self.queue_order_key

    def job_order_key(self, job: Job) -> tuple[Any, ...]:
        """Plugins' keys first (priority: higher first), then older, then by name."""
        return (*(p.job_order(self, job) for p in self._hooks["job_order"]), job.creation, job.key)

    def victim_order_key(self, victim: Job) -> tuple[Any, ...]:
        return (*(p.victim_order(self, victim) for p in self._hooks["victim_order"]), victim.creation, victim.key)

    def victim_allowed(self, preemptor: Job, victim: Job) -> bool:
        return all(p.victim_filter(self, preemptor, victim) for p in self._hooks["victim_filter"])

    # --- admission --------------------------------------------------------------------------
    def job_problem(self, job: Job) -> Problem | None:
        """Why a job cannot be tried at all this cycle: bad input, bind backoff, or a plugin's check."""
        if job.problem is not None:
            return job.problem
        if job.key in self.hold:
            return Reason.BIND_BACKOFF, self.hold[job.key]
        for pod in job.pending:
            if pod.problems:
                code, message = pod.problems[0]
                return Reason(code), f"pod {pod.name}: {message}"
        problem = self.queues.check_leaf(job.queue)  # structural: a job needs an existing leaf queue
        if problem is not None:
            return problem
        for p in self._hooks["job_valid"]:
            problem = p.job_valid(self, job)
            if problem is not None:
                return problem
        return None

    def headroom(self, queue: str) -> dict[int, float]:
        """How much more the queue may take, by table dim (absent: unlimited); the smallest answer wins."""
        out: dict[int, float] = {}
        for p in self._hooks["queue_headroom"]:
            for dim, left in p.queue_headroom(self, queue).items():
                i = self.table.dim_index.get(dim)
                if i is not None:
                    out[i] = min(out.get(i, left), left)
        return out

    # --- statements -------------------------------------------------------------------------
    def statement(self, job: Job) -> Statement:
        return Statement(self, job.key, job.pod_group is not None)

    def allocated(self, pods: Sequence[Pod], node: int) -> None:
        for p in self._handlers_alloc:
            p.on_allocate(self, pods, node)

    def deallocated(self, pods: Sequence[Pod], node: int) -> None:
        for p in self._handlers_dealloc:
            p.on_deallocate(self, pods, node)

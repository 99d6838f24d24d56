"""The plugin protocol: typed hooks, each combined by the session in one documented way.

A plugin subclasses `Plugin` and overrides only the hooks it has; the session calls a hook only on the
plugins that override it, in the configuration's plugin order. How each hook is combined:

- `open(session)`, `close(session)`: every plugin, in order (per-cycle state; facts into the record).
- `node_filter(c, node, labels)`: static; the first reason wins; memoised per distinct `PodConstraints`
  per cycle, so it must depend on nothing but its arguments.
- `pod_filter(session, pod, node)`: dynamic, sees the open statement; the first reason wins. Called only
  for pods some plugin's `pod_filter_applies` claims, so pods without such constraints keep the batch path.
- `node_order(session)`: the first plugin that returns a `NodeOrder` orders nodes (asked before the node
  table is built: the sorted indexes keep its key).
- `node_score(session, pod, node)`: scores sum; a higher total goes first, `node_order` breaks ties.
  Called only for pods some plugin's `node_score_applies` claims (the others keep the batch path). Both
  `*_applies` hooks may read only the pod's labels, namespace, constraints and extras (and state fixed at
  `open`): their answers are memoised per distinct such pod for the cycle.
- `rejection_reason(why)`: the reason code a gang waits with when this plugin's `pod_filter` said `why`.
- `rejection_lasts(why)`: whether that rejection holds for the rest of a pod class placed pod by pod (only
  placements in between); True lets the gang's later members skip the node without asking again.
- `queue_order`, `job_order`, `victim_order`: sort keys concatenated in plugin order, so the first plugin
  that tells two apart decides (first non-zero comparator wins).
- `job_valid(session, job)`: the first problem wins; the job waits with it.
- `queue_headroom(session, queue)`: per resource the smallest wins (how much more the queue may take).
- `victim_filter(session, preemptor, victim)`: every plugin must allow the victim.
- `on_allocate`, `on_deallocate(session, pods, node)`: every plugin whose `follows_placements()` (asked
  once after `open`) is true, in order; one call is pods of one job with one request on one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from scheduler.api.node import Node
from scheduler.api.pod import Pod, PodConstraints
from scheduler.api.reasons import Reason

if TYPE_CHECKING:
    from scheduler.framework.jobs import Job
    from scheduler.framework.nodes import NodeOrder
    from scheduler.framework.queues import QueueNode
    from scheduler.framework.session import Session

OrderKey = tuple[Any, ...]
Problem = tuple[Reason, str]

HOOKS = (
    "open",
    "close",
    "node_filter",
    "pod_filter",
    "node_order",
    "node_score",
    "queue_order",
    "job_order",
    "job_valid",
    "queue_headroom",
    "victim_filter",
    "victim_order",
    "on_allocate",
    "on_deallocate",
)


class Plugin:
    """Base class; every hook here is a no-op that the session never calls unless overridden."""

    name: ClassVar[str] = ""

    def open(self, session: Session) -> None:
        """Session start: build per-cycle state (the snapshot and the node table are ready)."""

    def close(self, session: Session) -> None:
        """Session end: write derived facts into `session.record`."""

    def node_filter(self, c: PodConstraints, node: Node, labels: dict[str, str]) -> str | None:
        """Why the node can never take a pod with these constraints this cycle, or None."""
        return None

    def pod_filter_applies(self, pod: Pod) -> bool:
        """Whether `pod_filter` must look at this pod (pods it never rejects skip it)."""
        return True

    def pod_filter(self, session: Session, pod: Pod, node: int) -> str | None:
        """Why the node cannot take this pod now, given everything placed or evicted so far, or None."""
        return None

    def filter_domain_key(self, pod: Pod) -> str | None:
        """A node label whose value alone decides `pod_filter` for this pod (nodes without it fail), so a
        placement may rule out a whole domain of that label with one call; None when there is none."""
        return None

    def node_order(self, session: Session) -> NodeOrder | None:
        """How nodes are visited (see `NodeOrder`); asked once, before the node table exists."""
        return None

    def rejection_reason(self, why: str) -> Reason:
        """The reason code for a gang whose pod this plugin's `pod_filter` kept off every node with room."""
        return Reason.NO_FEASIBLE_NODE

    def rejection_lasts(self, why: str) -> bool:
        """Whether this rejection of a node holds for every pod of the same class for as long as pods are
        only added (no eviction, no rollback): a gang placed pod by pod then asks that node once, not once
        per member. False (ask again) is always correct; True only where placements can add conflicts
        but never lift one (anti-affinity, host ports), not where they can (affinity, spread)."""
        return False

    def applies_by_labels(self) -> bool:
        """Whether `pod_filter_applies` / `node_score_applies` may differ between pods whose request,
        constraints and extras are equal (by their labels or namespace); False lets the session ask once
        per pod class instead of once per pod."""
        return True

    def node_score_applies(self, pod: Pod) -> bool:
        """Whether `node_score` can tell nodes apart for this pod (pods it scores 0 everywhere skip it)."""
        return True

    def node_score(self, session: Session, pod: Pod, node: int) -> int:
        return 0

    def queue_order(self, session: Session, queue: QueueNode) -> OrderKey:
        return ()

    def job_order(self, session: Session, job: Job) -> OrderKey:
        return ()

    def job_valid(self, session: Session, job: Job) -> Problem | None:
        return None

    def queue_headroom(self, session: Session, queue: str) -> dict[str, float]:
        return {}

    def victim_filter(self, session: Session, preemptor: Job, victim: Job) -> bool:
        return True

    def victim_order(self, session: Session, victim: Job) -> OrderKey:
        return ()

    def follows_placements(self) -> bool:
        """Whether on_allocate / on_deallocate must see this cycle's placements (asked once, after open)."""
        return True

    def on_allocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        """Pods were placed (or an eviction was undone): keep per-cycle state in step."""

    def on_deallocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        """Pods were evicted (or a placement was undone)."""


def overrides(plugin: Plugin, hook: str) -> bool:
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)

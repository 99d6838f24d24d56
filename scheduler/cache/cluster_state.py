"""ClusterState: the scheduler's view of the cluster, updated one watch event at a time.

Per-node usage and per-gang membership are maintained incrementally, so `snapshot()` copies references
and rebuilds only what changed since the last snapshot: its cost follows the change, not the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.api.disruption import DisruptionBudget
from scheduler.api.labels import QUEUE_LABEL
from scheduler.api.node import Node
from scheduler.api.pod import Pod
from scheduler.api.podgroup import PodGroup
from scheduler.api.podspec import NO_EXTRAS
from scheduler.api.queue import Queue
from scheduler.api.resources import Resources
from scheduler.api.storage import Claim, CSINodeLimits, StorageClass, Volume
from scheduler.api.topology import PriorityClass, Topology
from scheduler.kube import convert, disruption, storage


def pod_group_key(pod: Pod) -> str | None:
    return pod.group_key or None


def _usage_key(pod: Pod) -> tuple[str, str]:
    return (pod_group_key(pod) or "", pod.label(QUEUE_LABEL) or "")


def _related(pod: Pod) -> bool:
    return pod.extras is not NO_EXTRAS and not pod.extras.is_empty()


def _same_placement(a: Pod, b: Pod) -> bool:
    """Equal in all `_index` reads to decide where a pod goes and what it adds: the two take the same places
    in the cache. Called for every pod event: objects a reused conversion shares are compared by identity
    first, and a deletion mark counts only on a pending pod (a bound one is indexed the same with it)."""
    return (
        a.node_name == b.node_name
        and (a.request is b.request or a.request == b.request)
        and a.terminal == b.terminal
        and (a.phase == "Succeeded") == (b.phase == "Succeeded")
        and (a.deleting and not a.node_name) == (b.deleting and not b.node_name)
        and a.scheduler_name == b.scheduler_name
        and a.group_key == b.group_key
        and (a.labels is b.labels or (a.label(QUEUE_LABEL) or "") == (b.label(QUEUE_LABEL) or ""))
        and (a.extras is b.extras or _related(a) == _related(b))
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable, consistent view handed to one scheduling session."""

    scheduler_name: str
    nodes: Mapping[str, Node]
    node_used: Mapping[str, Resources]
    node_pods: Mapping[str, int]  # non-terminal pods bound per node (all schedulers)
    usage: Mapping[tuple[str, str], Resources]  # (PodGroup key or "", queue label) -> our bound requests
    pending: Mapping[str, Pod]  # our pods waiting for a node
    pending_dims: tuple[str, ...]  # every resource name pending pods request
    members: Mapping[str, tuple[Pod, ...]]  # PodGroup key -> our non-terminal pods naming it
    pod_groups: Mapping[str, PodGroup]
    queues: Mapping[str, Queue]
    topologies: Mapping[str, Topology]
    priority_classes: Mapping[str, PriorityClass]
    running_singles: Mapping[str, Pod] = field(default_factory=dict)  # our bound pods of no PodGroup
    # what pod-relational and volume feasibility reads (plugins/interpod, spread, ports, volumes)
    bound_pods: Mapping[str, Pod] = field(default_factory=dict)  # non-terminal pods on a node, any scheduler
    # the bound and the pending pods with pod affinity, spread, host ports or volumes (plugins' open reads
    # these instead of every pod)
    bound_related: Mapping[str, Pod] = field(default_factory=dict)
    pending_related: Mapping[str, Pod] = field(default_factory=dict)
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # name -> labels
    claims: Mapping[str, Claim] = field(default_factory=dict)  # "<ns>/<name>"
    volumes: Mapping[str, Volume] = field(default_factory=dict)
    storage_classes: Mapping[str, StorageClass] = field(default_factory=dict)
    csi_limits: Mapping[str, CSINodeLimits] = field(default_factory=dict)  # node name -> limits
    # pending pods the grouper holds back until their PodGroup exists: pod key -> (reason code, message)
    held: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # PodGroups with a Succeeded member: never stale (KAI's rule), as when a batch job's ranks finish apart
    finished: frozenset[str] = frozenset()
    budgets: Mapping[str, DisruptionBudget] = field(default_factory=dict)  # "<ns>/<name>": victim order reads


class ClusterState:
    """Mutable cache. Not thread-safe: one writer (the watch loop) and snapshots taken between events."""

    def __init__(self, scheduler_name: str = "kai-scheduler") -> None:
        self.scheduler_name = scheduler_name
        self._nodes: dict[str, Node] = {}
        self._pods: dict[str, Pod] = {}
        self._node_used: dict[str, Resources] = {}
        self._node_pods: dict[str, int] = {}
        self._pending: dict[str, Pod] = {}
        self._usage: dict[tuple[str, str], Resources] = {}
        self._pending_dims: dict[str, int] = {}
        self._members: dict[str, dict[str, Pod]] = {}
        self._running_singles: dict[str, Pod] = {}
        self._succeeded: dict[str, set[str]] = {}  # PodGroup key -> our Succeeded pods naming it
        self._members_frozen: dict[str, tuple[Pod, ...]] = {}
        self._dirty_members: set[str] = set()
        self._pod_groups: dict[str, PodGroup] = {}
        self._queues: dict[str, Queue] = {}
        self._topologies: dict[str, Topology] = {}
        self._priority_classes: dict[str, PriorityClass] = {}
        self._bound: dict[str, Pod] = {}
        self._bound_related: dict[str, Pod] = {}
        self._pending_related: dict[str, Pod] = {}
        self._namespaces: dict[str, dict[str, str]] = {}
        self._claims: dict[str, Claim] = {}
        self._volumes: dict[str, Volume] = {}
        self._storage_classes: dict[str, StorageClass] = {}
        self._csi_limits: dict[str, CSINodeLimits] = {}
        self._budgets: dict[str, DisruptionBudget] = {}
        self.generation = 0  # bumps on every applied change

    # --- raw Kubernetes objects -------------------------------------------------------------
    def apply_object(self, obj: Mapping[str, Any], deleted: bool = False, *, same_spec: Pod | None = None) -> None:
        """Apply one Kubernetes object (an ADDED/MODIFIED watch event, or DELETED when `deleted`).
        `same_spec`: a pod converted from this pod's labels and spec (the watch compared them), reused."""
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        name, ns = str(meta.get("name", "")), str(meta.get("namespace") or "default")
        if kind == "Node":
            self.delete_node(name) if deleted else self.upsert_node(convert.node_from_k8s(obj))
        elif kind == "Pod":
            self.delete_pod(f"{ns}/{name}") if deleted else self.upsert_pod(convert.pod_from_k8s(obj, same_spec))
        elif kind == "PodGroup":
            key = f"{ns}/{name}"
            self._set(self._pod_groups, key, None if deleted else convert.podgroup_from_k8s(obj))
        elif kind == "Queue":
            self._set(self._queues, name, None if deleted else convert.queue_from_k8s(obj))
        elif kind == "Topology":
            self._set(self._topologies, name, None if deleted else convert.topology_from_k8s(obj))
        elif kind == "PriorityClass":
            self._set(self._priority_classes, name, None if deleted else convert.priority_class_from_k8s(obj))
        elif kind == "Namespace":
            self._set(self._namespaces, name, None if deleted else storage.namespace_labels(obj))
        elif kind == "PersistentVolumeClaim":
            self._set(self._claims, f"{ns}/{name}", None if deleted else storage.claim_from_k8s(obj))
        elif kind == "PersistentVolume":
            self._set(self._volumes, name, None if deleted else storage.volume_from_k8s(obj))
        elif kind == "StorageClass":
            self._set(self._storage_classes, name, None if deleted else storage.storage_class_from_k8s(obj))
        elif kind == "CSINode":
            self._set(self._csi_limits, name, None if deleted else storage.csinode_from_k8s(obj))
        elif kind == "PodDisruptionBudget":
            self._set(self._budgets, f"{ns}/{name}", None if deleted else disruption.budget_from_k8s(obj))

    def _set(self, table: dict[str, Any], key: str, value: Any) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
        self.generation += 1

    # --- nodes --------------------------------------------------------------------------------
    def upsert_node(self, node: Node) -> None:
        self._nodes[node.name] = node
        self._node_used.setdefault(node.name, Resources())
        self._node_pods.setdefault(node.name, 0)
        self.generation += 1

    def delete_node(self, name: str) -> None:
        self._nodes.pop(name, None)
        self.generation += 1

    # --- pods ---------------------------------------------------------------------------------
    def _consumes(self, pod: Pod) -> bool:
        return pod.bound and not pod.terminal

    def upsert_pod(self, pod: Pod) -> None:
        old = self._pods.get(pod.key)
        if old is not None and _same_placement(old, pod):
            self._swap(pod)  # most pod events (a phase, a start time, a deletion mark) move nothing
            self.generation += 1
            return
        if old is not None:
            self._unindex(old)
        self._pods[pod.key] = pod
        self._index(pod)
        self.generation += 1

    def delete_pod(self, key: str) -> None:
        old = self._pods.pop(key, None)
        if old is not None:
            self._unindex(old)
            self.generation += 1

    def _index(self, pod: Pod) -> None:
        if self._consumes(pod):
            self._bound[pod.key] = pod
            if _related(pod):
                self._bound_related[pod.key] = pod
            self._node_used[pod.node_name] = self._node_used.get(pod.node_name, Resources()) + pod.request
            self._node_pods[pod.node_name] = self._node_pods.get(pod.node_name, 0) + 1
        if pod.scheduler_name != self.scheduler_name or pod.terminal:
            if pod.phase == "Succeeded" and pod.group_key and pod.scheduler_name == self.scheduler_name:
                self._succeeded.setdefault(pod.group_key, set()).add(pod.key)
            return
        if pod.bound:
            key = _usage_key(pod)
            self._usage[key] = self._usage.get(key, Resources()) + pod.request
            if not pod.pod_group:
                self._running_singles[pod.key] = pod
        if not pod.bound and not pod.deleting:
            self._pending[pod.key] = pod
            if _related(pod):
                self._pending_related[pod.key] = pod
            for name in pod.request.names():
                self._pending_dims[name] = self._pending_dims.get(name, 0) + 1
        group = pod_group_key(pod)
        if group is not None:
            self._members.setdefault(group, {})[pod.key] = pod
            self._dirty_members.add(group)

    def _swap(self, pod: Pod) -> None:
        """`pod` replaces a cached pod of the same placement (`_same_placement`): it sits in the same indexes,
        adds the same usage; only the object changes (tests/unit/test_cache_swap.py checks this equals
        unindexing the old and indexing the new, over every attribute of the cache)."""
        key = pod.key
        self._pods[key] = pod
        for table in (self._bound, self._bound_related, self._pending, self._pending_related, self._running_singles):
            if key in table:
                table[key] = pod
        members = self._members.get(pod.group_key) if pod.group_key else None
        if members is not None:  # as _unindex: the group's frozen members are rebuilt
            if key in members:
                members[key] = pod
            self._dirty_members.add(pod.group_key)

    def _unindex(self, pod: Pod) -> None:
        self._pending_related.pop(pod.key, None)
        if self._consumes(pod):
            self._bound.pop(pod.key, None)
            self._bound_related.pop(pod.key, None)
            self._node_used[pod.node_name] = self._node_used.get(pod.node_name, Resources()) - pod.request
            self._node_pods[pod.node_name] = self._node_pods.get(pod.node_name, 0) - 1
        if self._pending.pop(pod.key, None) is not None:
            for name in pod.request.names():
                count = self._pending_dims[name] - 1
                if count:
                    self._pending_dims[name] = count
                else:
                    del self._pending_dims[name]
        if pod.bound and not pod.terminal and pod.scheduler_name == self.scheduler_name:
            self._running_singles.pop(pod.key, None)
            key = _usage_key(pod)
            left = self._usage.get(key, Resources()) - pod.request
            if left.is_zero():
                self._usage.pop(key, None)
            else:
                self._usage[key] = left
        done = self._succeeded.get(pod.group_key)
        if done is not None:
            done.discard(pod.key)
            if not done:
                del self._succeeded[pod.group_key]
        group = pod_group_key(pod)
        if group is not None and group in self._members:
            self._members[group].pop(pod.key, None)
            if not self._members[group]:
                del self._members[group]
            self._dirty_members.add(group)

    def pod(self, key: str) -> Pod | None:
        return self._pods.get(key)

    def pods(self) -> Mapping[str, Pod]:
        return self._pods

    # --- snapshot -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        for group in self._dirty_members:
            members = self._members.get(group)
            if members:
                self._members_frozen[group] = tuple(members[k] for k in sorted(members))
            else:
                self._members_frozen.pop(group, None)
        self._dirty_members.clear()
        return Snapshot(
            scheduler_name=self.scheduler_name,
            nodes=dict(self._nodes),
            node_used=dict(self._node_used),
            node_pods=dict(self._node_pods),
            usage=dict(self._usage),
            pending=dict(self._pending),
            pending_dims=tuple(sorted(self._pending_dims)),
            members=dict(self._members_frozen),
            pod_groups=dict(self._pod_groups),
            queues=dict(self._queues),
            topologies=dict(self._topologies),
            priority_classes=dict(self._priority_classes),
            running_singles=dict(self._running_singles),
            bound_pods=dict(self._bound),
            bound_related=dict(self._bound_related),
            pending_related=dict(self._pending_related),
            namespaces=dict(self._namespaces),
            claims=dict(self._claims),
            volumes=dict(self._volumes),
            storage_classes=dict(self._storage_classes),
            csi_limits=dict(self._csi_limits),
            finished=frozenset(self._succeeded),
            budgets=dict(self._budgets),
        )

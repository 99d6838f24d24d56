"""Which pods run where during one session, and counts of pods matching a selector per node.

The index starts from the snapshot's bound pods and follows every placement, eviction and undo (the
owning plugin feeds it from on_allocate / on_deallocate), so a gang's later members see its earlier
ones, placed in the open statement. Counters are made on first use and kept exact incrementally; a
counter is found from a pod's labels through the one (key, value) its selector requires (its pivot),
so a placement touches only the counters that can match it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scheduler.api.pod import Pod
from scheduler.api.podspec import METADATA_NAME_LABEL, LabelSelector, PodAffinityTerm

if TYPE_CHECKING:
    from scheduler.framework.session import Session


@dataclass(frozen=True, slots=True)
class Namespaces:
    """The namespaces a term selects: listed names, plus those whose labels its selector matches."""

    names: frozenset[str]
    selector: LabelSelector | None = None

    @staticmethod
    def of_term(term: PodAffinityTerm, own: str) -> Namespaces:
        if not term.namespaces and term.namespace_selector is None:
            return Namespaces(frozenset((own,)))
        return Namespaces(frozenset(term.namespaces), term.namespace_selector)


@dataclass(slots=True, eq=False)
class Counter:
    """Pods matching (selector, namespaces) per node index; `version` bumps on every change."""

    selector: LabelSelector | None
    namespaces: Namespaces
    skip_deleting: bool
    per_node: dict[int, int] = field(default_factory=dict)
    version: int = 0
    _domains: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)

    def change(self, node: int, by: int) -> None:
        n = self.per_node.get(node, 0) + by
        if n:
            self.per_node[node] = n
        else:
            self.per_node.pop(node, None)
        self.version += 1

    def by_domain(self, key: str, labels: Sequence[Mapping[str, str]]) -> dict[str, int]:
        """Matching pods per value of node label `key` (nodes without the label are left out)."""
        hit = self._domains.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        out: dict[str, int] = {}
        for node, n in self.per_node.items():
            value = labels[node].get(key)
            if value is not None:
                out[value] = out.get(value, 0) + n
        self._domains[key] = (self.version, out)
        return out


class PodIndex:
    def __init__(self, session: Session) -> None:
        self.session = session
        table = session.table
        self.labels: list[Mapping[str, str]] = [session.node_labels(i) for i in range(len(table.nodes))]
        self.ns_labels = session.snapshot.namespaces
        self.where: dict[str, int] = {}  # pod key -> node
        self.pods: dict[str, Pod] = {}
        self.pod_labels: dict[str, dict[str, str]] = {}
        self.with_label: dict[tuple[str, str], set[str]] = {}  # (key, value) -> pod keys carrying it
        self.by_pivot: dict[tuple[str, str], list[Counter]] = {}
        self.unpivoted: list[Counter] = []
        self.counters: dict[tuple[object, ...], Counter] = {}
        self.version = 0  # bumps on every change of any pod's place
        by_name = table.by_name
        for key in sorted(session.snapshot.bound_pods):
            pod = session.snapshot.bound_pods[key]
            node = by_name.get(pod.node_name)
            if node is not None:
                self._put(pod, node)

    @staticmethod
    def of(session: Session) -> PodIndex:
        """The session's one index: interpod and spread both follow placements through it (adding a pod
        that is already in, or removing one that is not, changes nothing)."""
        return session.shared("podindex", lambda: PodIndex(session))

    def namespace_labels(self, ns: str) -> Mapping[str, str]:
        return self.ns_labels.get(ns) or {METADATA_NAME_LABEL: ns}

    def in_namespaces(self, ns: str, which: Namespaces) -> bool:
        return ns in which.names or (which.selector is not None and which.selector.matches(self.namespace_labels(ns)))

    def matches(self, pod: Pod, labels: Mapping[str, str], c: Counter) -> bool:
        if c.selector is None or (c.skip_deleting and pod.deleting):
            return False
        return self.in_namespaces(pod.namespace, c.namespaces) and c.selector.matches(labels)

    def _put(self, pod: Pod, node: int) -> None:
        self.where[pod.key] = node
        self.pods[pod.key] = pod
        self.pod_labels[pod.key] = dict(pod.labels)
        for kv in pod.labels:
            self.with_label.setdefault(kv, set()).add(pod.key)

    def _touching(self, labels: Mapping[str, str]) -> Iterable[Counter]:
        for kv in labels.items():
            yield from self.by_pivot.get(kv, ())
        yield from self.unpivoted

    def add(self, pods: Iterable[Pod], node: int) -> None:
        for pod in pods:
            if pod.key in self.where:
                continue
            self._put(pod, node)
            self.version += 1
            labels = self.pod_labels[pod.key]
            for c in self._touching(labels):
                if self.matches(pod, labels, c):
                    c.change(node, 1)

    def remove(self, pods: Iterable[Pod]) -> None:
        for pod in pods:
            node = self.where.pop(pod.key, None)
            if node is None:
                continue
            self.pods.pop(pod.key)
            labels = self.pod_labels.pop(pod.key)
            for kv in labels.items():
                self.with_label[kv].discard(pod.key)
            self.version += 1
            for c in self._touching(labels):
                if self.matches(pod, labels, c):
                    c.change(node, -1)

    def counter(self, selector: LabelSelector | None, namespaces: Namespaces, skip_deleting: bool = False) -> Counter:
        key = (selector, namespaces, skip_deleting)
        c = self.counters.get(key)
        if c is not None:
            return c
        c = self.counters[key] = Counter(selector, namespaces, skip_deleting)
        pivot = selector.pivot() if selector is not None else None
        if selector is None:
            return c  # matches no pod, ever
        if pivot is None:
            self.unpivoted.append(c)
        else:
            self.by_pivot.setdefault(pivot, []).append(c)
        keys = self.where if pivot is None else self.with_label.get(pivot, set())
        for key_ in keys:  # sums: order does not matter
            pod = self.pods[key_]
            if self.matches(pod, self.pod_labels[key_], c):
                node = self.where[key_]
                c.per_node[node] = c.per_node.get(node, 0) + 1
        return c

"""Pod topology spread constraints, kube-scheduler's PodTopologySpread filter (DoNotSchedule) and score
(ScheduleAnyway).

Domains are the values of the constraint's key over the nodes that count for this pod: nodes with
every hard constraint's key, matching the pod's nodeSelector / required node affinity (unless
nodeAffinityPolicy is Ignore) and, with nodeTaintsPolicy Honor, whose taints it tolerates. A node fails
when the pods matching the selector (the pod's namespace, not terminating) in its domain, plus the pod
itself if it matches, exceed the least-loaded domain's count by more than maxSkew; with fewer domains
than minDomains the least count is 0. Counts include everything placed earlier this cycle, so a gang
spreads as its members are placed one by one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scheduler.api.pod import Pod
from scheduler.api.podspec import SpreadConstraint
from scheduler.api.reasons import Reason
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin
from scheduler.plugins.podindex import Namespaces, PodIndex
from scheduler.plugins.predicates import node_affinity_mismatch, untolerated_taint

if TYPE_CHECKING:
    from scheduler.framework.session import Session

MISMATCH = "node(s) didn't match pod topology spread constraints"
MISSING_LABEL = f"{MISMATCH} (missing required label"


@dataclass(frozen=True, slots=True)
class _Domains:
    """The nodes that count for a pod under one constraint's policies, and their domain values."""

    nodes: frozenset[int]
    values: frozenset[str]


@plugin("podtopologyspread")
class PodTopologySpread(Plugin):
    name = "podtopologyspread"

    def open(self, session: Session) -> None:
        snap = session.snapshot
        self.index: PodIndex | None = None
        self.domains: dict[tuple[object, ...], _Domains] = {}
        self.counts: dict[tuple[str, SpreadConstraint], tuple[int, dict[str, int], int]] = {}
        self.verdicts: dict[str, tuple[int, dict[tuple[str | None, ...], str | None]]] = {}
        if any(p.extras.spread for p in snap.pending_related.values()):
            self.index = PodIndex.of(session)

    def follows_placements(self) -> bool:
        return self.index is not None

    def on_allocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if self.index is not None:
            self.index.add(pods, node)

    def on_deallocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if self.index is not None:
            self.index.remove(pods)

    def _domains(self, session: Session, pod: Pod, c: SpreadConstraint, keys: tuple[str, ...]) -> _Domains:
        memo = (pod.constraints, c.topology_key, c.node_affinity_policy, c.node_taints_policy, keys)
        hit = self.domains.get(memo)
        if hit is not None:
            return hit
        nodes, values = set(), set()
        assert self.index is not None
        for i, node in enumerate(session.table.nodes):
            labels = self.index.labels[i]
            if any(k not in labels for k in keys):
                continue
            if c.node_affinity_policy != "Ignore" and node_affinity_mismatch(pod.constraints, labels, node.name):
                continue
            if c.node_taints_policy == "Honor" and untolerated_taint(pod.constraints, node) is not None:
                continue
            nodes.add(i)
            values.add(labels[c.topology_key])
        hit = self.domains[memo] = _Domains(frozenset(nodes), frozenset(values))
        return hit

    def _counts(
        self, session: Session, pod: Pod, c: SpreadConstraint, keys: tuple[str, ...]
    ) -> tuple[dict[str, int], int]:
        """Matching pods per domain over the nodes that count, and the least count (minDomains applied)."""
        assert self.index is not None
        counter = self.index.counter(c.selector, Namespaces(frozenset((pod.namespace,))), skip_deleting=True)
        hit = self.counts.get((pod.key, c))
        if hit is not None and hit[0] == counter.version:
            return hit[1], hit[2]
        doms = self._domains(session, pod, c, keys)
        counts = dict.fromkeys(doms.values, 0)
        labels = self.index.labels
        for node, n in counter.per_node.items():
            if node in doms.nodes:
                counts[labels[node][c.topology_key]] += n
        least = min(counts.values(), default=0)
        if c.min_domains is not None and len(counts) < c.min_domains:
            least = 0
        self.counts[(pod.key, c)] = (counter.version, counts, least)
        return counts, least

    # --- filter -----------------------------------------------------------------------------
    def applies_by_labels(self) -> bool:
        return False  # the pod's own constraints decide

    def pod_filter_applies(self, pod: Pod) -> bool:
        return self.index is not None and any(c.hard for c in pod.extras.spread)

    def filter_domain_key(self, pod: Pod) -> str | None:
        keys = {c.topology_key for c in pod.extras.spread if c.hard}
        return keys.pop() if len(keys) == 1 else None

    def pod_filter(self, session: Session, pod: Pod, node: int) -> str | None:
        """The verdict depends on the node's values of the hard constraints' keys: one answer per pod,
        index version and values."""
        assert self.index is not None
        hard = [c for c in pod.extras.spread if c.hard]
        keys = tuple(sorted({c.topology_key for c in hard}))
        labels = self.index.labels[node]
        values = tuple(labels.get(k) for k in keys)
        memo = self.verdicts.get(pod.key)
        if memo is None or memo[0] != self.index.version:
            memo = self.verdicts[pod.key] = (self.index.version, {})
        if values not in memo[1]:
            memo[1][values] = self._verdict(session, pod, hard, keys, labels)
        return memo[1][values]

    def _verdict(
        self, session: Session, pod: Pod, hard: list[SpreadConstraint], keys: tuple[str, ...], labels: Mapping[str, str]
    ) -> str | None:
        for c in hard:
            if c.topology_key not in labels:
                return f"{MISSING_LABEL} {c.topology_key})"
        own = dict(pod.labels)
        for c in hard:
            counts, least = self._counts(session, pod, c, keys)
            value = labels[c.topology_key]
            self_match = 1 if c.selector is not None and c.selector.matches(own) else 0
            skew = counts.get(value, 0) + self_match - least
            if skew > c.max_skew:
                return (
                    f"{MISMATCH} ({c.describe()}: {c.topology_key}={value} would hold "
                    f"{counts.get(value, 0) + self_match}, the least domain {least})"
                )
        return None

    def rejection_reason(self, why: str) -> Reason:
        return Reason.TOPOLOGY_SPREAD_UNSATISFIABLE

    # --- score ------------------------------------------------------------------------------
    def node_score_applies(self, pod: Pod) -> bool:
        return self.index is not None and any(not c.hard for c in pod.extras.spread)

    def node_score(self, session: Session, pod: Pod, node: int) -> int:
        """Fewer matching pods in the node's domain score higher; a node without the key scores lowest."""
        assert self.index is not None
        soft = [c for c in pod.extras.spread if not c.hard]
        keys = tuple(sorted({c.topology_key for c in soft}))
        labels = self.index.labels[node]
        score = 0
        for c in soft:
            counts, _ = self._counts(session, pod, c, keys)
            value = labels.get(c.topology_key)
            score -= counts.get(value, 0) if value is not None else max(counts.values(), default=0) + 1
        return score

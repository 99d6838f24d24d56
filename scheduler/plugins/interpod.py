"""Inter-pod affinity and anti-affinity, kube-scheduler's InterPodAffinity filter and (preferred) score.

A node is ruled out when: an existing pod's required anti-affinity term matches the pod and the node
shares that pod's topology domain (symmetry); one of the pod's required affinity terms has no matching
pod in the node's domain (unless no pod anywhere matches any of its terms and the pod matches all its
own terms: the first of a group with affinity to itself); or one of its required anti-affinity terms
has a matching pod in the node's domain, or the node lacks an affinity term's topology key. "Existing"
includes every pod placed earlier this cycle, the gang's own members in the open statement too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scheduler.api.pod import Pod
from scheduler.api.podspec import PodAffinityTerm
from scheduler.api.reasons import Reason
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin
from scheduler.plugins.podindex import Counter, Namespaces, PodIndex

if TYPE_CHECKING:
    from scheduler.framework.session import Session

AFFINITY = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"


@dataclass(frozen=True, slots=True)
class AntiTerm:
    """A required anti-affinity term of a pod that runs (or was placed) on `node`."""

    owner: str
    node: int
    term: PodAffinityTerm
    namespaces: Namespaces


@dataclass(slots=True)
class _State:
    """One pod's view for one index version: kube-scheduler's PreFilter state."""

    version: int
    blocked: list[tuple[str, str, str]]  # (topology key, value, why) from existing pods' anti-affinity
    affinity: list[tuple[PodAffinityTerm, Counter]]
    anti: list[tuple[PodAffinityTerm, Counter]]
    first_of_kind: bool  # no pod matches any affinity term, and the pod matches all of them


@plugin("interpodaffinity")
class InterPodAffinity(Plugin):
    name = "interpodaffinity"

    def open(self, session: Session) -> None:
        snap = session.snapshot
        self.index: PodIndex | None = None
        self.anti: dict[str, list[AntiTerm]] = {}  # owner pod key -> its terms
        self.by_pivot: dict[tuple[str, str], dict[tuple[str, int], AntiTerm]] = {}
        self.unpivoted: dict[tuple[str, int], AntiTerm] = {}
        self.states: dict[str, _State] = {}
        # could any pod's required anti-affinity match another pod this cycle: pivots of every such term
        self.pivots: set[tuple[str, str]] = set()
        self.any_unpivoted = False
        active = False
        for pods in (snap.bound_related, snap.pending_related):
            for key in sorted(pods):
                a = pods[key].extras.affinity
                if a is None:
                    continue
                active = True
                for t in a.anti_required:
                    pivot = t.selector.pivot() if t.selector is not None else None
                    if pivot is None:
                        self.any_unpivoted = self.any_unpivoted or t.selector is not None
                    else:
                        self.pivots.add(pivot)
        if not active:
            return
        self.index = PodIndex(session)
        for key in sorted(snap.bound_related):
            node = session.table.by_name.get(snap.bound_related[key].node_name)
            if node is not None:
                self._track(snap.bound_related[key], node)

    # --- bookkeeping ------------------------------------------------------------------------
    def _track(self, pod: Pod, node: int) -> None:
        a = pod.extras.affinity
        if a is None or not a.anti_required or pod.key in self.anti:
            return
        terms = [AntiTerm(pod.key, node, t, Namespaces.of_term(t, pod.namespace)) for t in a.anti_required]
        self.anti[pod.key] = terms
        for i, at in enumerate(terms):
            pivot = at.term.selector.pivot() if at.term.selector is not None else None
            (self.by_pivot.setdefault(pivot, {}) if pivot else self.unpivoted)[(pod.key, i)] = at

    def _untrack(self, pod: Pod) -> None:
        for i, at in enumerate(self.anti.pop(pod.key, ())):
            pivot = at.term.selector.pivot() if at.term.selector is not None else None
            (self.by_pivot.get(pivot, {}) if pivot else self.unpivoted).pop((pod.key, i), None)

    def follows_placements(self) -> bool:
        return self.index is not None

    def on_allocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if self.index is not None:
            self.index.add(pods, node)
            for p in pods:
                self._track(p, node)

    def on_deallocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if self.index is not None:
            self.index.remove(pods)
            for p in pods:
                self._untrack(p)

    # --- filter -----------------------------------------------------------------------------
    def applies_by_labels(self) -> bool:
        return bool(self.pivots) or self.any_unpivoted  # another pod's anti-affinity may match this one

    def pod_filter_applies(self, pod: Pod) -> bool:
        if self.index is None:
            return False
        a = pod.extras.affinity
        if a is not None and (a.required or a.anti_required):
            return True
        return self.any_unpivoted or any(kv in self.pivots for kv in pod.labels)

    def _state(self, pod: Pod) -> _State:
        index = self.index
        assert index is not None
        hit = self.states.get(pod.key)
        if hit is not None and hit.version == index.version:
            return hit
        labels = dict(pod.labels)
        blocked = []
        candidates: list[AntiTerm] = [at for kv in pod.labels for at in self.by_pivot.get(kv, {}).values()]
        candidates += self.unpivoted.values()
        for at in sorted(candidates, key=lambda at: (at.owner, at.term.topology_key)):
            if at.owner == pod.key or at.term.selector is None:
                continue
            if index.in_namespaces(pod.namespace, at.namespaces) and at.term.selector.matches(labels):
                value = index.labels[at.node].get(at.term.topology_key)
                if value is not None:
                    why = f"{EXISTING_ANTI} (pod {at.owner}: {at.term.describe()})"
                    blocked.append((at.term.topology_key, value, why))
        a = pod.extras.affinity
        affinity: list[tuple[PodAffinityTerm, Counter]] = []
        anti: list[tuple[PodAffinityTerm, Counter]] = []
        first = False
        if a is not None:
            for t in a.required:
                affinity.append((t, index.counter(t.selector, Namespaces.of_term(t, pod.namespace))))
            for t in a.anti_required:
                anti.append((t, index.counter(t.selector, Namespaces.of_term(t, pod.namespace))))
            if affinity:
                none_match = all(not c.by_domain(t.topology_key, index.labels) for t, c in affinity)
                first = none_match and all(
                    t.selector is not None
                    and t.selector.matches(labels)
                    and index.in_namespaces(pod.namespace, Namespaces.of_term(t, pod.namespace))
                    for t, _ in affinity
                )
        state = self.states[pod.key] = _State(index.version, blocked, affinity, anti, first)
        return state

    def pod_filter(self, session: Session, pod: Pod, node: int) -> str | None:
        assert self.index is not None
        st = self._state(pod)
        labels: Mapping[str, str] = self.index.labels[node]
        for key, value, why in st.blocked:
            if labels.get(key) == value:
                return why
        missing = False
        for t, c in st.affinity:
            have = labels.get(t.topology_key)
            if have is None:
                return f"{AFFINITY} (node lacks topology key {t.topology_key})"
            if not c.by_domain(t.topology_key, self.index.labels).get(have):
                missing = True
        if missing and not st.first_of_kind:
            t = next(
                t
                for t, c in st.affinity
                if not c.by_domain(t.topology_key, self.index.labels).get(labels[t.topology_key])
            )
            return f"{AFFINITY} (no pod matching {t.describe()} in {t.topology_key}={labels[t.topology_key]})"
        for t, c in st.anti:
            near = labels.get(t.topology_key)
            if near is not None and c.by_domain(t.topology_key, self.index.labels).get(near):
                return f"{ANTI_AFFINITY} (a pod matching {t.describe()} runs in {t.topology_key}={near})"
        return None

    def rejection_reason(self, why: str) -> Reason:
        return Reason.POD_AFFINITY_UNSATISFIABLE if why.startswith(AFFINITY) else Reason.POD_ANTI_AFFINITY_CONFLICT

    # --- score ------------------------------------------------------------------------------
    def node_score_applies(self, pod: Pod) -> bool:
        a = pod.extras.affinity
        return self.index is not None and a is not None and bool(a.preferred or a.anti_preferred)

    def node_score(self, session: Session, pod: Pod, node: int) -> int:
        """Sum of weight x matching pods in the node's domain, affinity up and anti-affinity down."""
        index, a = self.index, pod.extras.affinity
        assert index is not None and a is not None
        labels = index.labels[node]
        score = 0
        for sign, terms in ((1, a.preferred), (-1, a.anti_preferred)):
            for w in terms:
                value = labels.get(w.term.topology_key)
                if value is None:
                    continue
                c = index.counter(w.term.selector, Namespaces.of_term(w.term, pod.namespace))
                score += sign * w.weight * c.by_domain(w.term.topology_key, index.labels).get(value, 0)
        return score

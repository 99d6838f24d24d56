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
    """One pod's own terms, kube-scheduler's PreFilter state; the counters are live (the index keeps them),
    so it is made once per pod and cycle."""

    labels: dict[str, str]
    affinity: list[tuple[PodAffinityTerm, Counter]]
    anti: list[tuple[PodAffinityTerm, Counter]]
    matches_own: bool  # the pod matches all its affinity terms (the first of a group with affinity to itself)


@plugin("interpodaffinity")
class InterPodAffinity(Plugin):
    name = "interpodaffinity"

    def open(self, session: Session) -> None:
        snap = session.snapshot
        self.index: PodIndex | None = None
        self.anti: dict[str, list[AntiTerm]] = {}  # owner pod key -> its terms
        # existing pods' required anti-affinity terms by the domain they block and their selector's pivot
        # (None: no pivot): (topology key, value, pivot) -> (owner, term index) -> term. A node is looked up
        # per key under the candidate's own labels, so a filter call costs a few lookups however many
        # pods run, and nothing is recomputed when a pod is placed.
        self.blocking: dict[tuple[str, str, tuple[str, str] | None], dict[tuple[str, int], AntiTerm]] = {}
        self.blocking_keys: dict[str, int] = {}  # topology key -> terms indexed under it
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
        self.index = PodIndex.of(session)
        for key in sorted(snap.bound_related):
            node = session.table.by_name.get(snap.bound_related[key].node_name)
            if node is not None:
                self._track(snap.bound_related[key], node)

    # --- bookkeeping ------------------------------------------------------------------------
    def _slot(self, at: AntiTerm) -> tuple[str, str, tuple[str, str] | None] | None:
        """Where a term is indexed: None for one that blocks nothing (no selector, or its pod's node
        lacks the topology key)."""
        assert self.index is not None
        key = at.term.topology_key
        value = self.index.labels[at.node].get(key)
        if at.term.selector is None or value is None:
            return None
        return key, value, at.term.selector.pivot()

    def _track(self, pod: Pod, node: int) -> None:
        a = pod.extras.affinity
        if a is None or not a.anti_required or pod.key in self.anti:
            return
        terms = [AntiTerm(pod.key, node, t, Namespaces.of_term(t, pod.namespace)) for t in a.anti_required]
        self.anti[pod.key] = terms
        for i, at in enumerate(terms):
            slot = self._slot(at)
            if slot is not None:
                self.blocking.setdefault(slot, {})[(pod.key, i)] = at
                self.blocking_keys[slot[0]] = self.blocking_keys.get(slot[0], 0) + 1

    def _untrack(self, pod: Pod) -> None:
        for i, at in enumerate(self.anti.pop(pod.key, ())):
            slot = self._slot(at)
            if slot is None:
                continue
            held = self.blocking.get(slot, {})
            if held.pop((pod.key, i), None) is not None:
                if not held:
                    del self.blocking[slot]
                n = self.blocking_keys[slot[0]] - 1
                if n:
                    self.blocking_keys[slot[0]] = n
                else:
                    del self.blocking_keys[slot[0]]

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
        if hit is not None:
            return hit
        labels = dict(pod.labels)
        a = pod.extras.affinity
        affinity: list[tuple[PodAffinityTerm, Counter]] = []
        anti: list[tuple[PodAffinityTerm, Counter]] = []
        for t in a.required if a is not None else ():
            affinity.append((t, index.counter(t.selector, Namespaces.of_term(t, pod.namespace))))
        for t in a.anti_required if a is not None else ():
            anti.append((t, index.counter(t.selector, Namespaces.of_term(t, pod.namespace))))
        matches_own = all(
            t.selector is not None
            and t.selector.matches(labels)
            and index.in_namespaces(pod.namespace, Namespaces.of_term(t, pod.namespace))
            for t, _ in affinity
        )
        state = self.states[pod.key] = _State(labels, affinity, anti, matches_own)
        return state

    def _blocked(self, pod: Pod, st: _State, node_labels: Mapping[str, str]) -> str | None:
        """An existing pod's required anti-affinity that matches the pod and whose domain holds the node:
        the first by (owner, topology key, term), for a stable message."""
        assert self.index is not None
        best: tuple[str, str, int] | None = None
        found: AntiTerm | None = None
        for key in self.blocking_keys:
            value = node_labels.get(key)
            if value is None:
                continue
            for pivot in (*pod.labels, None):
                for (owner, i), at in self.blocking.get((key, value, pivot), {}).items():
                    rank = (owner, key, i)
                    if owner == pod.key or (best is not None and rank >= best):
                        continue
                    assert at.term.selector is not None  # indexed terms have one
                    if self.index.in_namespaces(pod.namespace, at.namespaces) and at.term.selector.matches(st.labels):
                        best, found = rank, at
        if found is None:
            return None
        return f"{EXISTING_ANTI} (pod {found.owner}: {found.term.describe()})"

    def pod_filter(self, session: Session, pod: Pod, node: int) -> str | None:
        assert self.index is not None
        st = self._state(pod)
        labels: Mapping[str, str] = self.index.labels[node]
        if self.blocking_keys:
            why = self._blocked(pod, st, labels)
            if why is not None:
                return why
        missing = False
        for t, c in st.affinity:
            have = labels.get(t.topology_key)
            if have is None:
                return f"{AFFINITY} (node lacks topology key {t.topology_key})"
            if not c.by_domain(t.topology_key, self.index.labels).get(have):
                missing = True
        # no pod matches any affinity term anywhere, and the pod matches all of them: it may start the group
        first_of_kind = (
            missing
            and st.matches_own
            and all(not c.by_domain(t.topology_key, self.index.labels) for t, c in st.affinity)
        )
        if missing and not first_of_kind:
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

    def rejection_lasts(self, why: str) -> bool:
        """Anti-affinity (the pod's own terms, or running pods' terms): a placement adds matching pods,
        never removes one. Affinity may be satisfied by the next placement."""
        return not why.startswith(AFFINITY)

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

"""Victim candidates for take-back, batch-shaped: built once per action, kept in step with its commits.

A take-back action asks, for every waiting gang, which running gangs it may take and how cheaply each
topology domain could be emptied for it. Asked naively that is every running gang per waiting gang. Here:

- running gangs are split into *groups* that an action's rules answer alike (`Rules.group`, e.g. reclaim:
  the victim's queue and preemptibility), so a preemptor's rules are asked once per group, not per gang;
- each running gang's units (what one eviction takes, `Unit`) are built once per session and shared by
  the take-back actions (`Shared`); a group's list of them, cheapest first, is made the first time a
  preemptor ranks domains with it;
- per set of allowed groups and topology level, one pass makes every domain's `Merged` list: its units
  cheapest first with running sums of what they release there, so the cheapest prefix that makes room is
  a binary search, and a domain where even all of them would not make room is skipped at once.

Validity: a unit depends on which of its gang's pods are still running, and nothing else changes it
within a session but the PodDisruptionBudgets' ledger (`Ledger`). A commit (by any action: `Shared.sync`
reads the record's commits) changes the evicted gangs' units, and those of gangs a budget it spent guards
(their violations are counted against what the session's commits left); each list that holds them is
patched (the group's, the allowed sets', and the merged lists of the domains their nodes lie in). Rules
answers depend on queue usage, which every commit changes: they are asked again after each commit
(`Pool.allowed` keys its memo by the table's generation).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import add, sub

from scheduler.api.disruption import DisruptionBudget
from scheduler.api.pod import Pod
from scheduler.api.resources import Resources
from scheduler.framework.jobs import Job, leaf_minimum
from scheduler.framework.nodes import Domain, SparseReq
from scheduler.framework.session import Session

# why a victim gang is refused, by rule: None means it may be taken
VictimRule = Callable[[Session, Job, Job], "str | None"]
SLOW = "has not run its queue's min runtime"
INF = float("inf")


@dataclass(slots=True, eq=False)
class Unit:
    """What one eviction decision takes: one elastic member above its gang's minimum, or the rest of the
    gang (every pod of it still running). `gains`: per node, what its pods release there."""

    job: Job
    pods: tuple[Pod, ...]
    whole: bool
    order: tuple[object, ...]
    nodes: tuple[int, ...] = ()
    gains: tuple[tuple[int, tuple[int, ...]], ...] = ()
    rate: tuple[float, ...] | None = None  # `per_pod()`, made on first use
    guarded: bool = False  # a PodDisruptionBudget selects one of its pods (its count depends on the ledger)

    def per_pod(self) -> tuple[float, ...]:
        """At least what it releases per pod evicted, per dimension, in any domain (its whole release
        over its pods, rounded up; INF when it has no pods): what bounds how few pods a set evicts."""
        if self.rate is None:
            total = [0] * (len(self.gains[0][1]) if self.gains else 0)
            for _, vec in self.gains:
                total = list(map(add, total, vec))
            p = len(self.pods)
            self.rate = tuple(-(-t // p) if p else (INF if t > 0 else 0) for t in total)
        return self.rate

    @property
    def breaks(self) -> int:
        """Pods whose eviction breaks a PodDisruptionBudget (second in `order`)."""
        v = self.order[1]
        assert isinstance(v, int)
        return v


def live_pods(session: Session, job: Job) -> list[Pod]:
    return [p for p in job.bound if not p.deleting and p.key not in session.gone]


def runtime_ok(session: Session, victim: Job, reclaim: bool) -> bool:
    """Whether the victim has run at least its queue's min runtime (-1: never a victim)."""
    need = session.min_runtime(victim.queue, reclaim)
    if need == 0:
        return True
    if need < 0:
        return False
    start = session.started(victim)
    if start is None or session.now - start >= need:
        return True
    session.record.wake_at(start + need)
    return False


def budgets_by_namespace(session: Session) -> dict[str, list[DisruptionBudget]]:
    out: dict[str, list[DisruptionBudget]] = {}
    for key in sorted(session.snapshot.budgets):
        b = session.snapshot.budgets[key]
        out.setdefault(b.namespace, []).append(b)
    return out


BudgetKey = tuple[str, str]  # (namespace, name)


@dataclass(slots=True)
class Ledger:
    """The PodDisruptionBudgets by namespace (each namespace's in name order) and the disruptions each
    still allows (`left`; a budget not in it allows its `status.disruptionsAllowed`): the session's
    ledger is reduced by every committed eviction, a walk over victims copies it and reduces its copy
    by the victims it takes, so budgets are counted jointly across victims, in the order taken."""

    budgets: Mapping[str, Sequence[DisruptionBudget]] = field(default_factory=dict)
    left: dict[BudgetKey, int] = field(default_factory=dict)

    def copy(self) -> Ledger:
        return Ledger(self.budgets, dict(self.left))

    def guards(self, pods: Iterable[Pod]) -> set[BudgetKey]:
        """The budgets selecting any of these pods (those whose count an eviction of them may change)."""
        out: set[BudgetKey] = set()
        if self.budgets:
            for p in pods:
                mine = self.budgets.get(p.namespace)
                if mine:
                    labels = dict(p.labels)
                    out.update((b.namespace, b.name) for b in mine if b.selects(p.namespace, p.name, labels))
        return out

    def charge(self, pods: Iterable[Pod]) -> int:
        """Evict these pods in order against the ledger (reducing it): how many break a budget. As
        kube-scheduler's preemption counts a victim set: a pod with no labels matches no budget; every
        budget selecting the pod (a pod in its `status.disruptedPods` is not selected) is reduced by one,
        below zero too, and the pod is a violation when any of them falls below zero."""
        if not self.budgets:
            return 0
        left = self.left
        n = 0
        for p in pods:
            mine = self.budgets.get(p.namespace)
            if not mine or not p.labels:
                continue
            labels = dict(p.labels)
            broken = False
            for b in mine:
                if b.selects(p.namespace, p.name, labels):
                    k = (b.namespace, b.name)
                    have = left.get(k, b.allowed) - 1
                    left[k] = have
                    broken = broken or have < 0
            n += broken
        return n


def violations(pods: Sequence[Pod], budgets: Mapping[str, Sequence[DisruptionBudget]] | Ledger) -> int:
    """How many of these pods' evictions, in order, a PodDisruptionBudget does not allow (`Ledger.charge`),
    counted from the budgets' allowances (or what a ledger has left) without changing them."""
    if isinstance(budgets, Ledger):
        return budgets.copy().charge(pods) if budgets.budgets else 0
    return Ledger(budgets).charge(pods) if budgets else 0


def units_of(
    session: Session,
    victim: Job,
    whole_ok: bool,
    sparse: Callable[[Resources], SparseReq] | None = None,
    ledger: Ledger | None = None,
) -> list[Unit]:
    """The victim's elastic members above its leaves' minimums (youngest first, lowest task priority
    first), then the whole rest (only when `whole_ok`: its min runtime has passed). A unit's order:
    (priority, pods whose eviction breaks a PodDisruptionBudget, pods, youngest first, gang, pod); its
    violations are counted against the ledger (the session's: what committed evictions left)."""
    if ledger is None:
        ledger = Ledger(budgets_by_namespace(session))
    gone = session.gone
    groups = [victim.root] if not victim.root.children else victim.root.walk()
    out: list[Unit] = []
    extras: set[str] = set()
    rest: list[Pod] = []  # every live pod, in `Job.bound` order
    times: list[float] = []
    for g in groups:
        live = [p for p in g.bound if not p.deleting and (not gone or p.key not in gone)]
        rest.extend(live)
        for p in g.bound:
            if p.start_time is not None:
                times.append(p.start_time)
        if not g.is_leaf():
            continue
        surplus = len(live) - leaf_minimum(g)
        if surplus <= 0:
            continue
        live.sort(key=lambda p: (p.task_priority, -(p.start_time or 0.0), p.name), reverse=False)
        for p in live[:surplus]:
            extras.add(p.key)
            order = (victim.priority, violations((p,), ledger), 1, -(p.start_time or 0.0), victim.key, p.name)
            out.append(_unit(session, victim, (p,), False, order, sparse))
    if whole_ok and rest:
        start = min(times) if times else None  # as `Session.started`
        core = len(rest) - len(extras)
        order = (victim.priority, violations(rest, ledger), core, -(start or 0.0), victim.key, "")
        out.append(_unit(session, victim, tuple(rest), True, order, sparse))
    if ledger.budgets and ledger.guards(rest):
        for u in out:
            u.guarded = bool(ledger.guards(u.pods))
    return out


def _unit(
    session: Session,
    victim: Job,
    pods: tuple[Pod, ...],
    whole: bool,
    order: tuple[object, ...],
    sparse: Callable[[Resources], SparseReq] | None,
) -> Unit:
    table = session.table
    known = sparse or table.sparse_known
    by_name = table.by_name
    first = pods[0] if pods else None
    if first is not None and all(
        p.node_name == first.node_name and (p.request is first.request or p.request == first.request) for p in pods
    ):
        # the usual unit: pods of one request on one node (a gang never across nodes, or an elastic member)
        node = by_name.get(first.node_name)
        if node is None:
            return Unit(victim, pods, whole, order)
        one = [0] * len(table.dims)
        for i, v in known(first.request):
            one[i] += v * len(pods)
        return Unit(victim, pods, whole, order, (node,), ((node, tuple(one)),))
    count: dict[tuple[int, Resources], int] = {}  # (node, request) -> pods: a gang's pods share requests
    for p in pods:
        node = by_name.get(p.node_name)
        if node is not None:
            k = (node, p.request)
            count[k] = count.get(k, 0) + 1
    gains: dict[int, list[int]] = {}
    for (node, req), n in count.items():
        vec = gains.get(node)
        if vec is None:
            vec = gains[node] = [0] * len(table.dims)
        for i, v in known(req):
            vec[i] += v * n
    nodes = tuple(sorted(gains))
    return Unit(victim, pods, whole, order, nodes, tuple((n, tuple(gains[n])) for n in nodes))


@dataclass(slots=True, eq=False)
class Group:
    """Running gangs an action's rules answer alike; `rep` is the one they are asked about."""

    rep: Job
    victims: list[Job]
    live: int = 0  # victims with a pod still running
    slow: int = 0  # of those, the ones whose min runtime has not passed (no whole unit)
    judged: bool = False  # min runtimes asked
    units: list[Unit] | None = None  # cheapest first; built the first time a preemptor may take them


@dataclass(slots=True)
class Allowed:
    """What one preemptor may take: the allowed groups, and why the other running gangs are not."""

    groups: list[Group]
    notes: list[str]


class Shared:
    """What every take-back action of a session reads about a running gang: whether a pod of it still
    runs, and its units (per `whole_ok`). Valid until a commit evicts a pod of the gang: `sync` reads the
    session's commits since the last call (every eviction is in one) and forgets those gangs."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen = 0  # commits of the record already read
        self.log: list[str] = []  # the gangs those commits evicted from, in commit order (each reader keeps its place)
        self.units: dict[tuple[str, bool], list[Unit]] = {}
        self.live: dict[str, bool] = {}
        self.sparse: dict[Resources, SparseReq] = {}
        self.ledger = Ledger(budgets_by_namespace(session))  # reduced by every committed eviction
        self.guarded_by: dict[BudgetKey, set[str]] = {}  # budget -> gangs whose units were counted against it
        self.running = [session.running[k] for k in sorted(session.running)]

    @staticmethod
    def of(session: Session) -> Shared:
        return session.shared("takeback.victims", lambda: Shared(session))

    def sync(self, since: int) -> tuple[set[str], int]:
        """The gangs commits changed since position `since` of the touched log (read the new commits
        first, forgetting those gangs' facts), and the log's end to ask from next time. A commit changes
        the gangs it evicted from and, when its evictions spent a PodDisruptionBudget (charged to the
        session's ledger in eviction order), the gangs that budget selects a pod of."""
        commits = self.session.record.commits
        if len(commits) > self.seen:
            for c in commits[self.seen :]:
                hit = {k for pod, _ in c.evictions if (k := self._job_of(pod)) is not None}
                if self.ledger.budgets:
                    hit.update(self._charge([pod for pod, _ in c.evictions]))
                touched = sorted(hit)
                for key in touched:
                    self.units.pop((key, True), None)
                    self.units.pop((key, False), None)
                    self.live.pop(key, None)
                self.log.extend(touched)
            self.seen = len(commits)
        return set(self.log[since:]), len(self.log)

    def _charge(self, keys: list[str]) -> set[str]:
        """Charge these evicted pods to the session's ledger: the gangs counted against a budget it changed."""
        bound = self.session.snapshot.bound_pods
        before = dict(self.ledger.left)
        self.ledger.charge(p for k in keys if (p := bound.get(k)) is not None)
        out: set[str] = set()
        for k in sorted(self.ledger.left):
            if before.get(k) != self.ledger.left[k]:
                out.update(self.guarded_by.get(k, ()))
        return out

    def _job_of(self, pod_key: str) -> str | None:
        """The running job an evicted pod belonged to (every victim pod is a bound pod of one)."""
        pod = self.session.snapshot.bound_pods.get(pod_key)
        if pod is None:
            return None
        key = pod.group_key or pod.key
        return key if key in self.session.running else None

    def is_live(self, victim: Job) -> bool:
        hit = self.live.get(victim.key)
        if hit is None:
            gone = self.session.gone
            pods = victim.root.bound if not victim.root.children else victim.bound
            hit = self.live[victim.key] = any(not p.deleting and (not gone or p.key not in gone) for p in pods)
        return hit

    def units_of(self, victim: Job, whole_ok: bool) -> list[Unit]:
        hit = self.units.get((victim.key, whole_ok))
        if hit is None:
            hit = self.units[(victim.key, whole_ok)] = units_of(self.session, victim, whole_ok, self.known, self.ledger)
            if any(u.guarded for u in hit):
                for k in self.ledger.guards(p for u in hit for p in u.pods):
                    self.guarded_by.setdefault(k, set()).add(victim.key)
        return hit

    def known(self, req: Resources) -> SparseReq:
        hit = self.sparse.get(req)
        if hit is None:
            hit = self.sparse[req] = self.session.table.sparse_known(req)
        return hit


class Pool:
    """One action's victim candidates (see the module docstring for what stays valid when)."""

    def __init__(
        self,
        session: Session,
        rule: VictimRule,
        group_of: Callable[[Session, Job], Hashable] | None,
        reclaim: bool,
    ) -> None:
        self.session = session
        self.rule = rule
        self.reclaim = reclaim
        per_victim = group_of is None or session.has_hook("victim_filter")
        groups: dict[Hashable, Group] = {}
        self._group_of: dict[str, Group] = {}
        self.shared = Shared.of(session)
        self._log = self.shared.sync(0)[1]
        self._live: dict[str, bool] = {}  # victim -> counted as live in its group
        self._ok: dict[str, bool] = {}  # victim -> its min runtime has passed (asked once its group may be taken)
        for victim in self.shared.running:
            key = victim.key
            gk: Hashable = key if per_victim or group_of is None else group_of(session, victim)
            g = groups.get(gk)
            if g is None:
                g = groups[gk] = Group(victim, [])
            g.victims.append(victim)
            self._group_of[key] = g
            live = self._live[key] = self.shared.is_live(victim)
            g.live += live
        self.groups = list(groups.values())
        self._allowed: dict[tuple[str, int], Allowed] = {}
        self._generation = session.table.generation
        self._levels: dict[tuple[int, ...], dict[int, int]] = {}  # candidate domain list -> node -> domain id
        # (domain list, allowed groups) -> domain id -> merged; allowed groups -> their units, cheapest first
        self._merged: dict[tuple[object, ...], tuple[dict[int, int], dict[int, Merged]]] = {}
        self._ordered: dict[tuple[object, ...], list[Unit]] = {}
        self._units_of: dict[str, list[Unit]] = {}  # victim -> the units the lists above hold of it

    def _judge(self, g: Group) -> None:
        """Ask the min runtime of the group's live victims (once: a victim not past it counts as slow)."""
        if not g.judged:
            g.judged = True
            for v in g.victims:
                if self._live[v.key]:
                    ok = self._ok[v.key] = runtime_ok(self.session, v, self.reclaim)
                    g.slow += not ok

    def _build(self, g: Group) -> list[Unit]:
        """The group's units, cheapest first."""
        if g.units is None:
            self._judge(g)
            units: list[Unit] = []
            for v in g.victims:
                if self._live[v.key]:
                    mine = self._units_of[v.key] = self.shared.units_of(v, self._ok[v.key])
                    units.extend(mine)
            units.sort(key=lambda u: u.order)
            g.units = units
        return g.units

    def any_unit(self, allowed: Allowed, preemptor: Job) -> bool:
        """Whether an allowed victim other than the preemptor itself has something to take."""
        for g in allowed.groups:
            for v in g.victims:
                if v.key != preemptor.key and self._live[v.key] and self.shared.units_of(v, self._ok[v.key]):
                    return True
        return False

    def allowed(self, preemptor: Job) -> Allowed:
        """The groups the preemptor may take from and why the other running gangs are not candidates.
        Rules depend on the preemptor's queue and priority only: memoised per pair until a commit."""
        s = self.session
        touched, self._log = self.shared.sync(self._log)
        self._forget(touched)
        if s.table.generation != self._generation:
            self._allowed.clear()
            self._generation = s.table.generation
        key = (preemptor.queue, preemptor.priority)
        hit = self._allowed.get(key)
        if hit is None:
            groups: list[Group] = []
            refused: dict[str, int] = {}
            for g in self.groups:
                if not g.live:
                    continue
                why = self.rule(s, preemptor, g.rep)
                if why is None and not s.victim_allowed(preemptor, g.rep):
                    why = "a plugin protects it"
                if why is not None:
                    refused[why] = refused.get(why, 0) + g.live
                    continue
                self._judge(g)
                if g.slow:
                    refused[SLOW] = refused.get(SLOW, 0) + g.slow
                groups.append(g)
            notes = [f"{n} running gang(s): {reason}" for reason, n in sorted(refused.items())]
            hit = self._allowed[key] = Allowed(groups, notes)
        return hit

    def _forget(self, victims: set[str]) -> None:
        """A commit evicted pods of these gangs: their units change (fewer, or none once the gang is gone).
        Patch every list that holds them: the group's, each allowed set's, and each merged domain that
        one of their nodes lies in (only those domains' running sums are recomputed)."""
        changed: dict[str, tuple[list[Unit], list[Unit]]] = {}  # victim -> (units before, units now)
        for key in sorted(victims):
            g = self._group_of.get(key)
            if g is None:
                continue
            live = self.shared.is_live(self.session.running[key])
            if self._live[key] and not live:
                g.live -= 1
                g.slow -= g.judged and not self._ok[key]
            self._live[key] = live
            before = self._units_of.pop(key, None)
            if before is None:
                continue  # its units were never built here: no list holds them
            now = self.shared.units_of(self.session.running[key], self._ok[key]) if live else []
            if now:
                self._units_of[key] = now
            changed[key] = (before, now)
        if not changed:
            return
        groups_of = {k: id(self._group_of[k]) for k in changed}

        def olds(keys: Iterable[str]) -> list[Unit]:
            return [u for k in sorted(keys) for u in changed[k][0]]

        def news(keys: Iterable[str]) -> list[Unit]:
            return [u for k in sorted(keys) for u in changed[k][1]]

        for g in self.groups:
            keys = {k for k, gid in groups_of.items() if gid == id(g)}
            if keys and g.units is not None:
                g.units = _replaced(g.units, olds(keys), news(keys))
        for ck, order in list(self._ordered.items()):
            keys = {k for k, gid in groups_of.items() if gid in ck}
            if keys:
                self._ordered[ck] = _replaced(order, olds(keys), news(keys))
        for ck, (where, merged) in self._merged.items():
            by_dom: dict[int, set[str]] = {}  # domain -> the changed gangs with a unit in it
            for k, gid in groups_of.items():
                if gid in ck[1:]:
                    for u in changed[k][0]:
                        for n in u.nodes:
                            d = where.get(n)
                            if d is not None:
                                by_dom.setdefault(d, set()).add(k)
            for d in sorted(by_dom):
                m = merged.get(d)
                if m is None:
                    continue
                keys = by_dom[d]
                patched = _patched(m, olds(keys), _entries(news(keys), where, d))
                if patched is None:
                    del merged[d]
                else:
                    merged[d] = patched

    # --- domains ------------------------------------------------------------------------------
    def _node_domains(self, doms: Sequence[Domain]) -> tuple[tuple[int, ...], dict[int, int]]:
        key = tuple(id(d) for d in doms)
        hit = self._levels.get(key)
        if hit is None:
            hit = self._levels[key] = {n: id(d) for d in doms for n in d.all_nodes()}
        return key, hit

    def contains(self, allowed: Allowed, job: Job) -> bool:
        """Whether the job itself is among the allowed victims (its own units are never taken)."""
        g = self._group_of.get(job.key)
        return g is not None and any(g is a for a in allowed.groups)

    def merged_lists(self, allowed: Allowed, doms: Sequence[Domain], job: Job) -> dict[int, Merged]:
        """Per domain of `doms` (by id): every allowed unit touching it but the job's own, merged
        (`Merged`); built in one pass over the allowed units, once per set of allowed groups until a
        commit evicts from one of them (`_forget`)."""
        key, where = self._node_domains(doms)
        skip = job.key if self.contains(allowed, job) else ""
        ck: tuple[object, ...] = (key, *(id(g) for g in allowed.groups))
        cached = None if skip else self._merged.get(ck)
        if cached is not None:
            return cached[1]
        order = self._ordered.get(ck[1:])
        if order is None:
            lists = [self._build(g) for g in allowed.groups]
            # a list of its own (patched in place apart from the groups' lists)
            order = self._ordered[ck[1:]] = list(lists[0]) if len(lists) == 1 else list(heapq.merge(*lists, key=_order))
        hit = _merge_level(order, where, skip, self.shared.ledger)
        if not skip:  # the usual case: the job is no victim, so the lists serve every job of this set
            self._merged[ck] = (where, hit)
        return hit


@dataclass(slots=True, eq=False)
class Merged:
    """Every allowed victim touching one domain, cheapest first, with what each releases there. The
    running sums (`cum[i]`: entries 0..i; pods; pods breaking a budget) are made on demand, as far as a
    query needs them: most gangs fit after a short prefix, so long lists are never summed whole (their
    total, for the quick rejection, is one column sum)."""

    units: list[Unit] = field(default_factory=list)
    gains: list[Sequence[int]] = field(default_factory=list)  # what each releases in the domain
    cum: list[list[int]] = field(default_factory=list)
    pods: list[int] = field(default_factory=list)
    breaks: list[int] = field(default_factory=list)  # running sum of pods whose eviction breaks a budget
    total: list[int] | None = None
    # per dimension, at least the largest release per pod evicted of any entry (`Unit.per_pod`): what
    # bounds the pods any prefix must evict (`cost_bound`); kept as an upper bound when the list is patched
    rates: list[float] | None = None
    ledger: Ledger | None = None  # the session's, when budgets exist: `breaks` are then counted jointly
    left: Ledger | None = None  # the ledger after the summed prefix (made again from `ledger` on demand)

    def sum_all(self) -> list[int]:
        if self.total is None:
            self.total = [sum(col) for col in zip(*self.gains, strict=True)]
        return self.total

    def rate_bounds(self) -> list[float]:
        if self.rates is None:
            self.rates = _rates(self.units, None)
        return self.rates

    def extend(self) -> None:
        """Sum one more entry. With budgets, its violations are counted after the prefix's evictions
        (the prefix's ledger), so entries that together spend a budget count their violations jointly."""
        i = len(self.cum)
        u, gain = self.units[i], self.gains[i]
        breaks = u.breaks
        if self.ledger is not None and self.ledger.budgets:
            if self.left is None:
                self.left = self.ledger.copy()
                self.left.charge(p for v in self.units[:i] if v.guarded for p in v.pods)
            breaks = self.left.charge(u.pods) if u.guarded else 0
        if i:
            self.cum.append(list(map(add, self.cum[-1], gain)))
            self.pods.append(self.pods[-1] + len(u.pods))
            self.breaks.append(self.breaks[-1] + breaks)
        else:
            self.cum.append(list(gain))
            self.pods.append(len(u.pods))
            self.breaks.append(breaks)


def _merge_level(
    units: list[Unit], where: dict[int, int], skip: str, ledger: Ledger | None = None
) -> dict[int, Merged]:
    """One pass over the units (cheapest first): per domain, the units with a pod in it and what each
    releases there (each list counting budgets with `ledger`)."""
    out: dict[int, Merged] = {}
    for u in units:
        if u.job.key == skip:
            continue
        for d, gain in _in_domains(u, where):
            m = out.get(d)
            if m is None:
                out[d] = Merged([u], [gain], ledger=ledger)
            else:
                m.units.append(u)
                m.gains.append(gain)
    return out


def _in_domains(u: Unit, where: dict[int, int]) -> Iterable[tuple[int, Sequence[int]]]:
    """(domain id, what the unit releases in it) for each domain of `where` holding one of its nodes."""
    if len(u.gains) == 1:  # the common case: a gang on one node
        node, vec = u.gains[0]
        d = where.get(node)
        return ((d, vec),) if d is not None else ()
    acc: dict[int, Sequence[int]] = {}
    for node, vec in u.gains:
        d = where.get(node)
        if d is not None:
            sums = acc.get(d)
            acc[d] = vec if sums is None else list(map(add, sums, vec))
    return acc.items()


def _replaced(units: list[Unit], before: list[Unit], now: list[Unit]) -> list[Unit]:
    """`units` (cheapest first) with `before` taken out and `now` put in, in place, still in order (orders
    are unique: each unit is found by binary search); returned for convenience. In place because the
    lists are long (every allowed unit) and a commit changes a few."""
    for u in before:
        i = bisect_left(units, u.order, key=_order)
        if i < len(units) and units[i] is u:
            del units[i]
    for u in now:
        insort(units, u, key=_order)
    return units


def _entries(units: Sequence[Unit], where: dict[int, int], dom: int) -> list[tuple[Unit, Sequence[int]]]:
    """What each unit releases inside one domain (units with no pod there left out)."""
    return [(u, gain) for u in units for d, gain in _in_domains(u, where) if d == dom]


def _patched(m: Merged, before: list[Unit], now: list[tuple[Unit, Sequence[int]]]) -> Merged | None:
    """The domain's merged list with `before` taken out and `now` put in, in place (as `_replaced`);
    None when it is left empty. The running sums before the first change are kept, the total is kept by
    difference and the rate bounds stay bounds."""
    units, gains, total = m.units, m.gains, m.total
    first = len(units)  # the first position that changed
    for u in before:
        i = bisect_left(units, u.order, key=_order)
        if i < len(units) and units[i] is u:
            if total is not None:
                total = list(map(sub, total, gains[i]))
            del units[i], gains[i]
            first = min(first, i)
    for u, g in now:
        i = bisect_left(units, u.order, key=_order)
        units.insert(i, u)
        gains.insert(i, g)
        if total is not None:
            total = list(map(add, total, g))
        first = min(first, i)
    if not units:
        return None
    keep = min(first, len(m.cum))
    del m.cum[keep:], m.pods[keep:], m.breaks[keep:]
    m.left = None  # the session's ledger may have changed too (a commit spent a budget)
    m.total = total
    if m.rates is not None and now:
        m.rates = _rates([u for u, _ in now], m.rates)
    return m


def _rates(units: Sequence[Unit], start: list[float] | None) -> list[float]:
    """Per dimension the largest `Unit.per_pod` of the units and `start`."""
    out = list(start) if start is not None else None
    for u in units:
        rate = u.per_pod()
        if rate:  # a unit on no node of the table releases nothing anywhere
            out = list(rate) if out is None else list(map(max, out, rate))
    return out if out is not None else []


def cheapest_prefix(m: Merged, free: Sequence[int], need: Sequence[int]) -> int | None:
    """The length of the shortest prefix of `m` whose release lets `free` hold `need` (None: none does).
    Releases only add, so whether a prefix is enough is monotone in its length: a binary search over
    the sums made so far, else they are extended until one is enough (the total says one will be)."""
    if fits_vec(free, need):
        return 0
    if not fits_sum(free, m.sum_all(), need):
        return None
    if m.cum and fits_sum(free, m.cum[-1], need):
        lo, hi = 0, len(m.cum) - 1
        while lo < hi:  # the first index whose running sum is enough
            mid = (lo + hi) // 2
            if fits_sum(free, m.cum[mid], need):
                hi = mid
            else:
                lo = mid + 1
        return lo + 1
    while True:
        m.extend()
        if fits_sum(free, m.cum[-1], need):
            return len(m.cum)


Cost = tuple[int, int, int]  # (priority of the dearest victim, pods breaking a budget, pods evicted)


def prefix_cost(m: Merged, free: Sequence[int], need: Sequence[int]) -> Cost | None:
    """The cost of the cheapest prefix of `m` that makes room for `need` (None: none does)."""
    n = cheapest_prefix(m, free, need)
    if n is None:
        return None
    if not n:
        return (0, 0, 0)
    worst = m.units[n - 1].order[0]
    assert isinstance(worst, int)
    return (worst, m.breaks[n - 1], m.pods[n - 1])


def cost_bound(m: Merged, free: Sequence[int], need: Sequence[int]) -> Cost | None:
    """A lower bound of `prefix_cost` (None only where it is None), made without summing the list: the
    dearest victim is at least as dear as the first, and a prefix releases per pod at most the largest
    rate of any entry, so it evicts at least the deficit over that rate on every dimension."""
    deficits = list(map(sub, need, free))
    if max(deficits) <= 0:
        return (0, 0, 0)  # it fits already: the exact cost
    rates = m.rate_bounds()
    pods = 0
    for i, deficit in enumerate(deficits):
        if deficit > 0:
            r = rates[i] if i < len(rates) else 0
            if r <= 0:
                return None  # no entry releases any of it
            if r != INF:
                lb = -(-deficit // r)
                if lb > pods:
                    pods = int(lb)
    worst = m.units[0].order[0]
    assert isinstance(worst, int)
    return (worst, 0, pods)


def cheapest(
    entries: Sequence[tuple[str, Merged, Sequence[int]]], need: Sequence[int], k: int
) -> list[tuple[Cost, str, int]]:
    """The `k` entries (path, victims, free room) whose cheapest prefix making room for `need` costs
    least, as (cost, path, index), by cost then path then index; entries no prefix makes room in are
    left out. Entries are costed in the order of their lower bounds (`cost_bound`) and the walk stops
    once a bound exceeds the k-th cost found: most domains of a level are never summed."""
    if len(entries) <= k:
        exact = [
            (c, path, i) for i, (path, m, free) in enumerate(entries) if (c := prefix_cost(m, free, need)) is not None
        ]
        exact.sort()
        return exact
    bounds = [(b, path, i) for i, (path, m, free) in enumerate(entries) if (b := cost_bound(m, free, need)) is not None]
    bounds.sort()
    best: list[tuple[Cost, str, int]] = []
    for b, path, i in bounds:
        if len(best) >= k and (b, path, i) > best[k - 1]:
            break
        _, m, free = entries[i]
        c = prefix_cost(m, free, need)
        if c is not None:
            insort(best, (c, path, i))
    return best[:k]


def fits_vec(free: Sequence[int], need: Sequence[int]) -> bool:
    for f, x in zip(free, need, strict=True):  # noqa: SIM110 - a loop is twice as fast as all() here
        if f < x:
            return False
    return True


def fits_sum(free: Sequence[int], extra: Sequence[int], need: Sequence[int]) -> bool:
    """`fits_vec(free + extra, need)` without making the sum (the ranking's innermost test)."""
    for f, e, x in zip(free, extra, need, strict=True):  # noqa: SIM110 - as above
        if f + e < x:
            return False
    return True


class Walk:
    """A domain's victims cheapest first, skipping those of a queue in `blocked` (a queue added while
    walking is skipped from then on). A walk stops as soon as the gang fits, so it visits a short prefix
    of long lists: cheaper than splitting every list by queue up front. With budgets they are counted
    jointly: the walk copies the session's ledger and `take` charges each victim taken to it, and a unit
    a budget guards is ranked by its violations after those (so once a victim spends a budget's last
    allowed disruption, the others it guards fall behind unguarded victims of their priority).
    `keys`: with budgets, each yielded unit's order as ranked then (otherwise its `order`)."""

    def __init__(self, m: Merged, blocked: set[str]) -> None:
        self.units = m.units
        self.blocked = blocked
        self.ledger = m.ledger.copy() if m.ledger is not None and m.ledger.budgets else None
        self.keys: dict[int, tuple[object, ...]] = {}
        self._version = 0  # takes that changed the ledger
        self._charged: set[str] = set()  # pods charged (a gang's whole unit holds its elastic members' pods)

    def take(self, u: Unit) -> None:
        """The walk's last unit was evicted: charge it to the ledger."""
        if self.ledger is not None and u.guarded:
            self.ledger.charge(self._fresh(u))
            self._charged.update(p.key for p in u.pods)
            self._version += 1

    def _fresh(self, u: Unit) -> list[Pod]:
        return [p for p in u.pods if p.key not in self._charged]

    def __iter__(self) -> Iterator[Unit]:
        units, blocked = self.units, self.blocked
        if self.ledger is None:
            for u in units:
                if u.job.queue not in blocked:
                    yield u  # ranked as `u.order` (not in `keys`)
            return
        ledger = self.ledger
        held = [u for u in units if u.guarded]  # their order depends on what was taken
        memo: dict[int, tuple[int, tuple[object, ...]]] = {}  # id -> (version, order)
        i, n = 0, len(units)
        while True:
            while i < n and (units[i].guarded or units[i].job.queue in blocked):
                i += 1
            best: Unit | None = None
            best_key: tuple[object, ...] = ()
            for u in held:
                if u.job.queue in blocked:
                    continue
                hit = memo.get(id(u))
                if hit is None or hit[0] != self._version:
                    hit = memo[id(u)] = (self._version, (u.order[0], violations(self._fresh(u), ledger), *u.order[2:]))
                if best is None or hit[1] < best_key:
                    best, best_key = u, hit[1]
            if i < n and (best is None or units[i].order < best_key):
                u = units[i]
                i += 1
                self.keys[id(u)] = u.order
                yield u
            elif best is not None:
                held.remove(best)
                self.keys[id(best)] = best_key
                yield best
            else:
                return


def _order(u: Unit) -> tuple[object, ...]:
    return u.order

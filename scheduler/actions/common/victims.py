"""Victim candidates for take-back, batch-shaped: built once per action, kept in step with its commits.

A take-back action asks, for every waiting gang, which running gangs it may take and how cheaply each
topology domain could be emptied for it. Asked naively that is every running gang per waiting gang. Here:

- running gangs are split into *groups* that an action's rules answer alike (`Rules.group`, e.g. reclaim:
  the victim's queue and preemptibility), so a preemptor's rules are asked once per group, not per gang;
- each group's units (what one eviction takes, `Unit`) are built once, cheapest first, the first time a
  preemptor may take from the group, and per topology level indexed by domain (the units touching each
  domain, with what they release there, and the sum of it all);
- a domain is skipped outright when its free capacity plus everything the allowed groups could release
  there cannot hold the gang (no victim set can make it fit); otherwise its allowed groups' lists are
  merged lazily (cheapest first) only until the gang fits, to rank the domain.

Validity: a unit depends on which of its gang's pods are still running, and nothing else changes it
within a session; so after a commit the evicted gangs' units are rebuilt, with the indexes of the groups
holding them (`evicted`). Rules answers depend on queue usage, which every commit changes: they are asked
again after each commit (`Pool.allowed` keys its memo by the table's generation).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from scheduler.api.pod import Pod
from scheduler.framework.jobs import Job, leaf_minimum
from scheduler.framework.nodes import Domain
from scheduler.framework.session import Session

# why a victim gang is refused, by rule: None means it may be taken
VictimRule = Callable[[Session, Job, Job], "str | None"]
SLOW = "has not run its queue's min runtime"


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


def units_of(session: Session, victim: Job, whole_ok: bool) -> list[Unit]:
    """The victim's elastic members above its leaves' minimums (youngest first, lowest task priority
    first), then the whole rest (only when `whole_ok`: its min runtime has passed)."""
    start = session.started(victim)
    out: list[Unit] = []
    extras: set[str] = set()
    for g in victim.root.walk():
        if not g.is_leaf():
            continue
        live = [p for p in g.bound if not p.deleting and p.key not in session.gone]
        surplus = len(live) - leaf_minimum(g)
        if surplus <= 0:
            continue
        live.sort(key=lambda p: (p.task_priority, -(p.start_time or 0.0), p.name), reverse=False)
        for p in live[:surplus]:
            extras.add(p.key)
            order = (victim.priority, 1, -(p.start_time or 0.0), victim.key, p.name)
            out.append(_unit(session, victim, (p,), False, order))
    if whole_ok:
        rest = tuple(live_pods(session, victim))
        if rest:
            core = len(rest) - len(extras)
            out.append(_unit(session, victim, rest, True, (victim.priority, core, -(start or 0.0), victim.key, "")))
    return out


def _unit(session: Session, victim: Job, pods: tuple[Pod, ...], whole: bool, order: tuple[object, ...]) -> Unit:
    table = session.table
    gains: dict[int, list[int]] = {}
    for p in pods:
        node = table.by_name.get(p.node_name)
        if node is None:
            continue
        vec = gains.get(node)
        if vec is None:
            vec = gains[node] = [0] * len(table.dims)
        for i, v in table.sparse_known(p.request):
            vec[i] += v
    nodes = tuple(sorted(gains))
    return Unit(victim, pods, whole, order, nodes, tuple((n, tuple(gains[n])) for n in nodes))


Entry = tuple[Unit, list[int]]  # a unit and what it releases inside one domain
Slot = tuple[list[Entry], list[int]]  # one group's entries in one domain, cheapest first, and their sum
Index = dict[int, Slot]  # domain id -> slot


@dataclass(slots=True, eq=False)
class Group:
    """Running gangs an action's rules answer alike; `rep` is the one they are asked about."""

    rep: Job
    victims: list[Job]
    live: int = 0  # victims with a pod still running
    slow: int = 0  # of those, the ones whose min runtime has not passed (no whole unit)
    units: list[Unit] | None = None  # cheapest first; built the first time a preemptor may take them
    index: dict[tuple[int, ...], Index] = field(default_factory=dict)  # per candidate domain list


@dataclass(slots=True)
class Allowed:
    """What one preemptor may take: the allowed groups, and why the other running gangs are not."""

    groups: list[Group]
    notes: list[str]

    def any_unit(self, preemptor: Job) -> bool:
        return any(u.job.key != preemptor.key for g in self.groups for u in g.units or ())


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
        for key in sorted(session.running):
            victim = session.running[key]
            gk: Hashable = key if per_victim or group_of is None else group_of(session, victim)
            g = groups.get(gk)
            if g is None:
                g = groups[gk] = Group(victim, [])
            g.victims.append(victim)
            self._group_of[key] = g
        self.groups = list(groups.values())
        self._units: dict[str, list[Unit]] = {}
        for g in self.groups:
            self._count(g)
        self._allowed: dict[tuple[str, int], Allowed] = {}
        self._generation = session.table.generation
        self._levels: dict[tuple[int, ...], dict[int, int]] = {}  # candidate domain list -> node -> domain id

    def _count(self, g: Group) -> None:
        g.live = sum(1 for v in g.victims if live_pods(self.session, v))

    def _build(self, g: Group) -> list[Unit]:
        """The group's units, cheapest first (asks min runtimes: a victim not yet past it counts as slow)."""
        if g.units is None:
            s = self.session
            units: list[Unit] = []
            g.slow = 0
            for v in g.victims:
                if not live_pods(s, v):
                    continue
                mine = self._units.get(v.key)
                ok = runtime_ok(s, v, self.reclaim)
                if not ok:
                    g.slow += 1
                if mine is None:
                    mine = self._units[v.key] = units_of(s, v, ok)
                units.extend(mine)
            units.sort(key=lambda u: u.order)
            g.units = units
        return g.units

    def allowed(self, preemptor: Job) -> Allowed:
        """The groups the preemptor may take from and why the other running gangs are not candidates.
        Rules depend on the preemptor's queue and priority only: memoised per pair until a commit."""
        s = self.session
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
                self._build(g)
                if g.slow:
                    refused[SLOW] = refused.get(SLOW, 0) + g.slow
                groups.append(g)
            notes = [f"{n} running gang(s): {reason}" for reason, n in sorted(refused.items())]
            hit = self._allowed[key] = Allowed(groups, notes)
        return hit

    def evicted(self, victims: Iterable[str]) -> None:
        """A commit evicted pods of these gangs: rebuild their units and their groups' indexes."""
        for key in sorted(set(victims)):
            self._units.pop(key, None)
            g = self._group_of.get(key)
            if g is not None:
                g.units = None
                g.index.clear()
                self._count(g)

    # --- domains ------------------------------------------------------------------------------
    def _node_domains(self, doms: Sequence[Domain]) -> tuple[tuple[int, ...], dict[int, int]]:
        key = tuple(id(d) for d in doms)
        hit = self._levels.get(key)
        if hit is None:
            hit = self._levels[key] = {n: id(d) for d in doms for n in d.all_nodes()}
        return key, hit

    def _index(self, g: Group, key: tuple[int, ...], where: dict[int, int]) -> Index:
        idx = g.index.get(key)
        if idx is None:
            idx = g.index[key] = {}
            dims = len(self.session.table.dims)
            for u in self._build(g):
                mine: dict[int, list[int]] = {}
                for node, vec in u.gains:
                    d = where.get(node)
                    if d is None:
                        continue
                    acc = mine.get(d)
                    if acc is None:
                        acc = mine[d] = [0] * dims
                    for i, v in enumerate(vec):
                        if v:
                            acc[i] += v
                for d, acc in mine.items():
                    slot = idx.get(d)
                    if slot is None:
                        slot = idx[d] = ([], [0] * dims)
                    slot[0].append((u, acc))
                    total = slot[1]
                    for i, v in enumerate(acc):
                        total[i] += v
        return idx

    def lists(self, allowed: Allowed, doms: Sequence[Domain]) -> Callable[[Domain], list[Slot]]:
        """Per domain of `doms`: the allowed groups' entries there with their sums."""
        key, where = self._node_domains(doms)
        indexes = [self._index(g, key, where) for g in allowed.groups]

        def of(dom: Domain) -> list[Slot]:
            k = id(dom)
            return [hit for idx in indexes if (hit := idx.get(k)) is not None]

        return of


def merged(lists: Sequence[Slot], skip: str) -> Iterator[Entry]:
    """The entries of several groups in one domain, cheapest first, without the preemptor's own."""
    it: Iterable[Entry] = lists[0][0] if len(lists) == 1 else heapq.merge(*(e for e, _ in lists), key=_order)
    for e in it:
        if e[0].job.key != skip:
            yield e


def _order(e: Entry) -> tuple[object, ...]:
    return e[0].order

"""Take-back: the one driver reclaim, preempt and consolidate share.

For one pending gang it chooses victims (whole running gangs, a gang's elastic members above minMember
first), evicts them in a statement and places the gang on what they release (pipelined), all in the same
statement, so nothing is evicted unless the gang then really fits:

- candidate domains are those of the gang's topology levels (required level, or preferred then wider, or
  the cluster); at each level the domains are ranked by an estimate of the victim set that frees enough
  room inside them (cheapest first) and simulated in that order, at most `DOMAINS_PER_LEVEL`;
- in one domain, victims are taken cheapest first (lowest priority, fewest pods whose eviction breaks a
  PodDisruptionBudget after the victims taken before, fewest pods, youngest, then by name) until the
  gang's minimum fits; then every victim the placement does not need is given back (those on nodes it
  did not use at once, then one by one, most expensive first; a retrial keeps the victims it shares with
  the one before, see `Trail`).

An action supplies its rules (`Rules`): which gangs may take back, which victims they may take, and the
checks that depend on the statement's state (queue fair shares).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from operator import sub

from scheduler.actions.common.admit import admit
from scheduler.actions.common.gang import Chosen, GangPlacer, GroupPlan, PlacementError
from scheduler.actions.common.order import queue_fair
from scheduler.actions.common.topology import fits, levels_of
from scheduler.actions.common.victims import Allowed, Merged, Pool, Unit, Walk, cheapest, fits_vec
from scheduler.api.pod import Pod
from scheduler.api.reasons import Reason
from scheduler.framework.jobs import Group, Job
from scheduler.framework.nodes import Domain
from scheduler.framework.record import GangDecision
from scheduler.framework.session import Session
from scheduler.framework.statement import ALLOCATE, PIPELINE, Statement

Bucket = Callable[[set[str]], Walk]  # a domain's victims cheapest first, skipping blocked queues
DOMAINS_PER_LEVEL = 4  # domains simulated per topology level (ranked by estimated victim cost)
# tests set it: every trial `_minimize` skips is redone and must fail (the skip changes no decision), and
# every trial it redoes finds the room it predicted
VALIDATE_SKIPS = False
MINIMIZE_TRIES = 16  # victims tried for removal one by one after a placement was found


@dataclass(slots=True)
class Rules:
    """An action's rules. `victim(session, preemptor, victim_job)`: why it may not be a victim (None: it
    may). `after_evict(session, preemptor, unit)`: why this eviction breaks a rule given the statement's
    state (None: fine). `after_place(session, preemptor)`: why the placement breaks a rule."""

    action: str
    victim: Callable[[Session, Job, Job], str | None]
    after_evict: Callable[[Session, Job, Unit], str | None] = lambda s, j, u: None
    after_place: Callable[[Session, Job], str | None] = lambda s, j: None
    # consolidate: every victim gang must be re-placed in the same statement (its re-created pods)
    replace_victims: bool = False
    # victims with equal keys get the same `victim` answer from any preemptor at any moment, so the rules
    # are asked once per group (None: once per victim gang)
    group: Callable[[Session, Job], Hashable] | None = None


@dataclass(slots=True)
class Trail:
    """The units a statement has evicted, in order, each with the statement's mark just after it, and
    the pods they evicted: a redo that keeps a prefix of them rolls back only past it."""

    stmt: Statement
    entries: list[tuple[Unit, int, list[str]]] = field(default_factory=list)
    evicted: set[str] = field(default_factory=set)

    def push(self, u: Unit, pods: list[str]) -> None:
        self.entries.append((u, self.stmt.checkpoint(), pods))
        self.evicted.update(pods)

    def units(self) -> list[Unit]:
        return [u for u, _, _ in self.entries]

    def common_prefix(self, units: Sequence[Unit]) -> int:
        n = 0
        for (u, _, _), v in zip(self.entries, units, strict=False):
            if u is not v:
                break
            n += 1
        return n

    def truncate(self, keep: int) -> None:
        """Undo everything after the first `keep` evictions (placements included)."""
        self.stmt.rollback(self.entries[keep - 1][1] if keep else 0)
        for _, _, pods in self.entries[keep:]:
            self.evicted.difference_update(pods)
        del self.entries[keep:]


@dataclass(slots=True)
class Outcome:
    placed: bool
    why: list[str] = field(default_factory=list)  # why it could not, for the gang's message


class TakeBack:
    """One action's pass over the gangs that allocate could not place."""

    def __init__(self, session: Session, rules: Rules) -> None:
        self.session = session
        self.rules = rules
        self.placer = GangPlacer(session)
        self.pool = Pool(session, rules.victim, rules.group, rules.action == "reclaim")
        self._unplaced_free: list[int] = []  # the domain's free room before the last successful placement
        self._room: list[int] | None = None  # with VALIDATE_SKIPS: the domain's room the last redo placed in
        self._keys: dict[int, tuple[object, ...]] = {}  # the last walk's victims: their order as taken

    def candidates(self, preemptor: Job) -> Allowed:
        """What the preemptor may take (cheapest first, by group), and why the other running gangs are not
        candidates."""
        return self.pool.allowed(preemptor)

    def try_job(self, job: Job, gp: GroupPlan) -> Outcome:
        """Find victims for the job and place it; on success the statement is committed."""
        s = self.session
        allowed = self.candidates(job)
        why = allowed.notes
        if not self.pool.any_unit(allowed, job):
            return Outcome(False, [f"{self.rules.action}: no running gang it may take ({'; '.join(why)})"])
        table = s.table
        idx = table.by_name
        pinned = sorted({idx[p.node_name] for p in job.bound if p.node_name in idx})
        notes: list[str] = []
        for _level, doms in levels_of(table, gp.tier, None, pinned):
            ranked = self._rank(doms, allowed, gp.need_vec, job)
            for dom, bucket in ranked:
                stmt = s.statement(job)
                stmt.pipelining = True
                trail = Trail(stmt)
                chosen: Chosen = {}
                taken = self._evict_until_fits(trail, job, gp, dom, bucket, chosen, notes)
                if taken is None:
                    stmt.discard()
                    continue
                taken = self._minimize(trail, job, gp, dom, taken, chosen)
                problem = self.rules.after_place(s, job)
                if problem is None and self.rules.replace_victims:
                    problem = self._replace(stmt, taken)
                if problem is not None:
                    notes.append(problem)
                    stmt.discard()
                    continue
                result = stmt.commit()
                s.record.decisions[job.key] = GangDecision(
                    job=job.key,
                    queue=job.queue,
                    placed=True,
                    domain=dom.path,
                    pods=result.binds + result.pipelined,
                )
                return Outcome(True)
            if ranked:
                break  # a gang takes back at its narrowest level with candidates; wider levels are allocate's
        if not notes:
            notes.append("no domain where evicting the gangs it may take would make it fit")
        return Outcome(False, [f"{self.rules.action}: {n}" for n in sorted(set(notes))] + why)

    # --- choosing -----------------------------------------------------------------------------
    def _rank(self, doms: Sequence[Domain], allowed: Allowed, need: list[int], job: Job) -> list[tuple[Domain, Bucket]]:
        """The `DOMAINS_PER_LEVEL` domains that could hold the gang once emptied whose estimated victim
        set is cheapest, with the victims touching each (cheapest first, walked on demand). The estimate
        is the cheapest set whose release makes room there: (priority of the dearest victim, pods whose
        eviction breaks a PodDisruptionBudget, pods evicted), then by path (`victims.cheapest`). A
        domain where even every allowed victim's release would not make room is left out."""
        cands = [d for d in doms if fits_vec(d.alloc, need)]
        if not cands:
            return []
        merged = self.pool.merged_lists(allowed, doms, job)
        entries: list[tuple[str, Merged, Sequence[int]]] = []
        holders: list[Domain] = []
        for dom in cands:
            m = merged.get(id(dom))
            if m is not None:
                entries.append((dom.path, m, dom.free))
                holders.append(dom)
        return [(holders[i], _bucket(entries[i][1])) for _, _, i in cheapest(entries, need, DOMAINS_PER_LEVEL)]

    def _evict_until_fits(
        self,
        trail: Trail,
        job: Job,
        gp: GroupPlan,
        dom: Domain,
        bucket: Bucket,
        chosen: Chosen,
        notes: list[str],
    ) -> list[Unit] | None:
        blocked: set[str] = set()  # queues a rule refused a victim of: their state only gets worse here
        victims = bucket(blocked)
        self._keys = victims.keys
        for u in victims:
            if not self._evict(trail, job, u, notes):
                blocked.add(u.job.queue)
                continue
            victims.take(u)
            if not fits(dom.free, gp.need_vec):
                continue
            if self._place(trail.stmt, gp, dom, chosen):
                return trail.units()
        return None

    def _evict(self, trail: Trail, job: Job, u: Unit, notes: list[str]) -> bool:
        """Evict a unit's pods still running in the statement; False (nothing changed) when a rule says
        no or it has nothing left to take."""
        stmt = trail.stmt
        pods = [p for p in u.pods if p.key not in trail.evicted and p.node_name in stmt.table.by_name]
        if not pods:
            return False
        mark = stmt.checkpoint()
        stmt.evict_many(pods, self.rules.action)
        problem = self.rules.after_evict(self.session, job, u)
        if problem is not None:
            notes.append(problem)
            stmt.rollback(mark)
            return False
        trail.push(u, [p.key for p in pods])
        return True

    def _place(self, stmt: Statement, gp: GroupPlan, dom: Domain, chosen: Chosen) -> bool:
        mark = stmt.checkpoint()
        chosen.clear()
        before = list(dom.free)
        if self.placer.place_members(gp, dom, stmt, chosen):
            self._unplaced_free = before
            return True
        stmt.rollback(mark)
        return False

    def _redo(self, trail: Trail, job: Job, gp: GroupPlan, dom: Domain, units: list[Unit], chosen: Chosen) -> bool:
        """The statement with exactly these victims evicted (in this order) and the gang placed: True;
        False when they do not place it (the statement then holds some prefix of them, evicted: the next
        redo starts from there). The victims it already evicted in the same order are kept (rolling back
        to the mark after them leaves the state evicting them afresh would)."""
        trail.truncate(trail.common_prefix(units))
        for u in units[len(trail.entries) :]:
            if not self._evict(trail, job, u, []):
                return False
        if VALIDATE_SKIPS:
            self._room = list(dom.free)
        if not fits(dom.free, gp.need_vec):
            return False
        return self._place(trail.stmt, gp, dom, chosen)

    def _minimize(
        self, trail: Trail, job: Job, gp: GroupPlan, dom: Domain, taken: list[Unit], chosen: Chosen
    ) -> list[Unit]:
        """Give back every victim the placement does not need; the statement ends placed with the rest."""
        used = {op.node for op in trail.stmt.ops if op.kind in (ALLOCATE, PIPELINE)}
        needed = [u for u in taken if any(n in used for n in u.nodes)]
        current = taken
        if len(needed) < len(taken) and self._redo(trail, job, gp, dom, needed, chosen):
            current = needed
        release = self._releases(trail, dom, current)
        keys = self._keys
        for tries, u in enumerate(sorted(current, key=lambda x: keys.get(id(x), x.order), reverse=True)):
            if tries >= MINIMIZE_TRIES or len(current) == 1:
                break
            # a trial whose victims cannot free the gang's need in the domain fails at the redo's room
            # check: skip re-evicting and re-placing for it (the same trials fail, the same victims stay)
            room = list(map(sub, self._unplaced_free, release[id(u)])) if release is not None else None
            if room is not None and not fits(room, gp.need_vec):
                if VALIDATE_SKIPS:
                    assert not self._redo(trail, job, gp, dom, [x for x in current if x is not u], chosen), u.job.key
                continue
            rest = [x for x in current if x is not u]
            self._room = None
            if self._redo(trail, job, gp, dom, rest, chosen):
                current = rest
            if VALIDATE_SKIPS and room is not None:  # the room the skip would have judged is the redo's
                assert self._room is None or self._room == room, (u.job.key, dom.path)
        if not self._redo(trail, job, gp, dom, current, chosen):  # the last trial may have been a failure
            raise AssertionError(f"take-back for {job.key}: a victim set that placed the gang no longer does")
        return current

    def _releases(self, trail: Trail, dom: Domain, units: Sequence[Unit]) -> dict[int, list[int]] | None:
        """What each of `units` releases in `dom` (by unit identity), or None when that is not each unit's
        own: two units share a pod, or one is not evicted in the trail (then every trial is redone).
        With the statement placed on exactly these victims, `_unplaced_free` minus a unit's release is
        the domain's room a trial without that unit would have before placing."""
        table = self.session.table
        keys = [p.key for u in units for p in u.pods]
        if len(set(keys)) != len(keys):
            return None
        evicted = {id(u): pods for u, _, pods in trail.entries}
        by_key = {p.key: p for u in units for p in u.pods}
        out: dict[int, list[int]] = {}
        for u in units:
            pods = evicted.get(id(u))
            if pods is None:
                return None
            vec = [0] * len(table.dims)
            for key in pods:
                pod = by_key[key]
                if not table.counts_in(table.by_name[pod.node_name], dom):
                    continue  # evicting it frees no room in this domain
                for i, v in table.sparse_known(pod.request):
                    vec[i] += v
            out[id(u)] = vec
        return out

    def _replace(self, stmt: Statement, taken: list[Unit]) -> str | None:
        """Consolidation: re-place every victim gang (as the pods its controller re-creates) in the same
        statement, anywhere; their room is held (reserved), nothing of them binds now."""
        s = self.session
        stmt.reserving = True
        try:
            for u in taken:
                copies = [_unbound(p) for p in u.pods]
                shadow = _shadow_job(u.job, copies)
                try:
                    plan = self.placer.prepare(shadow)
                except PlacementError as err:
                    return f"victim {u.job.key} could not be re-placed ({err.message})"
                placed = False
                for _level, doms in levels_of(s.table, plan.tier, None):
                    for dom in doms:
                        if not fits(dom.free, plan.need_vec):
                            continue
                        if self._place(stmt, plan, dom, {}):
                            placed = True
                            break
                    if placed:
                        break
                if not placed:
                    return f"victim {u.job.key} could not be re-placed elsewhere, so nothing is moved"
            return None
        finally:
            stmt.reserving = False


def _bucket(m: Merged) -> Bucket:
    return lambda blocked: Walk(m, blocked)


def _unbound(p: Pod) -> Pod:
    return replace(p, node_name="", phase="Pending", start_time=None)


def _shadow_job(victim: Job, pods: list[Pod]) -> Job:
    """The victim as its controller will re-create it: the same gang, every pod pending."""

    def copy(g: Group) -> Group:
        keys = {p.key for p in g.bound}
        return Group(
            g.name,
            g.min_member,
            g.min_sub_group,
            g.constraint,
            [copy(c) for c in g.children],
            [p for p in pods if p.key in keys],
        )

    return Job(
        victim.key,
        victim.namespace,
        victim.pod_group,
        victim.queue,
        victim.priority_class,
        victim.creation,
        copy(victim.root),
        priority=victim.priority,
    )


# the reasons a gang allocate could not place may have that evicting someone can cure
CURABLE = frozenset({Reason.INSUFFICIENT_RESOURCES, Reason.TOPOLOGY_REQUIRED_UNSATISFIABLE})


def run_takeback(session: Session, rules: Rules, eligible: Callable[[Session, Job], str | None]) -> None:
    """Every gang allocate left waiting for room, in queue-fair order (the queue order moves as take-back
    commits), tries the action once; a gang that cannot says why in its message."""
    waiting: dict[str, list[Job]] = {}
    for job in session.jobs:
        d = session.record.decisions.get(job.key)
        if d is None or d.placed or d.reason not in CURABLE:
            continue
        waiting.setdefault(job.queue, []).append(job)
    if not waiting:
        return
    driver = TakeBack(session, rules)
    memo: dict[tuple[object, ...], list[tuple[list[int], list[str]]]] = {}
    for job in queue_fair(session, waiting, memo):
        allowed = driver.candidates(job)
        if not driver.pool.any_unit(allowed, job) and not allowed.notes:
            continue  # nothing runs that any rule could consider: nothing to say
        why = eligible(session, job)
        if why is not None:
            _note(session, job, [f"{rules.action}: {why}"])
            continue
        try:
            gp = driver.placer.prepare(job)
            driver.placer.start(session.config.placement_search_budget)
            admit(session, job, gp)
        except PlacementError as err:
            _note(session, job, [f"{rules.action}: {err.message}"])
            continue
        key = _shape(job, gp)
        if key is not None:
            hit = next((why for need, why in memo.get(key, ()) if _covers(gp.need_vec, need)), None)
            if hit is not None:
                _note(session, job, hit)
                continue
        outcome = driver.try_job(job, gp)
        if not outcome.placed:
            if key is not None:
                memo.setdefault(key, []).append((list(gp.need_vec), outcome.why))
            _note(session, job, outcome.why)


def _covers(need: list[int], failed: list[int]) -> bool:
    return all(a >= b for a, b in zip(need, failed, strict=True))


def _shape(job: Job, gp: GroupPlan) -> tuple[object, ...] | None:
    """Gangs of one class, queue and priority: one that needs at least what a failed one needed fails too
    (until a statement commits)."""
    if gp.children or len(gp.classes) != 1 or job.bound:
        return None
    tier = gp.tier
    cls = gp.classes[0]
    shape = (id(tier.tree), tuple(tier.levels), tier.required) if tier is not None else None
    return (job.queue, job.priority, shape, cls.req, id(cls.mask))


def _note(session: Session, job: Job, why: list[str]) -> None:
    d = session.record.decisions.get(job.key)
    if d is None or d.placed or not why:
        return
    text = "; ".join(why)
    message = (
        f"{d.message}; cannot take back: {text}" if "cannot take back" not in d.message else f"{d.message}; {text}"
    )
    session.record.decisions[job.key] = replace(d, message=message)

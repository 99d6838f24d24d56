"""Allocate: place pending gangs in queue-fair order, each all-or-nothing, many per queue per cycle."""

from __future__ import annotations

from dataclasses import dataclass, replace

from scheduler.actions.common.admit import admit
from scheduler.actions.common.explain import attempt_at, closest, failure_message, members_detail
from scheduler.actions.common.gang import Chosen, GangPlacer, GroupPlan, PlacementError
from scheduler.actions.common.members import Outcome
from scheduler.actions.common.order import queue_fair
from scheduler.actions.common.topology import Tier, fits, levels_of, placements, tightness
from scheduler.api.reasons import Reason
from scheduler.framework.jobs import Job
from scheduler.framework.nodes import Domain, TopologyTree
from scheduler.framework.record import GangCommit, GangDecision, LevelAttempt
from scheduler.framework.registry import action
from scheduler.framework.session import Session


@action("allocate")
def allocate(session: Session) -> None:
    """Two phases, as KAI orders jobs below their minimum before jobs at it: first every gang's minimum in
    queue-fair order, then elastic extras one pod at a time, again in queue-fair order (a job at its
    minimum before one above it), so an older elastic gang never takes what a newer gang needs to start."""
    placer = GangPlacer(session)
    by_queue: dict[str, list[Job]] = {}
    for job in session.jobs:
        problem = session.job_problem(job)
        if problem is not None:
            _fail(session, job, problem[0], problem[1])
            continue
        by_queue.setdefault(job.queue, []).append(job)
    memo: FailMemo = {}
    placed: list[Placed] = []
    budget = session.pod_budget
    pods = 0  # placed by this cycle's first phase
    for job in queue_fair(session, by_queue, memo):
        if budget is not None and pods >= budget:
            # the cycle's slice is decided: its commits go to the binder now, and the next cycle (at once)
            # decides the rest, so binds begin before a large backlog is decided whole
            by_queue.setdefault(job.queue, []).append(job)
            session.record.deferred = tuple(sorted(j.key for jobs in by_queue.values() for j in jobs))
            return
        session.record.order.append(job.key)
        try:
            done = _place(session, placer, job, memo)
        except PlacementError as err:
            _fail(session, job, err.reason, err.message, err.attempts)
            continue
        pods += len(session.record.decisions[job.key].pods)
        if done is not None:
            placed.append(done)
    _extras(session, placer, placed)


@dataclass(slots=True, eq=False)
class Placed:
    """A gang whose minimum was placed this cycle, with pods it may still take (elastic extras)."""

    job: Job
    gp: GroupPlan
    chosen: Chosen
    landed: Domain
    commit: int | None  # index of its GangCommit in the record (None while it has placed no pod)
    allocated: int  # pods running or placed (this cycle)
    minimum: int  # pods its groups' minimums add up to

    @property
    def above_min(self) -> bool:
        return self.allocated > self.minimum


def _fail(session: Session, job: Job, reason: Reason, message: str, attempts: tuple[LevelAttempt, ...] = ()) -> None:
    session.record.decisions[job.key] = GangDecision(
        job=job.key, queue=job.queue, placed=False, reason=reason, message=message, attempts=attempts
    )


def _bound_nodes(session: Session, job: Job) -> list[int]:
    idx = session.table.by_name
    return sorted({idx[p.node_name] for p in job.bound if p.node_name in idx})


# A failed single-class gang fails again, unchanged, for any gang of the same shape that needs at least as
# much, until a statement is committed: greedy fill of one class is monotone in the count, and a trial
# that failed leaves the table exactly as it found it (the statement rolls back).
FailMemo = dict[tuple[object, ...], list[tuple[list[int], Reason, list[tuple[str, Domain | None, int]]]]]


def _memo_key(gp: GroupPlan, job: Job) -> tuple[object, ...] | None:
    if gp.children or len(gp.classes) != 1 or job.root.bound or gp.classes[0].dynamic:
        return None
    cls = gp.classes[0]
    tier = gp.tier
    shape = (id(tier.tree), tuple(tier.levels), tier.required) if tier is not None else None
    return (shape, cls.req, id(cls.mask))


def _too_large(session: Session, gp: GroupPlan) -> None:
    """Fail at once when no domain of the required level (or the cluster) could hold the gang even empty."""
    table = session.table
    tier = gp.tier
    if tier is None or tier.tree is None:
        if not fits(table.cluster.alloc, gp.need_vec):
            short = table.resources(gp.need_vec).shortfall(table.resources(table.cluster.alloc))
            raise PlacementError(
                Reason.GANG_TOO_LARGE,
                f"the gang needs {table.resources(gp.need_vec)}, more than the whole cluster's allocatable "
                f"(short {short} even when empty)",
            )
        return
    if not tier.tree.node_chain:
        raise PlacementError(Reason.TOPOLOGY_NOT_ON_NODES, _not_on_nodes(session, tier.tree))
    if tier.required is not None:
        tree = tier.tree
        req_doms = tree.domains(tier.required)
        if not any(fits(d.alloc, gp.need_vec) for d in req_doms):
            biggest = max(
                (d.alloc for d in req_doms), key=lambda a: -tightness(a, gp.need_vec) if a else 0, default=None
            )
            what = f"the largest has {table.resources(biggest)}" if biggest else "there are none"
            raise PlacementError(
                Reason.GANG_TOO_LARGE,
                f"the gang needs {table.resources(gp.need_vec)} in one {tree.levels[tier.required]}, but no "
                f"{tree.levels[tier.required]} has that much allocatable even when empty ({what})",
            )


def _not_on_nodes(session: Session, tree: TopologyTree) -> str:
    """Name the labels of a Topology no node carries together, with how many nodes carry each."""
    nodes = session.table.nodes
    counts = []
    for level in tree.levels:
        have = sum(1 for n in nodes if level in n.label_map())
        counts.append(f"{level} on {have}")
    return (
        f"no node carries every level label of Topology {tree.topology.name} (of {len(nodes)} nodes: "
        f"{', '.join(counts)}): label the nodes with each level's label, or fix the Topology's levels"
    )


def _place(session: Session, placer: GangPlacer, job: Job, memo: FailMemo) -> Placed | None:
    """Place the job's minimum, or raise PlacementError; returns it when it has pods beyond the minimum."""
    gp = placer.prepare(job)
    placer.start(session.config.placement_search_budget)
    admit(session, job, gp)
    table = session.table
    key = _memo_key(gp, job)
    if key is not None:
        for need, reason, spots in memo.get(key, ()):
            if all(a >= b for a, b in zip(gp.need_vec, need, strict=True)):
                again = tuple(attempt_at(table, lvl, dom, gp, got) for lvl, dom, got in spots)
                raise PlacementError(reason, failure_message(table, gp, reason, again), again)
    _too_large(session, gp)
    stmt = session.statement(job)
    chosen: Chosen = {}
    attempts: list[LevelAttempt] = []
    bound = _bound_nodes(session, job)

    def place(dom: Domain) -> bool:
        chosen.clear()
        return placer.place_members(gp, dom, stmt, chosen)

    def search(tier: Tier | None, attempts: list[LevelAttempt]) -> Domain | None:
        found = placements(
            table,
            tier,
            gp.need_vec,
            None,
            stmt,
            place,
            pinned=bound,
            closest=lambda name, doms, partial: closest(table, name, doms, gp, partial),
            attempts=attempts,
            measure=lambda mark: placer.placed_since(stmt, mark),
        )
        return next(found, (None, 0))[0]  # the first domain that takes the gang (left placed)

    landed = search(gp.tier, attempts)
    if landed is None and gp.tier is None:
        # members with required affinity to each other: pod by pod they may start in a domain too small
        # for all of them; one domain of the affinity's key that holds them all satisfies every member
        together = placer.affinity_tier(job)
        if together is not None:
            first = placer.rejected
            gp.tier = together
            landed = search(together, [])
            if landed is None:
                gp.tier, placer.rejected = None, first
    if landed is None:
        stmt.discard()
        tier = gp.tier
        reason = (
            Reason.TOPOLOGY_REQUIRED_UNSATISFIABLE
            if tier is not None and tier.required is not None
            else Reason.INSUFFICIENT_RESOURCES
        )
        if key is not None:
            levels = list(levels_of(table, tier, None, bound))
            spots = [(a.level, _find(levels, a), a.placed) for a in attempts]
            memo.setdefault(key, []).append((list(gp.need_vec), reason, spots))
        message = failure_message(table, gp, reason, tuple(attempts))
        if placer.budget.exhausted:
            reason = Reason.PLACEMENT_SEARCH_LIMIT
            message = (
                f"the search for a placement of the gang's members stopped after {placer.budget.spent} steps "
                f"(placementSearchBudget) without finding one or proving there is none; the gang may fit and is "
                f"tried again next cycle ({message})"
            )
        elif placer.rejected is not None:
            # a pod filter, not capacity, kept a member off the nodes with room: name the constraint
            reason, message = placer.rejected.reason(), placer.rejected.message()
        elif placer.searched:
            last = _closest_search(placer, attempts)
            if last is not None:
                message += "; " + members_detail(table, *last)
        raise PlacementError(reason, message, tuple(attempts))
    result = stmt.commit()
    session.record.decisions[job.key] = GangDecision(
        job=job.key, queue=job.queue, placed=True, domain=landed.path, pods=result.binds + result.pipelined
    )
    extras = sum(
        len(cls.pods) - chosen.get(id(cls), (landed, 0))[1] for leaf, _ in _leaves(gp, False) for cls in leaf.classes
    )
    if extras <= 0:
        return None
    minimum = sum(g.min_member if g.min_member is not None else 1 for g in job.root.walk() if g.is_leaf())
    allocated = len(job.bound) + len(result.binds) + len(result.pipelined)
    at = len(session.record.commits) - 1 if result.binds or result.pipelined else None
    return Placed(job, gp, chosen, landed, at, allocated, minimum)


def _closest_search(placer: GangPlacer, attempts: list[LevelAttempt]) -> tuple[GroupPlan, Domain, Outcome] | None:
    """The failed exact search in the domain the record names as closest (else the last one)."""
    names = {a.domain for a in attempts}
    for gp, dom, outcome in reversed(placer.searched):
        if dom.path in names:
            return gp, dom, outcome
    return placer.searched[-1] if placer.searched else None


def _find(levels: list[tuple[str, list[Domain]]], a: LevelAttempt) -> Domain | None:
    for name, doms in levels:
        if name == a.level:
            return next((d for d in doms if d.path == a.domain), None)
    return None


def _leaves(gp: GroupPlan, constrained: bool) -> list[tuple[GroupPlan, bool]]:
    here = constrained or (gp.tier is not None and gp.tier.required is not None)
    if not gp.children:
        return [(gp, here)]
    return [x for c in gp.children for x in _leaves(c, here)]


def _extras(session: Session, placer: GangPlacer, placed: list[Placed]) -> None:
    """Elastic pods beyond the minimum, one pod per turn: the queue-fair queue first, inside it a job at
    its minimum before one above it, then job order. Best effort, inside the gang's domain when it is
    required; each pod joins its gang's commit (bound with it, all or nothing)."""
    by_queue: dict[str, list[Placed]] = {}
    for p in placed:
        by_queue.setdefault(p.job.queue, []).append(p)
    queue_key = session.queue_order_fn()
    while by_queue:
        name = min(by_queue, key=queue_key)
        jobs = by_queue[name]
        p = min(jobs, key=lambda x: (x.above_min, session.job_order_key(x.job)))
        if _one_extra(session, placer, p):
            p.allocated += 1
            continue
        jobs.remove(p)
        if not jobs:
            del by_queue[name]


def _one_extra(session: Session, placer: GangPlacer, p: Placed) -> bool:
    job, gp = p.job, p.gp
    head = session.headroom(job.queue)
    wide = gp.tier.tree.root if gp.tier is not None and gp.tier.tree is not None else session.table.cluster
    stmt = session.statement(job)
    for leaf, constrained in _leaves(gp, False):
        for cls in leaf.classes:
            dom, start = p.chosen.get(id(cls), (p.landed, 0))
            if start >= len(cls.pods):
                continue
            if any(i in head and v > 0 and head[i] + 1e-9 < v for i, v in cls.req):
                p.chosen[id(cls)] = (dom, len(cls.pods))  # over the queue's limit: no more of this class
                continue
            for where in [dom] if constrained else [dom, wide]:
                if placer.fill(where, cls, start, 1, stmt, leaf.need_vec):
                    p.chosen[id(cls)] = (dom, start + 1)
                    _join(session, p, stmt.commit())
                    return True
            p.chosen[id(cls)] = (dom, len(cls.pods))  # no room for one more: nor for later ones this cycle
    stmt.discard()
    return False


def _join(session: Session, p: Placed, extra: GangCommit) -> None:
    """Fold an extra pod's commit into its gang's commit and decision."""
    commits = session.record.commits
    assert commits[-1] is extra
    d = session.record.decisions[p.job.key]
    session.record.decisions[p.job.key] = replace(d, pods=d.pods + extra.binds + extra.pipelined)
    if p.commit is None:  # its minimum was zero pods: this is its first commit
        p.commit = len(commits) - 1
        return
    commits.pop()
    first = commits[p.commit]
    commits[p.commit] = replace(first, binds=first.binds + extra.binds, pipelined=first.pipelined + extra.pipelined)

"""Allocate: place pending gangs in queue-fair order, each all-or-nothing, many per queue per cycle."""

from __future__ import annotations

from scheduler.actions.common.explain import attempt_at, closest, failure_message
from scheduler.actions.common.gang import Chosen, GangPlacer, GroupPlan, PlacementError
from scheduler.actions.common.topology import fits, levels_of, search, tightness
from scheduler.api.reasons import Reason
from scheduler.framework.jobs import Job
from scheduler.framework.nodes import Domain
from scheduler.framework.record import GangDecision, LevelAttempt
from scheduler.framework.registry import action
from scheduler.framework.session import Session
from scheduler.framework.statement import Statement


@action("allocate")
def allocate(session: Session) -> None:
    placer = GangPlacer(session)
    by_queue: dict[str, list[Job]] = {}
    for job in session.jobs:
        problem = session.job_problem(job)
        if problem is not None:
            _fail(session, job, problem[0], problem[1])
            continue
        by_queue.setdefault(job.queue, []).append(job)
    for jobs in by_queue.values():
        jobs.sort(key=session.job_order_key, reverse=True)  # pop() from the end takes the first
    memo: FailMemo = {}
    generation = session.table.generation
    queue_key = session.queue_order_fn()
    while by_queue:
        if session.table.generation != generation:
            memo.clear()
            generation = session.table.generation
        name = min(by_queue, key=queue_key)
        jobs = by_queue[name]
        job = jobs.pop()
        if not jobs:
            del by_queue[name]
        session.record.order.append(job.key)
        try:
            _place(session, placer, job, memo)
        except PlacementError as err:
            _fail(session, job, err.reason, err.message, err.attempts)


def _fail(session: Session, job: Job, reason: Reason, message: str, attempts: tuple[LevelAttempt, ...] = ()) -> None:
    session.record.decisions[job.key] = GangDecision(
        job=job.key, queue=job.queue, placed=False, reason=reason, message=message, attempts=attempts
    )


def _check_limit(session: Session, job: Job, gp: GroupPlan) -> None:
    head = session.headroom(job.queue)
    for i, left in sorted(head.items()):
        if gp.need_vec[i] > left + 1e-9:
            dim = session.table.dims[i]
            raise PlacementError(
                Reason.OVER_LIMIT,
                f"queue {job.queue} (or a parent) would exceed its {dim} limit: the gang needs {gp.need_vec[i]}, "
                f"{max(0, int(left))} left under the limit",
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


def _place(session: Session, placer: GangPlacer, job: Job, memo: FailMemo) -> None:
    gp = placer.prepare(job)
    _check_limit(session, job, gp)
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

    landed = search(
        table,
        gp.tier,
        gp.need_vec,
        None,
        stmt,
        place,
        pinned=bound,
        closest=lambda name, doms, partial: closest(table, name, doms, gp, partial),
        attempts=attempts,
    )
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
        raise PlacementError(reason, failure_message(table, gp, reason, tuple(attempts)), tuple(attempts))
    _extras(session, placer, job, gp, stmt, chosen, landed)
    result = stmt.commit()
    session.record.decisions[job.key] = GangDecision(
        job=job.key, queue=job.queue, placed=True, domain=landed.path, pods=result.binds + result.pipelined
    )


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


def _extras(
    session: Session, placer: GangPlacer, job: Job, gp: GroupPlan, stmt: Statement, chosen: Chosen, landed: Domain
) -> None:
    """Elastic pods beyond the minimum: best effort, inside the gang's domain when it is required. The
    queue's headroom already counts the gang's minimum (the statement charged it)."""
    head = session.headroom(job.queue)
    used = [0.0] * len(session.table.dims)
    wide = gp.tier.tree.root if gp.tier is not None and gp.tier.tree is not None else session.table.cluster
    for leaf, constrained in _leaves(gp, False):
        for cls in leaf.classes:
            dom, start = chosen.get(id(cls), (landed, 0))
            left = len(cls.pods) - start
            for i, v in cls.req:
                if i in head and v > 0:
                    left = min(left, int((head[i] - used[i]) // v))
            if left <= 0:
                continue
            for where in [dom] if constrained else [dom, wide]:
                got = placer.fill(where, cls, start, left, stmt, leaf.need_vec)
                for i, v in cls.req:
                    used[i] += v * got
                start += got
                left -= got
                if left <= 0:
                    break

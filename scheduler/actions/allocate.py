"""Allocate: place pending gangs in queue-fair order, each all-or-nothing, many per queue per cycle."""

from __future__ import annotations

from scheduler.actions.placement import INF, GangPlacer, GroupPlan, PlacementError, _fits, _tightness, by_tightness
from scheduler.api.queue import UNLIMITED
from scheduler.api.reasons import Reason
from scheduler.api.resources import Resources
from scheduler.framework.jobs import Job
from scheduler.framework.nodes import Domain
from scheduler.framework.plan import Plan
from scheduler.framework.record import GangCommit, GangDecision, LevelAttempt
from scheduler.framework.registry import action
from scheduler.framework.session import Session
from scheduler.plugins.proportion import QUEUE_DIMS, queue_order_key


def job_order_key(job: Job) -> tuple[int, str, str]:
    """Inside a queue: higher priority first, then older, then by name."""
    return (-job.priority, job.creation, job.key)


@action("allocate")
def allocate(session: Session) -> None:
    placer = GangPlacer(session)
    by_queue: dict[str, list[Job]] = {}
    for job in session.jobs:
        problem = _job_problem(session, job)
        if problem is not None:
            _fail(session, job, problem[0], problem[1])
            continue
        by_queue.setdefault(job.queue, []).append(job)
    for jobs in by_queue.values():
        jobs.sort(key=job_order_key, reverse=True)  # pop() from the end takes the first
    memo: FailMemo = {}
    generation = session.table.generation
    while by_queue:
        if session.table.generation != generation:
            memo.clear()
            generation = session.table.generation
        name = min(by_queue, key=lambda q: (queue_order_key(session.queues.nodes[q]), q))
        jobs = by_queue[name]
        job = jobs.pop()
        if not jobs:
            del by_queue[name]
        session.record.order.append(job.key)
        try:
            _place(session, placer, job, memo)
        except PlacementError as err:
            _fail(session, job, err.reason, err.message, err.attempts)


def _job_problem(session: Session, job: Job) -> tuple[Reason, str] | None:
    if job.problem is not None:
        return job.problem
    if job.key in session.hold:
        return Reason.BIND_BACKOFF, session.hold[job.key]
    for pod in job.pending:
        if pod.problems:
            code, message = pod.problems[0]
            return Reason(code), f"pod {pod.name}: {message}"
    return session.queues.check_leaf(job.queue)


def _fail(session: Session, job: Job, reason: Reason, message: str, attempts: tuple[LevelAttempt, ...] = ()) -> None:
    session.record.decisions[job.key] = GangDecision(
        job=job.key, queue=job.queue, placed=False, reason=reason, message=message, attempts=attempts
    )


def _headroom(session: Session, queue: str) -> dict[int, float]:
    """What the queue (and every ancestor) may still take before its limit, by table dim."""
    out: dict[int, float] = {}
    node = session.queues.nodes.get(queue)
    while node is not None:
        for dim in QUEUE_DIMS:
            limit = node.queue.resource(dim).limit
            if limit != UNLIMITED:
                i = session.table.dim_index[dim]
                left = limit - node.allocated.get(dim, 0.0)
                out[i] = min(out.get(i, INF), left)
        node = node.parent
    return out


def _check_limit(session: Session, job: Job, gp: GroupPlan) -> None:
    head = _headroom(session, job.queue)
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
# much, until something is committed: greedy fill of one class is monotone in the count.
FailMemo = dict[tuple[object, ...], list[tuple[list[int], Reason, list[tuple[str, Domain | None, int]]]]]


def _memo_key(gp: GroupPlan, job: Job) -> tuple[object, ...] | None:
    if gp.children or len(gp.classes) != 1 or job.root.bound:
        return None
    cls = gp.classes[0]
    tier = gp.tier
    shape = (id(tier.tree), tuple(tier.levels), tier.required) if tier is not None else None
    return (shape, cls.req, id(cls.mask))


def _place(session: Session, placer: GangPlacer, job: Job, memo: FailMemo) -> None:
    gp = placer.prepare(job)
    _check_limit(session, job, gp)
    table = session.table
    key = _memo_key(gp, job)
    if key is not None:
        for need, reason, spots in memo.get(key, ()):
            if all(a >= b for a, b in zip(gp.need_vec, need, strict=True)):
                again = tuple(_attempt_at(session, lvl, dom, gp, got) for lvl, dom, got in spots)
                raise PlacementError(reason, _failure_message(session, gp, reason, again), again)
    plan = Plan(table)
    chosen: dict[int, tuple[Domain, int]] = {}
    tier = gp.tier
    bound = _bound_nodes(session, job)
    attempts: list[LevelAttempt] = []
    landed: Domain | None = None
    if tier is None or tier.tree is None:
        levels: list[tuple[str, list[Domain]]] = [("cluster", [table.cluster])]
        if not _fits(table.cluster.alloc, gp.need_vec):
            short = table.resources(gp.need_vec).shortfall(table.resources(table.cluster.alloc))
            raise PlacementError(
                Reason.GANG_TOO_LARGE,
                f"the gang needs {table.resources(gp.need_vec)}, more than the whole cluster's allocatable "
                f"(short {short} even when empty)",
            )
    else:
        tree = tier.tree
        levels = []
        for lv, name in zip(tier.levels, tier.names, strict=True):
            doms = [tree.root] if lv < 0 else list(tree.domains(lv))
            if bound and lv >= 0:
                pinned = {id(tree.domain_of(n, lv)) for n in bound}
                doms = [d for d in doms if id(d) in pinned]
            levels.append((name, doms))
        if tier.required is not None:
            req_doms = tree.domains(tier.required)
            if not any(_fits(d.alloc, gp.need_vec) for d in req_doms):
                biggest = max(
                    (d.alloc for d in req_doms), key=lambda a: -_tightness(a, gp.need_vec) if a else 0, default=None
                )
                what = f"the largest has {table.resources(biggest)}" if biggest else "there are none"
                raise PlacementError(
                    Reason.GANG_TOO_LARGE,
                    f"the gang needs {table.resources(gp.need_vec)} in one {tree.levels[tier.required]}, but no "
                    f"{tree.levels[tier.required]} has that much allocatable even when empty ({what})",
                )
    for name, doms in levels:
        best_partial: tuple[int, Domain] | None = None
        for dom in by_tightness(doms, gp.need_vec):
            mark = plan.mark()
            chosen.clear()
            if placer.place_members(gp, dom, plan, chosen):
                landed = dom
                break
            got = len(plan.assignments(mark))
            if best_partial is None or got > best_partial[0]:
                best_partial = (got, dom)
            plan.rollback(mark)
        if landed is not None:
            break
        attempts.append(_closest(session, name, doms, gp, best_partial))
    if landed is None:
        reason = (
            Reason.TOPOLOGY_REQUIRED_UNSATISFIABLE
            if tier is not None and tier.required is not None
            else Reason.INSUFFICIENT_RESOURCES
        )
        if key is not None:
            spots = [(a.level, _find(levels, a), a.placed) for a in attempts]
            memo.setdefault(key, []).append((list(gp.need_vec), reason, spots))
        raise PlacementError(reason, _failure_message(session, gp, reason, tuple(attempts)), tuple(attempts))
    _extras(session, placer, job, gp, plan, chosen, landed)
    total = [0] * len(table.dims)
    for _node, req, pods in plan.log:
        for i, v in req:
            total[i] += v * len(pods)
    placed = plan.commit()
    session.charge(job.queue, table.resources(total))
    session.record.commits.append(
        GangCommit(job.key, job.pod_group is not None, tuple((pod.key, node) for pod, node in placed))
    )
    session.record.decisions[job.key] = GangDecision(
        job=job.key,
        queue=job.queue,
        placed=True,
        domain=landed.path,
        pods=tuple((pod.key, node) for pod, node in placed),
    )


def _find(levels: list[tuple[str, list[Domain]]], a: LevelAttempt) -> Domain | None:
    for name, doms in levels:
        if name == a.level:
            return next((d for d in doms if d.path == a.domain), None)
    return None


def _attempt_at(session: Session, level: str, dom: Domain | None, gp: GroupPlan, placed: int) -> LevelAttempt:
    table = session.table
    needed = sum(_leaf_needs(gp))
    if dom is None:
        return LevelAttempt(level, "", table.resources(gp.need_vec), 0, needed)
    short = table.resources(gp.need_vec).shortfall(table.resources(dom.free))
    return LevelAttempt(level, dom.path, short, placed if short.is_zero() else 0, needed)


def _failure_message(session: Session, gp: GroupPlan, reason: Reason, attempts: tuple[LevelAttempt, ...]) -> str:
    needed = sum(_leaf_needs(gp))
    detail = "; ".join(_describe(a) for a in attempts)
    what = session.table.resources(gp.need_vec)
    if reason is Reason.TOPOLOGY_REQUIRED_UNSATISFIABLE and gp.tier is not None:
        return f"no single {gp.tier.names[-1]} can hold the gang's {needed} pods ({what}) now: {detail}"
    return f"not enough free capacity for the gang's {needed} pods ({what}): {detail}"


def _leaf_needs(gp: GroupPlan) -> list[int]:
    if not gp.children:
        return [gp.need]
    return [n for c in gp.children for n in _leaf_needs(c)]


def _leaves(gp: GroupPlan, constrained: bool) -> list[tuple[GroupPlan, bool]]:
    here = constrained or (gp.tier is not None and gp.tier.required is not None)
    if not gp.children:
        return [(gp, here)]
    return [x for c in gp.children for x in _leaves(c, here)]


def _extras(
    session: Session,
    placer: GangPlacer,
    job: Job,
    gp: GroupPlan,
    plan: Plan,
    chosen: dict[int, tuple[Domain, int]],
    landed: Domain,
) -> None:
    """Elastic pods beyond the minimum: best effort, inside the gang's domain when it is required."""
    head = _headroom(session, job.queue)
    used = [0.0] * len(session.table.dims)
    for _node, req, pods in plan.log:
        for i, v in req:
            used[i] += v * len(pods)
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
                got = placer.fill(where, cls, start, left, plan, leaf.need_vec)
                for i, v in cls.req:
                    used[i] += v * got
                start += got
                left -= got
                if left <= 0:
                    break


def _closest(
    session: Session, level: str, doms: list[Domain], gp: GroupPlan, partial: tuple[int, Domain] | None
) -> LevelAttempt:
    table = session.table
    needed = sum(_leaf_needs(gp))
    if partial is not None:
        return LevelAttempt(level, partial[1].path, Resources(), partial[0], needed)
    best: tuple[float, str, Domain] | None = None
    for d in doms:
        worst = 0.0
        for f, n in zip(d.free, gp.need_vec, strict=True):
            if n > 0 and f < n:
                worst = max(worst, (n - f) / n)
        if best is None or (worst, d.path) < best[:2]:
            best = (worst, d.path, d)
    if best is None:
        return LevelAttempt(level, "", table.resources(gp.need_vec), 0, needed)
    short = table.resources(gp.need_vec).shortfall(table.resources(best[2].free))
    return LevelAttempt(level, best[2].path, short, 0, needed)


def _describe(a: LevelAttempt) -> str:
    if not a.domain:
        return f"no {a.level} has nodes that carry the topology's labels"
    if a.short.is_zero():
        return f"closest {a.level} {a.domain} has the capacity in total but fragmented: {a.placed}/{a.needed} pods fit"
    where = "the cluster" if a.level == "cluster" else f"closest {a.level} {a.domain}"
    return f"{where} is short {a.short}"

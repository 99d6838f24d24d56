"""Why a gang did not fit: the closest domain per level and the record's message, built once here."""

from __future__ import annotations

from scheduler.actions.common.gang import GroupPlan
from scheduler.actions.common.members import Outcome
from scheduler.api.reasons import Reason
from scheduler.api.resources import Resources
from scheduler.framework.nodes import Domain, NodeTable
from scheduler.framework.record import LevelAttempt


def leaf_needs(gp: GroupPlan) -> list[int]:
    if not gp.children:
        return [gp.need]
    return [n for c in gp.children for n in leaf_needs(c)]


def attempt_at(table: NodeTable, level: str, dom: Domain | None, gp: GroupPlan, placed: int) -> LevelAttempt:
    needed = sum(leaf_needs(gp))
    if dom is None:
        return LevelAttempt(level, "", table.resources(gp.need_vec), 0, needed)
    short = table.resources(gp.need_vec).shortfall(table.resources(dom.free))
    return LevelAttempt(level, dom.path, short, placed if short.is_zero() else 0, needed)


def closest(
    table: NodeTable, level: str, doms: list[Domain], gp: GroupPlan, partial: tuple[int, Domain] | None
) -> LevelAttempt:
    """The domain that came closest at one level: the one that took the most members, else the one
    short the least (relative to the need, on its worst resource)."""
    needed = sum(leaf_needs(gp))
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


def failure_message(table: NodeTable, gp: GroupPlan, reason: Reason, attempts: tuple[LevelAttempt, ...]) -> str:
    needed = sum(leaf_needs(gp))
    detail = "; ".join(describe(a) for a in attempts)
    what = table.resources(gp.need_vec)
    if reason is Reason.TOPOLOGY_REQUIRED_UNSATISFIABLE and gp.tier is not None:
        return f"no single {gp.tier.names[-1]} can hold the gang's {needed} pods ({what}) now: {detail}"
    return f"not enough free capacity for the gang's {needed} pods ({what}): {detail}"


def describe(a: LevelAttempt) -> str:
    if not a.domain:
        return f"no {a.level} has nodes that carry the topology's labels"
    if a.short.is_zero():
        return f"closest {a.level} {a.domain} has the capacity in total but fragmented: {a.placed}/{a.needed} pods fit"
    where = "the cluster" if a.level == "cluster" else f"closest {a.level} {a.domain}"
    return f"{where} is short {a.short}"


def members_detail(table: NodeTable, gp: GroupPlan, dom: Domain, outcome: Outcome) -> str:
    """The truth about a gang whose members fit one by one but not all together in a domain."""
    parts = []
    for cls in gp.classes:
        req = table.resources([dict(cls.req).get(i, 0) for i in range(len(table.dims))])
        like = f" and {len(cls.pods) - 1} like it" if len(cls.pods) > 1 else ""
        parts.append(f"{cls.pods[0].name}{like} ({req} each): room for {outcome.room_alone.get(id(cls), 0)} alone")
    alone = all(outcome.room_alone.get(id(c), 0) >= min(len(c.pods), gp.need) for c in gp.classes)
    head = (
        f"in {dom.path} each kind of member fits on its own but at most {outcome.best} of the {gp.need} fit together"
        if alone
        else f"in {dom.path} at most {outcome.best} of the {gp.need} members fit"
    )
    return f"{head} ({'; '.join(parts)})"

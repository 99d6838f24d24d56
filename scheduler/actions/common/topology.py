"""Topology domain choice: the one level-by-level search, used by a gang and by each of its subgroups.

A tier lists levels narrowest first (preferred, then wider, never past required). At each level the
candidate domains are those whose free capacity holds the group's need, tightest (highest request over
free on the dominant resource) first; the first one the members fit in wins. A subgroup searches inside
its parent's domain."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from scheduler.framework.nodes import Domain, NodeTable, TopologyTree
from scheduler.framework.record import LevelAttempt
from scheduler.framework.statement import Statement

INF = float("inf")


@dataclass(slots=True, eq=False)
class Tier:
    """How a group chooses its domain: a topology tree and the levels to try, narrowest first."""

    tree: TopologyTree | None
    levels: list[int]  # -1 = the tree's root (every node carrying all labels)
    required: int | None
    names: list[str]


def fits(free: Sequence[int], need: Sequence[int]) -> bool:
    return all(f >= n for f, n in zip(free, need, strict=True))


def tightness(free: Sequence[int], need: Sequence[int]) -> float:
    """The request over what the domain has free, on its dominant resource (1.0 = exactly full)."""
    t = 0.0
    for f, n in zip(free, need, strict=True):
        if n > 0:
            t = max(t, n / f if f > 0 else INF)
    return t


def ranked(doms: Sequence[Domain], need: Sequence[int]) -> list[tuple[float, str, Domain]]:
    """Domains whose free capacity holds `need`, as a heap: tightest (highest request/free) first."""
    sparse = [(i, v) for i, v in enumerate(need) if v > 0]
    out: list[tuple[float, str, Domain]] = []
    for d in doms:
        f = d.free
        t = 0.0
        for i, v in sparse:
            fi = f[i]
            if fi < v:
                break
            r = v / fi
            if r > t:
                t = r
        else:
            out.append((-t, d.path, d))
    heapq.heapify(out)
    return out


def by_tightness(doms: Sequence[Domain], need: Sequence[int]) -> Iterator[Domain]:
    """Lazily: a heap pop per candidate, so a gang that fits the first domain sorts nothing else."""
    heap = ranked(doms, need)
    while heap:
        yield heapq.heappop(heap)[2]


def root_of(dom: Domain) -> Domain:
    while dom.parent is not None:
        dom = dom.parent
    return dom


def levels_of(
    table: NodeTable, tier: Tier | None, within: Domain | None, pinned: Sequence[int] = ()
) -> Iterator[tuple[str, list[Domain]]]:
    """(level name, candidate domains) per level to try, narrowest first.

    `within`: the parent's domain (None for a gang itself). `pinned`: nodes the gang's bound members run
    on; only domains holding them are candidates (a gang never spans two domains of its level)."""
    if tier is None or tier.tree is None:
        yield "cluster", [within if within is not None else table.cluster]
        return
    tree = tier.tree
    same_tree = within is not None and root_of(within) is tree.root
    for lv, name in zip(tier.levels, tier.names, strict=True):
        if within is not None and same_tree and lv <= within.level:
            # the parent's domain already lies inside one domain of this level (and of every wider one)
            yield name, [within]
            return
        if lv < 0:
            doms = [tree.root]
        else:
            doms = list(tree.domains(lv))
            if within is not None and within.level >= 0:
                prefix = within.path + "/"
                doms = [d for d in doms if d.path.startswith(prefix)]
            if pinned:
                held = {id(tree.domain_of(n, lv)) for n in pinned}
                doms = [d for d in doms if id(d) in held]
        yield name, doms


PlaceFn = Callable[[Domain], bool]
ClosestFn = Callable[[str, list[Domain], "tuple[int, Domain] | None"], LevelAttempt]


def placements(
    table: NodeTable,
    tier: Tier | None,
    need: Sequence[int],
    within: Domain | None,
    stmt: Statement,
    place: PlaceFn,
    pinned: Sequence[int] = (),
    closest: ClosestFn | None = None,
    attempts: list[LevelAttempt] | None = None,
    prefer: set[int] | None = None,
    measure: Callable[[int], int] | None = None,
) -> Iterator[tuple[Domain, int]]:
    """Every domain the members can be placed in, in search order: each level's candidates (those whose
    free capacity holds `need`), tightest first, narrowest level first. `place(dom)` puts the members
    into one (it may leave placements on failure: they are rolled back here). Yields (domain, mark) with
    the members placed; the caller rolls back to `mark` before asking for the next one.

    With `attempts`, each level whose candidates all failed records its closest domain
    (`closest(level, doms, partial)`, partial = the most members any candidate took), for the record's
    explanation. `prefer`: ids of domains the gang already uses; those are tried first (a subgroup joins
    its siblings when it fits). `measure(mark)`: how many members a failed trial placed."""
    for name, doms in levels_of(table, tier, within, pinned):
        best: tuple[int, Domain] | None = None
        found = False
        candidates: Iterator[Domain] = by_tightness(doms, need)
        if prefer:
            ranked_doms = list(candidates)
            candidates = iter(
                [d for d in ranked_doms if id(d) in prefer] + [d for d in ranked_doms if id(d) not in prefer]
            )
        for dom in candidates:
            mark = stmt.checkpoint()
            if place(dom):
                found = True
                yield dom, mark
                continue
            got = measure(mark) if measure is not None else stmt.placed_count(mark)
            if best is None or got > best[0]:
                best = (got, dom)
            stmt.rollback(mark)
        if not found and attempts is not None and closest is not None:
            attempts.append(closest(name, doms, best))

"""Complete member placement inside one domain: a bounded exact search for when greedy fill fails.

Greedy fill (most-constrained class first, each pod on the first node in node order) is complete for a
gang of one pod class, and fast. A gang of several classes (a router without GPUs, decode workers with
two, members that tolerate a taint and one that does not) can fail greedily although it fits: an early
member takes the node a later one needed. Then this search decides it exactly, within a work bound.

The search is a depth-first assignment of pods to nodes over the domain's candidate nodes, with the
symmetries that make it tractable removed: nodes with the same idle capacity (on the dims the gang asks
for) and the same eligibility for every class form one group, kept as a multiset of free vectors; pods of
one class are interchangeable, so they take groups in non-decreasing order; a class stops taking pods once
its group's minimum is met. Every option examined costs one unit of the budget; when the budget runs out
the answer is "unknown", never "does not fit".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scheduler.framework.nodes import Domain, NodeTable
from scheduler.framework.statement import Statement

if TYPE_CHECKING:
    from scheduler.actions.common.gang import PodClass

DEFAULT_BUDGET = 200_000  # options examined per gang, over every domain it tries (a few µs each)
CYCLE_BUDGET_GANGS = 5  # a cycle's searches together examine at most this many gangs' budgets
MAX_SEARCH_PODS = 256  # larger heterogeneous minimums are left to greedy fill (the search recurses per pod)


@dataclass(slots=True)
class Budget:
    left: int = DEFAULT_BUDGET
    spent: int = 0
    exhausted: bool = False

    def take(self, n: int = 1) -> bool:
        self.spent += n
        self.left -= n
        if self.left < 0:
            self.exhausted = True
        return not self.exhausted


@dataclass(slots=True, eq=False)
class Demand:
    """One leaf group's part of the search: its pod classes and how many pods it must place."""

    classes: list[PodClass]
    need: int


@dataclass(slots=True)
class Outcome:
    placement: list[tuple[PodClass, int, int]] | None  # (class, node, pods) when found
    best: int  # the most pods of the demands placed together in any branch tried
    complete: bool  # False when the budget ran out before the search finished
    room_alone: dict[int, int] = field(default_factory=dict)  # id(class) -> pods it fits alone in the domain


def _idle(table: NodeTable, node: int, dims: Sequence[int], releasing_ok: bool) -> tuple[int, ...]:
    free = table.free[node]
    rel = None if releasing_ok else table.releasing.get(node)
    if rel is None:
        return tuple(free[d] for d in dims)
    return tuple(free[d] - rel[d] for d in dims)


def search_members(
    table: NodeTable,
    dom: Domain,
    demands: Sequence[Demand],
    order: Sequence[int],
    budget: Budget,
    releasing_ok: bool = False,
) -> Outcome:
    """Find pods for every demand's need inside `dom`, or prove there is none (within the budget).

    `releasing_ok`: a take-back statement's search counts what victims release as room (pipelined).
    `order`: the domain's nodes in visiting order (node order, compact sub-domains first); groups are
    tried in the order of their first node, so the answer leans the same way greedy fill does."""
    classes: list[tuple[PodClass, int]] = [(c, k) for k, d in enumerate(demands) for c in d.classes]
    if sum(d.need for d in demands) > MAX_SEARCH_PODS:
        return Outcome(None, 0, False)
    dims = sorted({i for c, _ in classes for i, v in c.req if v > 0})
    reqs = [tuple(dict(c.req).get(i, 0) for i in dims) for c, _ in classes]
    # groups of equivalent nodes: same idle vector on the asked dims, same eligibility for every class
    by_key: dict[tuple[tuple[int, ...], tuple[bool, ...]], list[int]] = {}
    for node in order:
        bits = tuple(bool(c.mask[node]) for c, _ in classes)
        if any(bits):
            by_key.setdefault((_idle(table, node, dims, releasing_ok), bits), []).append(node)
    group_vec = [vec for vec, _ in by_key]  # in order of each group's first node
    group_nodes = list(by_key.values())
    eligible = [[g for g, (_, bits) in enumerate(by_key) if bits[ci]] for ci in range(len(classes))]
    state = [{vec: len(nodes)} for vec, nodes in zip(group_vec, group_nodes, strict=True)]
    room_alone: dict[int, int] = {}
    for ci, (c, _) in enumerate(classes):
        total = sum(len(group_nodes[g]) * _fit(group_vec[g], reqs[ci], len(c.pods)) for g in eligible[ci])
        room_alone[id(c)] = min(total, len(c.pods))
    # most-constrained first: fewest pods' worth of room alone, then fewest eligible groups, larger first
    seq = sorted(
        range(len(classes)),
        key=lambda ci: (room_alone[id(classes[ci][0])], len(eligible[ci]), [-v for v in reqs[ci]], ci),
    )
    need = [d.need for d in demands]
    have = [0] * len(demands)
    # pods a demand can still place from its classes at or after each position of `seq`
    later = [[0] * len(demands) for _ in range(len(seq) + 1)]
    for pos in range(len(seq) - 1, -1, -1):
        later[pos] = list(later[pos + 1])
        c, k = classes[seq[pos]]
        later[pos][k] += len(c.pods)
    trail: list[tuple[int, int, tuple[int, ...]]] = []  # (class index, group, vector it was placed on)
    best = 0

    def dfs(pos: int, taken: int, min_group: int) -> bool:
        nonlocal best
        placed_now = sum(have)
        if placed_now > best:
            best = placed_now
        if pos == len(seq):
            return all(h >= n for h, n in zip(have, need, strict=True))
        ci = seq[pos]
        c, k = classes[ci]
        # the demands left unmet must still be reachable from here on
        for j in range(len(demands)):
            if have[j] + later[pos][j] - (taken if j == k else 0) < need[j]:
                return False
        if have[k] < need[k] and taken < len(c.pods):
            req = reqs[ci]
            for g in eligible[ci]:
                if g < min_group:
                    continue
                vecs = state[g]
                for vec in sorted(vecs, reverse=True):  # roomier instances first
                    if not budget.take():
                        return False
                    if not all(f >= r for f, r in zip(vec, req, strict=True)):
                        continue
                    after = tuple(f - r for f, r in zip(vec, req, strict=True))
                    _move(vecs, vec, after)
                    have[k] += 1
                    trail.append((ci, g, vec))
                    if dfs(pos, taken + 1, g):
                        return True
                    trail.pop()
                    have[k] -= 1
                    _move(vecs, after, vec)
                    if budget.exhausted:
                        return False
        return dfs(pos + 1, 0, 0)  # this class takes no more pods

    found = dfs(0, 0, 0)
    if not found:
        return Outcome(None, best, not budget.exhausted, room_alone)
    # map the multiset choices back onto concrete nodes, in each group's node order
    local: dict[int, tuple[int, ...]] = {}
    counts: dict[tuple[int, int], int] = {}
    for ci, g, vec in trail:
        req = reqs[ci]
        for node in group_nodes[g]:
            cur = local.get(node, group_vec[g])
            if cur == vec:
                local[node] = tuple(f - r for f, r in zip(cur, req, strict=True))
                counts[(ci, node)] = counts.get((ci, node), 0) + 1
                break
        else:  # pragma: no cover - the multiset and the nodes always agree
            raise AssertionError("search placement does not map onto its group's nodes")
    placement = [(classes[ci][0], node, n) for (ci, node), n in counts.items()]
    return Outcome(placement, sum(have), True, room_alone)


def _fit(vec: Sequence[int], req: Sequence[int], cap: int) -> int:
    best = cap
    for f, r in zip(vec, req, strict=True):
        if r > 0:
            best = min(best, f // r)
    return max(best, 0)


def _move(vecs: dict[tuple[int, ...], int], src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    n = vecs[src] - 1
    if n:
        vecs[src] = n
    else:
        del vecs[src]
    vecs[dst] = vecs.get(dst, 0) + 1


def apply(stmt: Statement, outcome: Outcome) -> dict[int, int]:
    """Place a found assignment in the statement, pods of each class in their order; returns, per class,
    how many of its pods were placed."""
    assert outcome.placement is not None
    used: dict[int, int] = {}
    for cls, node, n in outcome.placement:
        at = used.get(id(cls), 0)
        stmt.allocate_many(cls.pods[at : at + n], node, cls.req)
        used[id(cls)] = at + n
    return used

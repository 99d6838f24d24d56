"""The victim lists take-back ranks domains with: a list patched after a commit equals one built afresh,
the cheapest prefix found by the lazy running sums equals a plain scan, and the domains ranked with cost
bounds are those a ranking of every domain's exact cost puts first."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.actions.common.topology import fits
from scheduler.actions.common.victims import (
    Merged,
    Unit,
    _entries,
    _merge_level,
    _patched,
    _replaced,
    cheapest,
    cheapest_prefix,
    cost_bound,
    prefix_cost,
)
from scheduler.api.pod import Pod
from scheduler.api.podgroup import TopologyConstraint
from scheduler.api.resources import Resources
from scheduler.framework.jobs import Group, Job

DIMS = 2


def job(key: str) -> Job:
    return Job(key, "ns", None, "q", "", "", Group("", 1, None, TopologyConstraint()))


def unit(i: int, prio: int, gains: list[tuple[int, tuple[int, int]]], pods: int = 0) -> Unit:
    merged: dict[int, tuple[int, int]] = {}
    for node, (a, b) in gains:
        x, y = merged.get(node, (0, 0))
        merged[node] = (x + a, y + b)
    nodes = tuple(sorted(merged))
    order = (prio, i % 2, 1, 0.0, f"ns/g{i}", "")
    pod_list = tuple(Pod("ns", f"g{i}-{k}", f"u{i}-{k}", "s", "n", "Running", Resources()) for k in range(pods))
    return Unit(job(f"ns/g{i}"), pod_list, True, order, nodes, tuple((n, merged[n]) for n in nodes))


units_st = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.lists(st.tuples(st.integers(0, 5), st.tuples(st.integers(0, 4), st.integers(0, 4))), min_size=1, max_size=3),
    ),
    max_size=25,
).map(lambda xs: sorted((unit(i, p, g) for i, (p, g) in enumerate(xs)), key=lambda u: u.order))

FREE_ST = st.tuples(st.integers(-3, 4), st.integers(-3, 4))  # a node may be over-committed
NEED_ST = st.tuples(st.integers(0, 12), st.integers(0, 12))
WHERE = {0: 100, 1: 100, 2: 200, 3: 200, 4: 300}  # node 5 lies in no domain


def as_lists(m: Merged | None) -> tuple[list[Unit], list[tuple[int, ...]]]:
    if m is None:
        return [], []
    return list(m.units), [tuple(g) for g in m.gains]


@settings(max_examples=200, deadline=None)
@given(units_st, st.data())
def test_patched_lists_equal_lists_built_afresh(units: list[Unit], data: st.DataObject) -> None:
    merged = _merge_level(units, WHERE, "")
    for m in merged.values():  # some running sums made, as earlier queries leave them
        for _ in range(data.draw(st.integers(0, len(m.units)))):
            m.extend()
    gone = data.draw(st.lists(st.sampled_from(units), unique_by=id, max_size=4)) if units else []
    shrunk = [unit(1000 + k, int(u.order[0]), [(u.nodes[0], (0, 1))]) for k, u in enumerate(gone) if u.nodes]
    after = sorted([u for u in units if all(u is not g for g in gone)] + shrunk, key=lambda u: u.order)
    assert _replaced(units, gone, shrunk) == after
    fresh = _merge_level(after, WHERE, "")
    for d in (100, 200, 300):
        m = merged.get(d)
        patched = (
            _patched(m, gone, _entries(shrunk, WHERE, d)) if m is not None else _merge_level(shrunk, WHERE, "").get(d)
        )
        assert as_lists(patched) == as_lists(fresh.get(d))
        if patched is not None:  # the kept running sums are those of the new list
            while len(patched.cum) < len(patched.units):
                patched.extend()
            ref = fresh[d]
            while len(ref.cum) < len(ref.units):
                ref.extend()
            assert (patched.cum, patched.pods, patched.breaks) == (ref.cum, ref.pods, ref.breaks)


@settings(max_examples=200, deadline=None)
@given(
    units_st,
    st.tuples(st.integers(-3, 4), st.integers(-3, 4)),
    st.tuples(st.integers(0, 12), st.integers(0, 12)),
    st.integers(0, 30),
)
def test_cheapest_prefix_is_the_first_prefix_that_fits(
    units: list[Unit], free: tuple[int, int], need: tuple[int, int], made: int
) -> None:
    for m in _merge_level(units, WHERE, "").values():
        for _ in range(min(made, len(m.units))):
            m.extend()  # whatever an earlier query summed
        want = None
        acc = list(free)
        if fits(acc, need):
            want = 0
        else:
            for i, g in enumerate(m.gains):
                acc = [a + b for a, b in zip(acc, g, strict=True)]
                if fits(acc, need):
                    want = i + 1
                    break
        assert cheapest_prefix(m, free, need) == want


# units of 0-3 pods (0: a rate without bound) releasing 0-4 of two resources per node
counted_st = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.lists(st.tuples(st.integers(0, 5), st.tuples(st.integers(0, 4), st.integers(0, 4))), min_size=1, max_size=3),
        st.integers(0, 3),
    ),
    max_size=25,
).map(lambda xs: sorted((unit(i, p, g, n) for i, (p, g, n) in enumerate(xs)), key=lambda u: u.order))


@settings(max_examples=300, deadline=None)
@given(counted_st, st.lists(FREE_ST, min_size=3, max_size=3), NEED_ST, st.integers(1, 3), st.data())
def test_ranking_by_bounds_equals_ranking_every_domain(
    units: list[Unit], frees: list[tuple[int, int]], need: tuple[int, int], k: int, data: st.DataObject
) -> None:
    merged = _merge_level(units, WHERE, "")
    entries = []
    for d, free in zip((100, 200, 300), frees, strict=True):
        m = merged.get(d)
        if m is None:
            continue
        if data.draw(st.booleans()):  # a list patched after a commit keeps its rates as an upper bound
            m.rate_bounds()
            gone = [u for u in m.units if data.draw(st.booleans())]
            patched = _patched(m, gone, [])
            if patched is None:
                continue
            m = patched
        entries.append((f"d{d}", m, free))
        exact = prefix_cost(m, free, need)
        bound = cost_bound(m, free, need)
        if bound is None:
            assert exact is None
        elif exact is not None:
            assert bound <= exact
    every = sorted(
        (c, path, i) for i, (path, m, free) in enumerate(entries) if (c := prefix_cost(m, free, need)) is not None
    )
    assert cheapest(entries, need, k) == every[:k]

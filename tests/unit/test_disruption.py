"""PodDisruptionBudgets: conversion, the cache carrying them, and how take-back counts violations."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.actions.common.victims import Ledger, Merged, Unit, Walk, violations
from scheduler.api.pod import Pod
from scheduler.api.podgroup import TopologyConstraint
from scheduler.api.resources import Resources
from scheduler.cache.cluster_state import ClusterState
from scheduler.framework.jobs import Group, Job
from scheduler.kube.disruption import budget_from_k8s


def pdb(name: str, selector: dict[str, Any] | None, allowed: Any, ns: str = "ml", **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"minAvailable": 1}
    if selector is not None:
        spec["selector"] = selector
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
        "status": {"disruptionsAllowed": allowed, **status},
    }


def pod(name: str, ns: str = "ml", **labels: str) -> Pod:
    return Pod(
        ns,
        name,
        f"uid-{name}",
        "kai-scheduler",
        "n1",
        "Running",
        Resources.of({"pods": 1}),
        labels=tuple(labels.items()),
    )


def test_conversion_reads_selector_allowance_and_disrupted_pods() -> None:
    b = budget_from_k8s(pdb("b", {"matchLabels": {"app": "x"}}, 2, disruptedPods={"x-0": "2024-01-01T00:00:00Z"}))
    assert (b.namespace, b.name, b.allowed) == ("ml", "b", 2)
    assert b.selects("ml", "x-1", {"app": "x"})
    assert not b.selects("ml", "x-0", {"app": "x"}), "a pod already being disrupted is not counted again"
    assert not b.selects("other", "x-1", {"app": "x"}), "a budget selects in its own namespace only"
    assert not b.selects("ml", "y", {"app": "y"})
    assert budget_from_k8s(pdb("c", {"matchLabels": {"app": "x"}}, "junk")).allowed == 0


def test_nil_or_empty_selector_selects_nothing_as_in_kube_scheduler_preemption() -> None:
    assert not budget_from_k8s(pdb("nil", None, 0)).selects("ml", "p", {"app": "x"})
    assert not budget_from_k8s(pdb("empty", {}, 0)).selects("ml", "p", {"app": "x"})


def test_cache_watches_and_snapshots_budgets() -> None:
    state = ClusterState()
    state.apply_object(pdb("b", {"matchLabels": {"app": "x"}}, 1))
    state.apply_object(pdb("b", {"matchLabels": {"app": "x"}}, 1, ns="other"))
    snap = state.snapshot()
    assert sorted(snap.budgets) == ["ml/b", "other/b"]
    assert snap.budgets["ml/b"].allowed == 1
    state.apply_object(pdb("b", {"matchLabels": {"app": "x"}}, 0))
    assert state.snapshot().budgets["ml/b"].allowed == 0, "a status update replaces the budget"
    state.apply_object(pdb("b", None, 0), deleted=True)
    assert sorted(state.snapshot().budgets) == ["other/b"]


def test_violations_spend_each_allowance_in_order() -> None:
    b = budget_from_k8s(pdb("b", {"matchLabels": {"app": "x"}}, 1))
    budgets = {"ml": [b]}
    xs = [pod("x-0", app="x"), pod("x-1", app="x"), pod("x-2", app="x")]
    assert violations(xs[:1], budgets) == 0
    assert violations(xs, budgets) == 2, "the first eviction spends the one allowed disruption"
    assert violations([pod("y", app="y"), pod("x", ns="other", app="x")], budgets) == 0
    strict = budget_from_k8s(pdb("s", {"matchExpressions": [{"key": "app", "operator": "Exists"}]}, 0))
    assert violations(xs[:1], {"ml": [b, strict]}) == 1, "breaking any one budget counts"


def test_ledger_walk_skips_disrupted_decrements_every_budget_and_breaks_below_zero() -> None:
    spent = budget_from_k8s(pdb("a-spent", {"matchLabels": {"app": "x"}}, 0))
    wide = budget_from_k8s(pdb("b-wide", {"matchExpressions": [{"key": "app", "operator": "Exists"}]}, 1))
    ledger = Ledger({"ml": [spent, wide]})
    assert ledger.charge([pod("x-0", app="x")]) == 1, "a-spent allows nothing: a violation"
    assert ledger.left == {("ml", "a-spent"): -1, ("ml", "b-wide"): 0}, "as kube: every selecting budget is reduced"
    assert ledger.charge([pod("y-0", app="y")]) == 1, "so b-wide, spent by x-0, no longer allows y-0"
    assert ledger.left == {("ml", "a-spent"): -1, ("ml", "b-wide"): -1}
    fresh = Ledger({"ml": [wide]})
    assert fresh.charge([pod("y-1", app="y")]) == 0 and fresh.left == {("ml", "b-wide"): 0}, "within its allowance"
    assert fresh.charge([pod("n-0")]) == 0 and fresh.left == {("ml", "b-wide"): 0}, "a pod with no labels: no budget"

    going = budget_from_k8s(pdb("c", {"matchLabels": {"app": "z"}}, 0, disruptedPods={"z-0": "2024-01-01T00:00:00Z"}))
    ledger = Ledger({"ml": [going]})
    assert ledger.charge([pod("z-0", app="z")]) == 0, "a pod in disruptedPods is not counted against the budget"
    assert ledger.left == {}
    assert ledger.charge([pod("z-1", app="z")]) == 1


def test_budgets_are_counted_jointly_along_a_victim_set() -> None:
    b = budget_from_k8s(pdb("b", {"matchLabels": {"app": "x"}}, 1))
    ledger = Ledger({"ml": [b]})
    first, second = [pod("x-0", app="x")], [pod("x-1", app="x")]
    assert violations(first, ledger) == violations(second, ledger) == 0, "each alone breaks nothing"
    assert ledger.left == {}, "violations() leaves the ledger as it was"
    assert ledger.charge(first) == 0
    assert violations(second, ledger) == 1, "after the first is taken, the second spends what is not left"
    walk = ledger.copy()
    assert walk.charge(second) == 1 and walk.left == {("ml", "b"): -1}
    assert ledger.left == {("ml", "b"): 0}, "a copy is charged on its own"


def test_walk_ranks_guarded_victims_by_what_the_victims_taken_before_left() -> None:
    b = budget_from_k8s(pdb("b", {"matchLabels": {"app": "x"}}, 1))
    ledger = Ledger({"ml": [b]})

    def unit(name: str, start: float, guarded: bool, pods: list[Pod]) -> Unit:
        job = Job(f"ml/{name}", "ml", None, "q", "", "", Group("", 1, None, TopologyConstraint()))
        return Unit(job, tuple(pods), True, (50, 0, len(pods), -start, job.key, ""), guarded=guarded)

    g1 = unit("g1", 3.0, True, [pod("g1", app="x")])  # youngest first
    g0 = unit("g0", 2.0, True, [pod("g0", app="x")])
    u1 = unit("u1", 1.0, False, [pod("u1")])
    u0 = unit("u0", 0.0, False, [pod("u0")])
    m = Merged([g1, g0, u1, u0], [(1,)] * 4, ledger=ledger)
    walk = Walk(m, set())
    seen = []
    for u in walk:
        seen.append(u.job.key)
        walk.take(u)
    assert seen == ["ml/g1", "ml/u1", "ml/u0", "ml/g0"], "g1 spends the budget: g0 would break it, so it goes last"
    assert walk.keys[id(g0)][1] == 1 and walk.keys[id(g1)][1] == 0
    assert ledger.left == {}, "the walk charges its own copy"
    skipped = Walk(m, set())
    assert [u.job.key for u in skipped] == ["ml/g1", "ml/g0", "ml/u1", "ml/u0"], "nothing taken: nothing spent"
    for _ in range(2):
        m.extend()
    assert m.breaks == [0, 1], "the ranking's running violations are counted jointly along the prefix"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 2), st.lists(st.sampled_from(["x", "y", ""]), min_size=1, max_size=3)), max_size=8
    ),
    st.integers(0, 2),
    st.integers(0, 2),
)
def test_walk_is_the_greedy_cheapest_after_each_take(specs: list[tuple[int, list[str]]], ax: int, ay: int) -> None:
    """Each step yields the unit whose order, its violations counted after the victims taken, is least."""
    budgets = [
        budget_from_k8s(pdb("a", {"matchLabels": {"app": "x"}}, ax)),
        budget_from_k8s(pdb("b", {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]}, ay)),
    ]
    ledger = Ledger({"ml": budgets})
    units = []
    for i, (prio, apps) in enumerate(specs):
        pods = [pod(f"p{i}-{k}", **({"app": a} if a else {})) for k, a in enumerate(apps)]
        job = Job(f"ml/g{i}", "ml", None, "q", "", "", Group("", 1, None, TopologyConstraint()))
        order = (prio, violations(pods, ledger), len(pods), -float(i), job.key, "")
        units.append(Unit(job, tuple(pods), True, order, guarded=bool(ledger.guards(pods))))
    units.sort(key=lambda u: u.order)
    walk = Walk(Merged(units, [(1,)] * len(units), ledger=ledger), set())
    got = []
    for u in walk:
        got.append(u.job.key)
        walk.take(u)
    left, want, rest = ledger.copy(), [], list(units)
    while rest:
        best = min(rest, key=lambda u: (u.order[0], violations(u.pods, left), *u.order[2:]))
        rest.remove(best)
        left.charge(best.pods)
        want.append(best.job.key)
    assert got == want

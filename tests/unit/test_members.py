"""The bounded exact member search: finds what greedy misses, proves infeasibility, stops at its budget,
and a cycle's searches together stay within five gangs' budgets."""

from __future__ import annotations

from typing import Any

from test_plugins import node, pod, podgroup, snapshot

from scheduler.actions.common.gang import GangPlacer
from scheduler.actions.common.members import CYCLE_BUDGET_GANGS, Budget, Demand, search_members
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.session import Session


def gang_session(nodes: list[tuple[int, int]], members: list[tuple[int, int]]) -> Session:
    """Nodes (cpu, gpu) and one gang of members (cpu, gpu) that must all be placed."""
    objs: list[dict[str, Any]] = []
    for i, (cpu, gpu) in enumerate(nodes):
        n = node(f"n{i}", gpu)
        n["status"]["allocatable"]["cpu"] = str(cpu)
        objs.append(n)
    objs.append(podgroup("g", len(members)))
    for j, (cpu, gpu) in enumerate(members):
        p = pod(f"p{j}", gpu, "g")
        p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = str(cpu)
        objs.append(p)
    return Session(snapshot(objs), SchedulerConfig(), now=0.0)


def demand_of(session: Session) -> tuple[GangPlacer, Demand]:
    placer = GangPlacer(session)
    gp = placer.prepare(session.jobs[0])
    return placer, Demand(gp.classes, gp.need)


def test_finds_the_placement_greedy_misses_and_it_is_valid() -> None:
    session = gang_session([(6, 2), (5, 3)], [(4, 2), (3, 1), (3, 1)])
    placer, demand = demand_of(session)
    table = session.table
    order = list(placer.iter_nodes(table.cluster, [0] * len(table.dims), 0))
    outcome = search_members(table, table.cluster, [demand], order, Budget(10_000))
    assert outcome.placement is not None and outcome.complete
    used: dict[int, list[int]] = {}
    for cls, n, k in outcome.placement:
        u = used.setdefault(n, [0] * len(table.dims))
        for i, v in cls.req:
            u[i] += v * k
    for n, u in used.items():
        assert all(a <= f for a, f in zip(u, table.free[n], strict=True))
    assert sum(k for _, _, k in outcome.placement) == 3


def test_proves_infeasible_and_reports_room_alone() -> None:
    session = gang_session([(8, 2), (8, 2)], [(6, 2), (5, 1), (5, 1)])
    placer, demand = demand_of(session)
    table = session.table
    order = list(placer.iter_nodes(table.cluster, [0] * len(table.dims), 0))
    outcome = search_members(table, table.cluster, [demand], order, Budget(10_000))
    assert outcome.placement is None and outcome.complete
    assert outcome.best == 2
    assert sorted(outcome.room_alone.values()) == [1, 2]


def test_budget_runs_out_and_says_so() -> None:
    session = gang_session([(8, 2), (8, 2)], [(6, 2), (5, 1), (5, 1)])
    placer, demand = demand_of(session)
    table = session.table
    order = list(placer.iter_nodes(table.cluster, [0] * len(table.dims), 0))
    budget = Budget(2)
    outcome = search_members(table, table.cluster, [demand], order, budget)
    assert outcome.placement is None and not outcome.complete and budget.exhausted


def test_a_cycle_spends_at_most_five_gangs_budgets() -> None:
    session = gang_session([(8, 2)], [(1, 1)])
    placer = GangPlacer(session)
    per_gang = 100
    total = 0
    for _ in range(20):
        placer.start(per_gang)
        assert placer.budget.left <= per_gang
        placer.budget.take(placer.budget.left)  # a gang that spends all it is given
        total += placer.budget.spent
    assert total == per_gang * CYCLE_BUDGET_GANGS
    placer.start(per_gang)
    assert placer.budget.left == 0

"""Statement: every operation moves node free vectors, domain aggregates, sorted indexes and queue usage,
and every undo restores them exactly (hypothesis drives random allocate / evict / pipeline sequences)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.api.node import Node
from scheduler.api.pod import Pod
from scheduler.api.queue import Queue, QueueResource
from scheduler.api.resources import Resources
from scheduler.cache.cluster_state import ClusterState
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.nodes import Domain
from scheduler.framework.session import Session

GPU = "nvidia.com/gpu"
ZONE, RACK, HOST = "topology.kubernetes.io/zone", "topology.kubernetes.io/rack", "kubernetes.io/hostname"
NODES = 100  # above the sorted-index threshold, so the cluster domain keeps a sorted index
QUEUES = ("team-a", "team-b")


RUNNING = Resources.of({"cpu": 2000, "memory": 4 * 2**30, GPU: 2, "pods": 1})


def running_pods() -> list[Pod]:
    """Running pods of ours (every third node), in both queues: the eviction candidates."""
    return [
        Pod(
            "run",
            f"r{i}",
            f"ur{i}",
            "kai-scheduler",
            f"n{i:03d}",
            "Running",
            RUNNING,
            labels=(("kai.scheduler/queue", QUEUES[i % 2]),),
        )
        for i in range(0, NODES, 3)
    ]


def build_session(node_order: str = "binpack") -> Session:
    state = ClusterState("kai-scheduler")
    alloc = Resources.of({"cpu": 16_000, "memory": 64 * 2**30, GPU: 8, "pods": 110})
    for i in range(NODES):
        name = f"n{i:03d}"
        labels = {ZONE: f"z{i // 50}", RACK: f"z{i // 50}-r{(i % 50) // 10}", HOST: name}
        state.upsert_node(Node(name, tuple(sorted(labels.items())), alloc))
    state.apply_object(
        {
            "kind": "Topology",
            "metadata": {"name": "topo"},
            "spec": {"levels": [{"nodeLabel": x} for x in (ZONE, RACK, HOST)]},
        }
    )
    for q in QUEUES:
        state._queues[q] = Queue(q, "", resources=((GPU, QueueResource(8, -1, 1.0)),))
    for pod in running_pods():
        state.upsert_pod(pod)
    for k in range(40):
        req = Resources.of({"cpu": 1000 * (1 + k % 3), "memory": 2**30, GPU: k % 4, "pods": 1})
        q = QUEUES[k % 2]
        state.upsert_pod(
            Pod("p", f"p{k}", f"up{k}", "kai-scheduler", "", "Pending", req, labels=(("kai.scheduler/queue", q),))
        )
    return Session(state.snapshot(), SchedulerConfig(node_order=node_order), now=0.0)


def all_domains(session: Session) -> list[Domain]:
    tree = session.tree("topo")
    assert tree is not None
    out = [session.table.cluster, tree.root]
    for lv in range(len(tree.levels)):
        out.extend(tree.domains(lv))  # the hostname level builds its per-host domains here
    return out


def state_of(session: Session) -> dict[str, Any]:
    table = session.table
    doms = all_domains(session)
    return {
        "free": [list(f) for f in table.free],
        "releasing": {n: list(v) for n, v in sorted(table.releasing.items()) if any(v)},
        "aggregates": [(d.path, list(d.free)) for d in doms],
        "indexes": [(d.path, list(d.index)) for d in doms if d.index is not None],
        "queues": {q: dict(n.allocated) for q, n in sorted(session.queues.nodes.items())},
    }


def recomputed_aggregates(session: Session) -> list[tuple[str, list[int]]]:
    """Aggregates from the node vectors themselves, independent of the incremental updates."""
    table = session.table
    out = []
    for d in all_domains(session):
        total = [0] * len(table.dims)
        for i in d.all_nodes() if d.nodes or d.children else []:
            if table.schedulable[i]:
                total = [a + b for a, b in zip(total, table.free[i], strict=True)]
        out.append((d.path, total))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["allocate", "evict", "pipeline", "checkpoint"]), st.integers(0, 10_000)),
        min_size=1,
        max_size=40,
    ),
    rollback_to=st.integers(0, 100),
    order=st.sampled_from(["binpack", "spread"]),
)
def test_any_sequence_rolls_back_exactly(ops: list[tuple[str, int]], rollback_to: int, order: str) -> None:
    session = build_session(order)
    all_domains(session)  # build every domain first, so the states compare like with like
    start = state_of(session)
    job = session.jobs[0]
    stmt = session.statement(job)
    pending = [p for p in session.snapshot.pending.values()]
    pending.sort(key=lambda p: p.key)
    running = running_pods()
    used_pending: set[str] = set()
    evicted: set[str] = set()
    marks: list[tuple[int, dict[str, Any]]] = [(0, start)]
    for kind, r in ops:
        if kind == "checkpoint":
            marks.append((stmt.checkpoint(), state_of(session)))
            continue
        if kind == "evict":
            left = [p for p in running if p.key not in evicted]
            if not left:
                continue
            pod = left[r % len(left)]
            stmt.evict(pod, "test")
            evicted.add(pod.key)
            continue
        left = [p for p in pending if p.key not in used_pending]
        if not left:
            continue
        pod = left[r % len(left)]
        node = (r // 7) % NODES
        req = session.table.sparse(pod.request)
        assert req is not None
        if stmt.fit_count(node, req, 1, pipelined=kind == "pipeline") == 0:
            continue
        if kind == "allocate":
            stmt.allocate(pod, node)
        else:
            stmt.pipeline(pod, node)
        used_pending.add(pod.key)
        assert all(v >= 0 for v in session.table.free[node])
    assert state_of(session)["aggregates"] == recomputed_aggregates(session)
    mark, expected = marks[rollback_to % len(marks)]
    stmt.rollback(mark)
    assert state_of(session) == expected
    stmt.discard()
    assert state_of(session) == start


def test_trial_eviction_frees_capacity_for_a_pipelined_placement() -> None:
    session = build_session()
    table = session.table
    node = table.by_name["n000"]
    victim = running_pods()[0]
    big = next(p for p in session.snapshot.pending.values() if p.request.get(GPU) == 3)
    req = table.sparse(big.request)
    assert req is not None
    stmt = session.statement(session.jobs[0])
    # fill the node's idle GPUs with pending pods of one GPU
    ones = sorted((p for p in session.snapshot.pending.values() if p.request.get(GPU) == 1), key=lambda p: p.key)
    for p in ones:
        if stmt.fit_count(node, table.sparse(p.request) or (), 1) == 0:
            break
        stmt.allocate(p, node)
    assert table.free[node][0] == 0
    queue = session.queues.nodes["team-a"]
    before = queue.allocated[GPU]
    stmt.evict(victim, "reclaimed")
    assert queue.allocated[GPU] == before - 2  # the victim's queue gives its usage back at once
    assert table.free[node][0] == 2  # counted free (releasing), for the domain search
    assert stmt.fit_count(node, req, 1) == 0  # not idle: allocate may not use what is still releasing
    two = next(p for p in session.snapshot.pending.values() if p.request.get(GPU) == 2)
    assert stmt.fit_count(node, table.sparse(two.request) or (), 1, pipelined=True) == 1
    stmt.pipeline(two, node)
    assert table.releasing.get(node, [0])[0] == 0
    result = stmt.commit()
    assert result.evictions == (("run/r0", "reclaimed"),)
    assert result.pipelined == (("p/" + two.name, "n000"),)
    assert result.binds and all(n == "n000" for _, n in result.binds)
    assert session.record.commits[-1] is result
    with pytest.raises(RuntimeError):
        stmt.allocate(two, node)


def test_eviction_drops_full_node_marks_and_commit_bumps_generation() -> None:
    session = build_session()
    table = session.table
    req = table.sparse(Resources.of({GPU: 1}))
    assert req is not None
    mask = table.full_for(req)
    mask[0] = 1
    stmt = session.statement(session.jobs[0])
    stmt.evict(running_pods()[0], "test")
    assert not table.full_for(req)[0]  # the old mark is gone: capacity grew
    gen = table.generation
    stmt.discard()
    assert table.generation == gen  # nothing changed for good
    stmt2 = session.statement(session.jobs[0])
    stmt2.evict(running_pods()[0], "test")
    stmt2.commit()
    assert table.generation == gen + 1

"""ClusterBackend: the memory backend evicts and binds each gang whole or not at all; the Daemon runs on either
(the Kubernetes backend's evictions: tests/unit/test_kube_evictions.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from scheduler.backends.base import BindError, ClusterBackend, CommitOutcome
from scheduler.backends.memory import MemoryBackend
from scheduler.backends.simulation import run_cycle
from scheduler.cache.cluster_state import Snapshot
from scheduler.daemon.runner import Daemon
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.record import GangCommit, SessionRecord
from scheduler.telemetry.metrics import Metrics

GPU = "nvidia.com/gpu"


def node(name: str, gpus: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", GPU: str(gpus), "pods": "110"}},
    }


def pod(name: str, gpus: int = 1, node_name: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedulerName": "kai-scheduler",
        "containers": [{"name": "c", "resources": {"requests": {GPU: str(gpus)}}}],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
        "status": {"phase": "Running" if node_name else "Pending"},
    }


def memory() -> MemoryBackend:
    return MemoryBackend([node("n1"), node("n2"), pod("victim", 4, "n1"), pod("a"), pod("b"), pod("c")])


def node_of(backend: MemoryBackend, name: str) -> str | None:
    obj = backend.objects.get(("Pod", "ns", name))
    return None if obj is None else str((obj.get("spec") or {}).get("nodeName") or "")


def test_memory_commit_evicts_then_binds() -> None:
    backend = memory()
    gang = GangCommit(
        "ns/g", False, binds=(("ns/a", "n2"),), evictions=(("ns/victim", "reclaim"),), pipelined=(("ns/b", "n1"),)
    )
    out = backend.commit([gang])
    assert out.errors == {}
    assert out.bound == {"ns/g": [("ns/a", "n2"), ("ns/b", "n1")]}
    assert out.evicted == {"ns/g": ["ns/victim"]}
    assert node_of(backend, "victim") is None  # the pod object is gone, as an eviction ends in the API
    assert (node_of(backend, "a"), node_of(backend, "b")) == ("n2", "n1")
    snap = backend.snapshot()
    assert snap.node_used["n1"].get(GPU) == 1  # the victim's 4 GPUs were released, b holds 1


def test_memory_commit_is_all_or_nothing_per_gang() -> None:
    backend = memory()
    bad = GangCommit("ns/bad", False, binds=(("ns/a", "n2"), ("ns/b", "gone")), evictions=(("ns/victim", "x"),))
    good = GangCommit("ns/good", False, binds=(("ns/c", "n2"),))
    twice = GangCommit("ns/twice", False, binds=(("ns/c", "n1"),))  # bound by the gang before it
    out = backend.commit([bad, good, twice])
    assert set(out.errors) == {"ns/bad", "ns/twice"}
    assert "node gone no longer exists" in out.errors["ns/bad"]
    assert "already bound" in out.errors["ns/twice"]
    assert out.bound == {"ns/good": [("ns/c", "n2")]}
    assert node_of(backend, "victim") == "n1" and node_of(backend, "a") == "" and node_of(backend, "b") == ""
    assert backend.drain() == 0 and backend.recover(backend.snapshot()) == []


class Refusing(MemoryBackend):
    """Refuses every gang (as a commit that lost a race would be refused)."""

    def commit(self, commits: Any) -> CommitOutcome:
        return CommitOutcome(errors={c.job: "refused" for c in commits})


def test_simulation_raises_when_memory_refuses() -> None:
    backend = memory()
    refusing = Refusing([node("n1"), pod("a")])
    with pytest.raises(BindError, match="refused"):
        run_cycle(refusing, SchedulerConfig(), 1)
    record = run_cycle(backend, SchedulerConfig(), 1)
    assert [c.job for c in record.commits] and node_of(backend, "a")


class Sink:
    def __init__(self) -> None:
        self.failed: list[Mapping[str, str]] = []

    def write(
        self,
        snapshot: Snapshot,
        record: SessionRecord,
        failed_binds: Mapping[str, str],
        bound: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.failed.append(dict(failed_binds))


def test_daemon_runs_on_the_memory_backend() -> None:
    backend: ClusterBackend = memory()
    sink, metrics = Sink(), Metrics()
    daemon = Daemon(backend, sink, SchedulerConfig(), metrics)
    record = daemon.cycle()
    assert sorted(record.placements()) == ["ns/a", "ns/b", "ns/c"]
    assert metrics.counters["kaisched_pods_bound_total"] == 3
    assert sink.failed == [{}]
    assert daemon.cycle().placements() == {}  # bound: nothing left to place


def test_daemon_backs_off_a_gang_the_backend_refuses() -> None:
    sink, metrics = Sink(), Metrics()
    daemon = Daemon(Refusing([node("n1"), pod("a")]), sink, SchedulerConfig(), metrics)
    daemon.cycle()
    assert sink.failed[0]["ns/a"].startswith("refused; backing off")
    assert metrics.counters["kaisched_bind_failures_total"] == 1
    second = daemon.cycle()  # held by its backoff
    assert not second.decisions["ns/a"].placed and "ns/a" not in second.placements()


def test_stale_mark_reads_back_to_the_instant_it_was_written() -> None:
    """The stale-gang mark counts the grace period from when the gang was seen below minMember: written in
    whole seconds it read back up to a second earlier, and the gang was evicted that much before its time."""
    pg = {
        "apiVersion": "scheduling.run.ai/v2alpha2",
        "kind": "PodGroup",
        "metadata": {"name": "g", "namespace": "ns"},
        "spec": {"minMember": 2},
    }
    b = MemoryBackend([node("n1"), pg])
    b.mark_stale({"ns/g": 1_700_000_000.75})
    assert b.snapshot().pod_groups["ns/g"].stale_since == 1_700_000_000.75
    b.mark_stale({"ns/g": None})
    assert b.snapshot().pod_groups["ns/g"].stale_since is None

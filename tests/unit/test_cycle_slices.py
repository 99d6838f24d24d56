"""A cycle's pod budget (`kaisched run --cycle-pod-budget`): a large backlog is decided in slices, each
slice's commits go to the binder as soon as it is decided, and the next cycle starts at once."""

from __future__ import annotations

import threading
from typing import Any

from scheduler.backends.memory import MemoryBackend
from scheduler.daemon.runner import Daemon
from scheduler.debug.history import CycleEntry
from scheduler.debug.views import explain
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycle import run_session
from scheduler.framework.record import SessionRecord
from scheduler.telemetry.metrics import Metrics
from tests.unit.test_backends import Sink, node

GPU = "nvidia.com/gpu"


def pod(
    name: str, gpus: int = 1, group: str = "", node_name: str = "", priority_class: str = "", created: int = 0
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedulerName": "kai-scheduler",
        "containers": [{"name": "c", "resources": {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}}}],
    }
    if node_name:
        spec["nodeName"] = node_name
    if priority_class:
        spec["priorityClassName"] = priority_class
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "creationTimestamp": f"2026-01-01T00:00:{created:02d}Z"}
    if group:
        meta["annotations"] = {"pod-group-name": group}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Running" if node_name else "Pending"},
    }


def podgroup(name: str, min_member: int, created: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.run.ai/v2alpha2",
        "kind": "PodGroup",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": f"2026-01-01T00:00:{created:02d}Z"},
        "spec": {"minMember": min_member},
    }


def backlog() -> list[dict[str, Any]]:
    """4 nodes of 4 GPUs; a gang of 3 made between ten single pods."""
    objects = [node(f"n{i}") for i in range(4)]
    objects += [pod(f"s{i}", created=i) for i in range(5)]
    objects += [podgroup("g", 3, created=5), *(pod(f"g-{i}", group="g", created=5) for i in range(3))]
    objects += [pod(f"s{i}", created=i + 1) for i in range(5, 10)]
    return objects


def cycles(budget: int | None) -> tuple[Daemon, MemoryBackend, list[SessionRecord]]:
    backend = MemoryBackend(backlog())
    daemon = Daemon(backend, Sink(), SchedulerConfig(), Metrics(), pod_budget=budget)
    records = [daemon.cycle()]
    while records[-1].deferred:
        records.append(daemon.cycle())
    return daemon, backend, records


def test_a_backlog_is_decided_in_slices_with_the_same_placements() -> None:
    _, whole_backend, whole = cycles(None)
    assert len(whole) == 1 and not whole[0].deferred and len(whole[0].placements()) == 13
    _, backend, sliced = cycles(2)
    # budgets 2, 8, 32: s0-s1 | s2-s4, the gang of 3 (never split: a slice stops before a job, never inside
    # one), s5-s6 | s7-s9
    assert [len(r.placements()) for r in sliced] == [2, 8, 3]
    assert sorted(sliced[1].placements()) == [*(f"ns/g-{i}" for i in range(3)), *(f"ns/s{i}" for i in range(2, 7))]
    assert all(r.deferred for r in sliced[:-1]) and not sliced[-1].deferred
    for r in sliced[:-1]:
        assert r.actions == ("allocate",)  # take-back and stale-gang eviction wait for the last slice
        assert set(r.deferred).isdisjoint(r.decisions)  # untried: no decision, so no status is written
        assert set(r.deferred).isdisjoint(r.jobs) and set(r.order) <= set(r.jobs)  # facts of the tried only
    assert sliced[-1].actions == SchedulerConfig().actions
    merged = {k: v for r in sliced for k, v in r.placements().items()}
    assert merged == whole[0].placements()  # one queue: the slices decide what one cycle decides
    assert {k: v for k, v in backend.objects.items() if k[0] == "Pod"} == {
        k: v for k, v in whole_backend.objects.items() if k[0] == "Pod"
    }


def test_a_gang_larger_than_the_budget_is_placed_whole() -> None:
    _, _, records = cycles(1)
    # budgets 1, 4, 16: s0 | s1-s4 | the gang of 3 (more than a first slice) and s5-s9
    assert [len(r.placements()) for r in records] == [1, 4, 8]
    assert sorted(p for p, _ in records[2].decisions["ns/g"].pods) == ["ns/g-0", "ns/g-1", "ns/g-2"]


def test_the_budget_starts_again_after_a_backlog_is_decided() -> None:
    daemon, backend, records = cycles(2)
    assert len(records) == 3
    for i in range(3):
        backend.upsert(pod(f"late{i}", created=30 + i))
    again = daemon.cycle()
    assert len(again.placements()) == 2 and len(again.deferred) == 1


def test_failures_do_not_count_against_the_budget() -> None:
    objects = [node("n0", 2), pod("big", gpus=8, created=0), pod("huge", gpus=9, created=1)]
    objects += [pod(f"s{i}", created=2 + i) for i in range(2)]
    record = run_session(MemoryBackend(objects).snapshot(), SchedulerConfig(), now=100.0, pod_budget=1)
    assert not record.decisions["ns/big"].placed and not record.decisions["ns/huge"].placed
    assert list(record.placements()) == ["ns/s0"] and record.deferred == ("ns/s1",)


def test_take_back_runs_in_the_cycle_that_decides_the_last_slice() -> None:
    """A high-priority pod that must preempt is not helped while the backlog ahead of it is being sliced:
    what it may evict for is known only once every job before it has been tried."""
    objects = [node("n0"), node("n1"), pod("victim", gpus=4, node_name="n0", priority_class="train")]
    objects += [pod(f"s{i}", priority_class="inference", created=i) for i in range(4)]
    objects += [pod("needs-room", gpus=4, priority_class="inference", created=9)]
    backend = MemoryBackend(objects)
    daemon = Daemon(backend, Sink(), SchedulerConfig(), Metrics(), pod_budget=2)
    first = daemon.cycle()
    assert len(first.placements()) == 2 and not first.evictions()
    assert first.deferred == ("ns/needs-room", "ns/s2", "ns/s3")
    last = daemon.cycle()  # a budget of 8: every job is tried, so take-back runs
    assert sorted(last.placements()) == ["ns/needs-room", "ns/s2", "ns/s3"] and not last.deferred
    assert last.evictions() == {"ns/victim": ("preempt", "ns/needs-room")}


def test_run_starts_the_next_slice_without_waiting_a_period() -> None:
    backend = MemoryBackend(backlog())
    config = SchedulerConfig(schedule_period_seconds=3600.0)
    daemon = Daemon(backend, Sink(), config, Metrics(), pod_budget=4)
    seen: list[int] = []
    daemon.observers.append(lambda info: seen.append(len(info.record.deferred)))

    class Stop(threading.Event):
        """Stops the loop the first time it would wait for the next period."""

        def wait(self, timeout: float | None = None) -> bool:
            self.set()
            return True

    daemon.run(Stop())
    assert seen == [7, 0]  # jobs deferred by each cycle (budgets 4, then 16): the two ran back to back
    assert all((backend.objects[("Pod", "ns", f"s{i}")]["spec"].get("nodeName")) for i in range(10))


def test_the_debug_api_says_a_deferred_gang_was_not_tried_yet() -> None:
    backend = MemoryBackend(backlog())
    snap = backend.snapshot()
    record = run_session(snap, SchedulerConfig(), now=100.0, cycle=7, pod_budget=2)
    entries = [CycleEntry(record, 100.0, (), {}, snapshot=snap)]
    later = explain(entries, "ns/s9", snap, SchedulerConfig())
    assert later is not None and later.state == "Pending"
    assert later.message.startswith("not tried in cycle 7: it placed its pod budget (--cycle-pod-budget)")
    placed = explain(entries, "ns/s0", snap, SchedulerConfig())
    assert placed is not None and placed.state == "Scheduled" and "pod budget" not in placed.message


def test_an_elastic_gangs_extras_come_after_every_minimum_even_across_slices() -> None:
    """KAI's order: every gang's minimum before any gang's extras. The elastic gang's minimum (2 of its 4)
    is placed in the first slice; its extras only once the last slice has tried every other gang's."""
    objects = [node("n0", 3), node("n1", 3)]  # room for the minimum and the four singles, no more
    objects += [podgroup("e", 2, created=0), *(pod(f"e-{i}", group="e", created=0) for i in range(4))]
    objects += [pod(f"s{i}", created=1 + i) for i in range(4)]
    backend = MemoryBackend(objects)
    daemon = Daemon(backend, Sink(), SchedulerConfig(), Metrics(), pod_budget=2)
    first = daemon.cycle()
    assert sorted(first.placements()) == ["ns/e-0", "ns/e-1"] and first.deferred
    last = daemon.cycle()  # budget 8: the four singles first, then nothing is left for the extras
    assert not last.deferred
    assert sorted(last.placements()) == ["ns/s0", "ns/s1", "ns/s2", "ns/s3"]
    bound = {k[2] for k, v in backend.objects.items() if k[0] == "Pod" and v["spec"].get("nodeName")}
    assert bound == {"e-0", "e-1", "s0", "s1", "s2", "s3"}


def test_the_debug_apis_cycles_count_the_deferred_gangs() -> None:
    from scheduler.cli.ctl import render_cycles
    from scheduler.debug._pb import debug_pb2 as pb
    from scheduler.debug.views import cycle_message

    record = run_session(MemoryBackend(backlog()).snapshot(), SchedulerConfig(), now=100.0, cycle=3, pod_budget=2)
    summary = {"gangs_tried": len(record.order), "gangs_deferred": len(record.deferred)}
    message = cycle_message(CycleEntry(record, 100.0, (("allocate", 0.01),), summary), include_decisions=False)
    assert (message.gangs_tried, message.gangs_deferred) == (2, 9)
    text = render_cycles(pb.ListCyclesResponse(cycles=[message]))
    assert "DEFERRED" in text.splitlines()[0] and " 9 " in f" {text.splitlines()[-1]} "

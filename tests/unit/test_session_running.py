"""The session's running jobs are built when first asked: a cycle with nothing pending builds no job for the
running pods without a PodGroup (at 50,000 of them that was two thirds of an idle cycle), and what it does
build and record is what a full build would give."""

from __future__ import annotations

from typing import Any

from scheduler.backends.memory import MemoryBackend
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.jobs import build_running_gangs, build_running_jobs
from scheduler.framework.registry import REGISTRY
from scheduler.framework.session import Session
from tests.unit.test_backends import node
from tests.unit.test_cycle_slices import pod, podgroup


def session_after_actions(objects: list[dict[str, Any]]) -> Session:
    config = SchedulerConfig()
    session = Session(MemoryBackend(objects).snapshot(), config, now=1.8e9)
    for name in config.actions:
        REGISTRY.action(name)(session)
    session.close()
    return session


def running_cluster() -> list[dict[str, Any]]:
    objects = [node("n0"), node("n1")]
    objects += [pod(f"lone{i}", node_name="n0", priority_class="train") for i in range(2)]
    objects += [podgroup("g", 2), *(pod(f"g-{i}", group="g", node_name="n1") for i in range(2))]
    return objects


def test_an_idle_cycle_builds_no_job_for_running_pods_without_a_podgroup() -> None:
    session = session_after_actions(running_cluster())
    assert session._running is None  # nothing pending: take-back never asked
    assert list(session.running_gangs) == ["ns/g"]
    assert sorted(session.record.jobs) == ["ns/g"]  # the gang's facts, for its PodGroup's status


def test_take_back_sees_every_running_job_and_records_its_victims_facts() -> None:
    objects = [*running_cluster(), pod("urgent", gpus=4, priority_class="inference")]
    session = session_after_actions(objects)
    assert sorted(session.running) == ["ns/g", "ns/lone0", "ns/lone1"]
    evicted = session.record.evictions()
    assert evicted  # preempt made room for the urgent pod
    for victim in evicted:
        facts = session.record.jobs["ns/g" if victim.startswith("ns/g-") else victim]
        assert facts.preemptible
    assert {k for k in session.record.jobs} == {"ns/g", "ns/lone0", "ns/lone1", "ns/urgent"}
    snap = session.snapshot
    full = build_running_jobs(snap, "default-queue", build_running_gangs(snap, "default-queue", session.jobs))
    assert sorted(full) == sorted(session.running)
    assert all(session.running[k].priority == (50 if k.startswith("ns/lone") else 0) for k in full)

"""The sinks read derived facts from the SessionRecord and never recompute them: the status writer's
allocatedNonPreemptible follows JobFacts.preemptible, the debug API's under_fair_share follows QueueShare."""

from __future__ import annotations

import dataclasses
from typing import Any

from scheduler.backends.memory import MemoryBackend
from scheduler.daemon.status import StatusWriter
from scheduler.debug.views import queue_messages
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycle import run_session
from scheduler.framework.record import JobFacts

GPU = "nvidia.com/gpu"


def objects() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", GPU: "4", "pods": "110"}},
        },
        {
            "apiVersion": "scheduling.run.ai/v2",
            "kind": "Queue",
            "metadata": {"name": "q"},
            "spec": {"resources": {"gpu": {"quota": 4, "limit": -1, "overQuotaWeight": 1}}},
        },
        {
            "apiVersion": "scheduling.run.ai/v2alpha2",
            "kind": "PodGroup",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"minMember": 1, "queue": "q"},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "annotations": {"pod-group-name": "g"}},
            "spec": {
                "schedulerName": "kai-scheduler",
                "containers": [{"name": "c", "resources": {"requests": {GPU: "2"}}}],
            },
        },
    ]


class Recorder:
    host = "http://unused"

    def __init__(self) -> None:
        self.patches: list[tuple[str, Any]] = []

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if method == "PATCH":
            self.patches.append((path, body))
        return {}


def resources_status(preemptible: bool) -> dict[str, Any]:
    snap = MemoryBackend(objects()).snapshot()
    record = run_session(snap, SchedulerConfig(), now=1.0, cycle=1)
    assert record.decisions["ns/g"].placed
    facts = record.jobs["ns/g"]
    record.jobs["ns/g"] = JobFacts(facts.priority, preemptible, facts.queue)
    client = Recorder()
    writer = StatusWriter(client, "kai-scheduler", "test")  # type: ignore[arg-type]
    try:
        writer.write(snap, record, {})
        writer.flush()
    finally:
        writer.close()
    found = [b["status"]["resourcesStatus"] for p, b in client.patches if "resourcesStatus" in b["status"]]
    assert len(found) == 1
    status: dict[str, Any] = found[0]
    return status


def test_allocated_non_preemptible_follows_the_record() -> None:
    assert resources_status(preemptible=False)["allocatedNonPreemptible"][GPU] == "2"
    assert resources_status(preemptible=True)["allocatedNonPreemptible"][GPU] == "0"


def test_under_fair_share_follows_the_record() -> None:
    snap = MemoryBackend(objects()).snapshot()
    record = run_session(snap, SchedulerConfig(), now=1.0, cycle=1)
    for flag in (True, False):
        record.queues["q"] = dataclasses.replace(record.queues["q"], under_fair_share=flag)
        by_name = {q.name: q for q in queue_messages(snap, record, SchedulerConfig())}
        assert by_name["q"].under_fair_share is flag

"""ClusterState.upsert_pod's shortcut (a pod whose placement did not change is swapped in place) leaves the
cache exactly as unindexing the old pod and indexing the new one does: compared over every attribute of
the cache, so an index added later that the shortcut forgets fails here."""

from __future__ import annotations

import dataclasses
import random

from scheduler.api.pod import Pod
from scheduler.api.podspec import NO_EXTRAS, HostPort, PodExtras
from scheduler.api.resources import Resources
from scheduler.cache.cluster_state import ClusterState

NAMES = ("a", "b", "c", "d", "e", "f")


def _random_pod(rng: random.Random, name: str) -> Pod:
    return Pod(
        namespace="ns",
        name=name,
        uid=rng.choice(("u1", "u2")),
        scheduler_name=rng.choice(("kai-scheduler", "kai-scheduler", "default-scheduler")),
        node_name=rng.choice(("", "", "n1", "n2")),
        phase=rng.choice(("Pending", "Running", "Running", "Succeeded", "Failed")),
        request=Resources.of({"cpu": rng.choice((100, 100, 200)), "pods": 1, "nvidia.com/gpu": rng.choice((0, 1))}),
        labels=(("kai.scheduler/queue", rng.choice(("q1", "q2"))),),
        annotations=(("note", str(rng.randrange(3))),),
        deleting=rng.random() < 0.2,
        pod_group=rng.choice(("", "g1", "g2")),
        start_time=rng.choice((None, 1.0, 2.0)),
        extras=rng.choice((NO_EXTRAS, NO_EXTRAS, PodExtras(host_ports=(HostPort(80, "TCP", ""),)))),
    )


def _state(s: ClusterState) -> dict[str, object]:
    return {k: v for k, v in vars(s).items() if k != "generation"}


def test_swapping_a_pod_in_place_equals_reindexing_it() -> None:
    rng = random.Random(15)
    fast, slow = ClusterState(), ClusterState()
    swapped = 0
    for step in range(4000):
        name = rng.choice(NAMES)
        pod = _random_pod(rng, name)
        if step % 3 and (old := fast.pod(pod.key)) is not None:
            pod = Pod(  # mostly a small change of one that is cached: many keep their placement
                **{
                    **{f.name: getattr(old, f.name) for f in dataclasses.fields(Pod) if f.init},
                    **rng.choice(
                        (
                            {"phase": pod.phase},
                            {"start_time": pod.start_time},
                            {"annotations": ()},
                            {"deleting": pod.deleting},
                        )
                    ),
                }
            )
        if rng.random() < 0.05:
            fast.delete_pod(pod.key)
            slow.delete_pod(pod.key)
            continue
        before = fast.generation
        old = fast.pod(pod.key)
        fast.upsert_pod(pod)
        slow.delete_pod(pod.key)  # the long way: nothing cached, so nothing can be swapped
        slow.upsert_pod(pod)
        assert fast.generation > before
        swapped += old is not None and fast.pod(pod.key) is pod and old.node_name == pod.node_name
        assert _state(fast) == _state(slow), f"step {step}: {pod}"
        if step % 50 == 0:
            assert fast.snapshot() == slow.snapshot()
    assert swapped > 500  # the shortcut was taken often enough to mean something

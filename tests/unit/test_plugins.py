"""Plugin hooks and configured actions: each hook is combined the documented way, and the configuration
names what runs (unknown names are a configuration error)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from scheduler.api.pod import Pod
from scheduler.cache.cluster_state import ClusterState, Snapshot
from scheduler.framework.config import DEFAULT_PLUGINS, ConfigError, SchedulerConfig
from scheduler.framework.cycle import run_session
from scheduler.framework.jobs import Job
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import REGISTRY, plugin
from scheduler.framework.session import Session

GPU = "nvidia.com/gpu"
SOLO = "example.com/solo"  # pods with this label: at most one per node (a dynamic constraint)


@plugin("test-solo")
class Solo(Plugin):
    """A dynamic pod filter that keeps its own per-node state through the allocate/deallocate handlers,
    as pod (anti-)affinity will: it must see the gang's own tentative placements and their undo."""

    name = "test-solo"

    def open(self, session: Session) -> None:
        self.on_node: dict[int, int] = {}
        self.calls = 0

    def pod_filter_applies(self, pod: Pod) -> bool:
        return pod.label(SOLO) is not None

    def pod_filter(self, session: Session, pod: Pod, node: int) -> str | None:
        self.calls += 1
        return "node(s) already run a solo pod" if self.on_node.get(node, 0) else None

    def on_allocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        self.on_node[node] = self.on_node.get(node, 0) + sum(1 for p in pods if p.label(SOLO) is not None)

    def on_deallocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        self.on_node[node] -= sum(1 for p in pods if p.label(SOLO) is not None)


@plugin("test-prefer-fast")
class PreferFast(Plugin):
    name = "test-prefer-fast"

    def node_score(self, session: Session, pod: Pod, node: int) -> int:
        return 10 if session.table.nodes[node].label_map().get("fast") == "true" else 0


@plugin("test-victims-a")
class VictimsA(Plugin):
    name = "test-victims-a"

    def victim_filter(self, session: Session, preemptor: Job, victim: Job) -> bool:
        return victim.key != "ns/protected"

    def victim_order(self, session: Session, victim: Job) -> tuple[Any, ...]:
        return (0 if victim.key.endswith("-first") else 1,)


@plugin("test-victims-b")
class VictimsB(Plugin):
    name = "test-victims-b"

    def victim_filter(self, session: Session, preemptor: Job, victim: Job) -> bool:
        return victim.key != "ns/also-protected"


def node(name: str, gpus: int, **labels: str) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi", GPU: str(gpus), "pods": "110"}},
    }


def pod(name: str, gpus: int, group: str = "", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "labels": labels}
    if group:
        meta["annotations"] = {"pod-group-name": group}
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "schedulerName": "kai-scheduler",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1", GPU: str(gpus)}}}],
        },
        "status": {"phase": "Pending"},
    }


def podgroup(name: str, min_member: int) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.run.ai/v2alpha2",
        "kind": "PodGroup",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"minMember": min_member},
    }


def snapshot(objects: list[dict[str, Any]]) -> Snapshot:
    state = ClusterState("kai-scheduler")
    for obj in objects:
        state.apply_object(obj)
    return state.snapshot()


def gang(n: int) -> list[dict[str, Any]]:
    return [podgroup("g", n)] + [pod(f"g-{i}", 1, "g", **{SOLO: "x"}) for i in range(n)]


def test_dynamic_filter_sees_the_gangs_own_placements() -> None:
    objects = [node("a", 8), node("b", 8), node("c", 8), *gang(3)]
    plain = run_session(snapshot(objects), SchedulerConfig(), now=0.0)
    assert len(set(plain.placements().values())) == 1  # binpack alone puts all three on one node
    config = SchedulerConfig(plugins=(*DEFAULT_PLUGINS, "test-solo"))
    record = run_session(snapshot(objects), config, now=0.0)
    assert sorted(record.placements().values()) == ["a", "b", "c"]
    assert record.decisions["ns/g"].placed


def test_dynamic_filter_failure_is_all_or_nothing_and_undone() -> None:
    objects = [node("a", 8), node("b", 8), *gang(3), pod("other", 1, **{SOLO: "x"})]
    config = SchedulerConfig(plugins=(*DEFAULT_PLUGINS, "test-solo"))
    record = run_session(snapshot(objects), config, now=0.0)
    assert not record.decisions["ns/g"].placed  # 3 solo pods, 2 nodes: the gang waits whole
    assert not any(k.startswith("ns/g-") for k in record.placements())
    # the failed trial's placements were undone in the plugin's state too: the lone pod still fits
    assert record.decisions["ns/other"].placed


def test_node_scores_lead_and_node_order_breaks_ties() -> None:
    objects = [node("a", 4), node("b", 8, fast="true"), node("c", 8, fast="true"), pod("p", 1)]
    assert run_session(snapshot(objects), SchedulerConfig(), now=0.0).placements() == {"ns/p": "a"}
    config = SchedulerConfig(plugins=(*DEFAULT_PLUGINS, "test-prefer-fast"))
    assert run_session(snapshot(objects), config, now=0.0).placements() == {"ns/p": "b"}


def test_victim_hooks_all_must_allow_and_orders_concatenate() -> None:
    objects = [node("a", 8)]
    for name in ("protected", "also-protected", "z-first", "b-late", "a-late"):
        objects += [podgroup(name, 1), pod(f"{name}-0", 1, name)]
    config = SchedulerConfig(plugins=(*DEFAULT_PLUGINS, "test-victims-a", "test-victims-b"))
    session = Session(snapshot(objects), config, now=0.0)
    jobs = {j.key: j for j in session.jobs}
    preemptor = jobs["ns/a-late"]
    allowed = [k for k, j in jobs.items() if session.victim_allowed(preemptor, j)]
    assert sorted(allowed) == ["ns/a-late", "ns/b-late", "ns/z-first"]
    ordered = sorted((jobs[k] for k in allowed), key=session.victim_order_key)
    # priority plugin first (all equal), then test-victims-a's key, then creation, then name
    assert [j.key for j in ordered] == ["ns/z-first", "ns/a-late", "ns/b-late"]


def test_actions_run_in_configured_order_and_an_empty_list_places_nothing() -> None:
    objects = [node("a", 8), pod("p", 1)]
    assert run_session(snapshot(objects), SchedulerConfig(actions=()), now=0.0).placements() == {}
    record = run_session(snapshot(objects), SchedulerConfig(), now=0.0)
    assert record.actions == ("allocate", "consolidate", "reclaim", "preempt", "stalegangeviction")
    assert [c.binds for c in record.commits] == [(("ns/p", "a"),)]
    assert record.jobs["ns/p"].priority == 0 and record.jobs["ns/p"].preemptible


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"actions": ["allocate", "reclaimm"]}, "unknown action 'reclaimm'; known actions: allocate"),
        ({"plugins": ["predicates", "proportoin"]}, "unknown plugin 'proportoin'"),
        ({"actions": "allocate"}, "actions must be a list of names"),
        ({"plugins": ["priority", "priority"]}, "plugins lists a name twice"),
    ],
)
def test_unknown_or_malformed_names_are_configuration_errors(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        SchedulerConfig.from_dict(data)
    assert fragment in str(err.value)


def test_builtins_are_registered_by_name() -> None:
    REGISTRY.load()
    assert {"allocate"} <= set(REGISTRY.actions)
    assert set(DEFAULT_PLUGINS) <= set(REGISTRY.plugins)


def test_without_proportion_or_nodeorder_the_session_still_runs() -> None:
    objects = [node("b", 8), node("a", 8), pod("p", 1), pod("q", 1, **{"kai.scheduler/queue": "missing"})]
    record = run_session(snapshot(objects), SchedulerConfig(plugins=("predicates",)), now=0.0)
    assert record.placements() == {"ns/p": "a"}  # no node order plugin: nodes by name
    assert str(record.decisions["ns/q"].reason) == "QueueDoesNotExist"  # queue structure is the framework's


def test_run_and_simulate_refuse_to_start_on_an_unknown_action(tmp_path: Any, capsys: Any) -> None:
    from scheduler.cli.main import main

    config = tmp_path / "config.yaml"
    config.write_text("actions: [allocate, reclaimm]\n")
    objects = tmp_path / "objects.yaml"
    objects.write_text("apiVersion: v1\nkind: Node\nmetadata: {name: a}\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "unknown action 'reclaimm'; known actions: allocate" in capsys.readouterr().err
    assert main(["simulate", str(objects), "--config", str(config)]) == 2
    assert "unknown action 'reclaimm'" in capsys.readouterr().err

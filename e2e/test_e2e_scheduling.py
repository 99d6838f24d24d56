"""End to end: the installed scheduler (chart RBAC, config, queues, priority classes, Topology) with real
controllers making pods from Deployments. Each test runs on every provider (see conftest.py)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import Provider
from e2e.conftest import E2E, install_crd

pytestmark = pytest.mark.e2e

PREFERRED = "kai.scheduler/topology-preferred-placement"
REQUIRED = "kai.scheduler/topology-required-placement"
ZONE = "topology.kubernetes.io/zone"

# the disaggregated vLLM-style deployment: a router/frontend, prefill workers and decode workers
FRONTEND, PREFILL, DECODE = ("frontend", 1, 0), ("prefill", 2, 2), ("decode", 2, 1)
GANG_PODS = FRONTEND[1] + PREFILL[1] + DECODE[1]  # 5 pods, 6 GPUs: one zone (8) holds it, one rack (4) not


def _running(pods: list[dict[str, Any]], n: int) -> list[dict[str, Any]] | None:
    ok = [p for p in pods if (p.get("status") or {}).get("phase") == "Running" and p["spec"].get("nodeName")]
    return ok if len(ok) == n and len(pods) == n else None


def _scheduled_at(pod: dict[str, Any]) -> dt.datetime:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c["type"] == "PodScheduled" and c["status"] == "True":
            return dt.datetime.strptime(c["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")
    raise AssertionError(f"{pod['metadata']['name']} has no PodScheduled=True condition: {pod.get('status')}")


def _vllm(e2e: E2E, placement: str) -> str:
    """The seed's flow, zero configuration: the workload alone, a DynamoGraphDeployment annotated with the
    topology (its Deployments made test-side, as Dynamo's operator would), and no PodGroup written; the
    scheduler's grouper makes the gang. Returns its PodGroup's name."""
    annotations = {"kai.scheduler/topology": e2e.p.topology, placement: ZONE}
    services = [(name, replicas, gpu) for name, replicas, gpu in (FRONTEND, PREFILL, DECODE)]
    return e2e.dynamo_graph("vllm", annotations, services, priority_class="inference")


def _gang_pods(e2e: E2E, pg: str) -> list[dict[str, Any]]:
    return [p for p in e2e.pods() if (p["metadata"].get("annotations") or {}).get("pod-group-name") == pg]


def _assert_started_together(pods: list[dict[str, Any]]) -> None:
    times = sorted(_scheduled_at(p) for p in pods)
    assert (times[-1] - times[0]).total_seconds() <= 1, f"bound across cycles, not as one gang: {times}"


def _no_forbidden(provider: Provider) -> None:
    bad = provider.forbidden_lines()  # type: ignore[attr-defined]
    assert not bad, "the scheduler was refused a request: the chart's role lacks a verb:\n" + "\n".join(bad[:20])


def test_disaggregated_inference_preferred_zone_starts_together(provider: Provider, e2e: E2E) -> None:
    nodes = e2e.nodes(("za", "r1", 4), ("za", "r2", 4), ("zb", "r1", 4), ("zb", "r2", 4))
    pg = _vllm(e2e, PREFERRED)
    pods = e2e.wait(lambda: _running(_gang_pods(e2e, pg), GANG_PODS), "all 5 pods of the gang Running")
    zones = {e2e.zone_of(p["spec"]["nodeName"]) for p in pods}
    assert len(zones) == 1, f"the gang spans zones {zones}: {[p['spec']['nodeName'] for p in pods]}"
    assert {p["spec"]["nodeName"] for p in pods} <= set(nodes)
    _assert_started_together(pods)
    assert all(p["spec"].get("priority") == 125 for p in pods), "the chart's inference PriorityClass resolved"
    e2e.wait(lambda: e2e.podgroup_reason(pg) is None or None, "no scheduling condition on the placed gang")
    _no_forbidden(provider)


def test_disaggregated_inference_required_zone_waits_then_starts_at_once(provider: Provider, e2e: E2E) -> None:
    a1, _a2, b1, _b2 = e2e.nodes(("za", "r1", 4), ("za", "r2", 4), ("zb", "r1", 4), ("zb", "r2", 4))
    # others hold 3 GPUs in each zone: 5 free per zone (10 in all) for a gang of 6 that must share a zone
    e2e.pinned_pod("holder-a", a1, 3)
    e2e.pinned_pod("holder-b", b1, 3)
    pg = _vllm(e2e, REQUIRED)
    e2e.wait(lambda: len(_gang_pods(e2e, pg)) == GANG_PODS or None, "the grouper joined all 5 pods to the gang")
    e2e.wait(
        lambda: e2e.podgroup_reason(pg) == "TopologyRequiredUnsatisfiable" or None,
        "the PodGroup condition TopologyRequiredUnsatisfiable",
    )
    time.sleep(3)  # several cycles (0.5 s each): still nothing may start
    bound = [p["metadata"]["name"] for p in _gang_pods(e2e, pg) if p["spec"].get("nodeName")]
    assert not bound, f"pods started although no zone has room: {bound}"
    ev = e2e.wait(lambda: e2e.events("Unschedulable"), "an Unschedulable event")
    assert any("TopologyRequiredUnsatisfiable" in x.get("note", "") for x in ev), [x.get("note") for x in ev]

    e2e.delete_pod("holder-b")  # zone zb now has 8 free GPUs
    pods = e2e.wait(lambda: _running(_gang_pods(e2e, pg), GANG_PODS), "all 5 pods Running once zone zb freed")
    zones = {e2e.zone_of(p["spec"]["nodeName"]) for p in pods}
    assert zones == {e2e.zone("zb")}, zones
    _assert_started_together(pods)
    _no_forbidden(provider)


def test_queue_fairness_two_teams(provider: Provider, e2e: E2E) -> None:
    team_a, team_b = e2e.queue("team-a", weight=1), e2e.queue("team-b", weight=3)
    e2e.deployment("team-a", 12, 1, queue=team_a, priority_class="train")
    e2e.deployment("team-b", 12, 1, queue=team_b, priority_class="train")
    # both backlogs wait before there is any capacity, so fair share is decided with both teams asking
    e2e.wait(lambda: len(e2e.pods()) == 24 or None, "24 pods pending")
    e2e.nodes(("za", "r1", 4), ("za", "r2", 4))

    def split() -> tuple[int, int] | None:
        a = sum(1 for p in e2e.pods("team-a") if p["spec"].get("nodeName"))
        b = sum(1 for p in e2e.pods("team-b") if p["spec"].get("nodeName"))
        return (a, b) if a + b == 8 else None

    # quota 0 for both: the 8 GPUs are shared by overQuotaWeight 1:3 -> 2 and 6
    assert e2e.wait(split, "the 8 GPUs all bound") == (2, 6)
    time.sleep(2)
    assert split() == (2, 6), "the cluster is full: no further binds"

    def status(q: str) -> dict[str, Any] | None:
        st = e2e.api.req("GET", f"/apis/scheduling.run.ai/v2/queues/{q}").get("status") or {}
        return st if st.get("allocated") else None

    st_a = e2e.wait(lambda: (s := status(team_a)) and s["allocated"].get("nvidia.com/gpu") == "2" and s, "status a")
    st_b = e2e.wait(lambda: (s := status(team_b)) and s["allocated"].get("nvidia.com/gpu") == "6" and s, "status b")
    assert st_a["fairShare"]["nvidia.com/gpu"] == "2" and st_b["fairShare"]["nvidia.com/gpu"] == "6", (st_a, st_b)
    _no_forbidden(provider)


def test_leader_failover_binds_nothing_twice(provider: Provider, e2e: E2E) -> None:
    e2e.nodes(("za", "r1", 8), ("za", "r2", 8))
    replicas = e2e.wait(lambda: len(r := provider.replicas()) == 2 and r, "two scheduler replicas")
    leader = e2e.wait(provider.leader, "a lease holder")
    assert leader in replicas, (leader, replicas)
    standby = next(r for r in replicas if r != leader)
    assert provider.metrics(standby).get("kaisched_cycles_total", 0) == 0, "the standby must not schedule"  # type: ignore[attr-defined]

    def gang(name: str) -> None:
        e2e.podgroup(name, 2)
        e2e.deployment(name, 2, 1, pod_group=name)

    for g in ("before-0", "before-1", "before-2"):
        gang(g)
    first = e2e.wait(lambda: _running(e2e.pods(), 6), "the first 3 gangs Running")
    first_seen = {p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"]["nodeName"]) for p in first}
    # events are posted off the scheduling thread, after the binds: let the leader finish them, since a
    # SIGKILL loses the ones still queued (best effort, like any controller's events)
    e2e.wait(
        lambda: {ev["regarding"]["name"] for ev in e2e.events("Scheduled")} >= set(first_seen) or None,
        "the leader's Scheduled events for the first 3 gangs",
    )

    provider.kill(leader)
    killed_at = time.monotonic()
    for g in ("after-0", "after-1", "after-2"):
        gang(g)
    new_leader = e2e.wait(
        lambda: (h := provider.leader()) and h != leader and h, "another replica to take the lease", timeout=60
    )
    took = time.monotonic() - killed_at
    # the lease expires lease_seconds after the dead leader's last renewal; the standby retries every 2 s
    assert took <= provider.lease_seconds + 2 + 2, f"takeover took {took:.1f}s (lease {provider.lease_seconds}s)"
    # the standby, or the replacement of the killed replica if it started in time to race for the lease
    assert new_leader in provider.replicas(), (new_leader, provider.replicas())
    pods = e2e.wait(lambda: _running(e2e.pods(), 12), "all 6 gangs Running after the failover")
    for p in pods:
        name = p["metadata"]["name"]
        if name in first_seen:
            assert (p["metadata"]["uid"], p["spec"]["nodeName"]) == first_seen[name], f"{name} was moved or recreated"
    names = {p["metadata"]["name"] for p in pods}

    def scheduled_events() -> dict[str, int] | None:
        per_pod: dict[str, int] = {}
        for ev in e2e.events("Scheduled"):
            per_pod[ev["regarding"]["name"]] = per_pod.get(ev["regarding"]["name"], 0) + 1
        return per_pod if set(per_pod) >= names else None

    try:
        e2e.wait(scheduled_events, "a Scheduled event for every pod (written asynchronously)", timeout=20)
    except AssertionError:
        got = {ev["regarding"]["name"] for ev in e2e.events("Scheduled")}
        raise AssertionError(f"no Scheduled event for {sorted(names - got)}; leader was {leader}") from None
    time.sleep(1)  # a second event for any pod would come within a cycle or two
    per_pod = scheduled_events() or {}
    assert set(per_pod) == names, per_pod
    assert all(n == 1 for n in per_pod.values()), f"a pod scheduled twice: {per_pod}"
    assert not e2e.events("FailedBinding"), [x.get("note") for x in e2e.events("FailedBinding")]
    print(f"failover: {leader} killed, {new_leader} took the lease after {took:.1f}s (standby was {standby})")
    _no_forbidden(provider)


def test_inference_preempts_training_under_the_charts_role(provider: Provider, e2e: E2E) -> None:
    """The installed scheduler takes room back with nothing but the chart's role: 4 training gangs (the
    chart's `train`, 50) fill 8 GPUs; an inference gang (`inference`, 125; the default queue's quota is
    unlimited) preempts 2 of them whole and starts together; the others keep running whole."""
    e2e.nodes(("za", "r1", 4), ("za", "r2", 4))
    training = [f"train-{i}" for i in range(4)]
    for g in training:
        e2e.podgroup(g, 2, priorityClassName="train")
        e2e.deployment(g, 2, 1, pod_group=g, priority_class="train")
    e2e.wait(lambda: _running(e2e.pods(), 8), "the 4 training gangs Running")
    e2e.podgroup("serve", 4, priorityClassName="inference")
    e2e.deployment("serve", 4, 1, pod_group="serve", priority_class="inference")
    pods = e2e.wait(lambda: _running(_gang_pods(e2e, "serve"), 4), "the inference gang Running")
    _assert_started_together(pods)
    preempted = e2e.wait(lambda: len(e2e.events("Preempted")) >= 4 and e2e.events("Preempted"), "Preempted events")
    assert len(preempted) == 4 and all("/serve" in x.get("note", "") for x in preempted), preempted
    time.sleep(2)  # several cycles: nothing else moves
    running = [sum(1 for p in _gang_pods(e2e, g) if p["spec"].get("nodeName")) for g in training]
    assert sorted(running) == [0, 0, 2, 2], f"2 training gangs evicted whole, 2 left whole: {running}"
    _no_forbidden(provider)


def test_a_kind_the_role_cannot_read_is_scheduled_as_a_gang_of_one(provider: Provider, e2e: E2E) -> None:
    """The chart's role reads only the kinds the grouper has rules for. A pod of any other kind it may not
    read is not held forever: it is grouped by what the scheduler can read, here nothing (README "Grouping")."""
    (node,) = e2e.nodes(("za", "r1", 4))
    install_crd(e2e.api, Path(__file__).parent / "crds" / "widgets.yaml")
    w = e2e.api.req(
        "POST",
        f"/apis/example.com/v1/namespaces/{e2e.ns}/widgets",
        body={"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}},
    )
    owner = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "name": "w",
        "uid": w["metadata"]["uid"],
        "controller": True,
    }
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w-0", "ownerReferences": [owner]},
            "spec": e2e.pod_spec(1)}  # fmt: skip
    e2e.api.req("POST", f"/api/v1/namespaces/{e2e.ns}/pods", body=body)
    pods = e2e.wait(lambda: _running(e2e.pods(), 1), "the Widget's pod Running")
    assert pods[0]["spec"]["nodeName"] == node
    assert "pod-group-name" not in (pods[0]["metadata"].get("annotations") or {})
    _no_forbidden(provider)

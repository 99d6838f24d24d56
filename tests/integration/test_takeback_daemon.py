"""Take-back and node loss with the daemon as a process, on the real API server with real controllers:
kube-controller-manager (Deployments -> ReplicaSets -> pods, which re-makes the pods a scheduler evicts)
and kwok (nodes Ready, bound pods Running, terminating pods gone). The daemon talks through the fault
proxy, whose request log counts its DELETEs: a victim evicted twice would show.

- node loss (issue 10, point 3): a gang of 4 with required rack placement loses a node and the 2 members on
  it; it is re-placed whole in its rack when there is room, else evicted whole after the stale-gang grace
  period (and never stays half-running past it);
- take-back in the daemon (issue 12): team B reclaims its fair share from team A's Deployments while A keeps
  its own; an inference gang preempts training in its queue; a daemon killed between the first and the last
  eviction of a preempt plan leaves it to the next one, which finishes it (each victim once, preemptor whole).
  Gangs that cannot take back say why in their PodGroup condition."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.binder.crash import ENV
from tests.faultproxy import FaultProxy
from tests.integration import test_commit_faults as faults
from tests.integration.test_commit_faults import Watcher, intent_of
from tests.integration.test_daemon import GPU, RACK, DaemonProc, Daemons, Kube, wait_for
from tests.kubecluster import LocalCluster, deployment_manifest

# the fault tests' fixtures: the proxy, the test's namespace, daemons behind the proxy
proxy, kube, daemon = faults.proxy, faults.kube, faults.daemon

GROUP = "pod-group-name"
REQUIRED = "kai.scheduler/topology-required-placement"
STALE_SINCE = "kai.scheduler/stale-since"


@pytest.fixture(scope="module")
def controllers(kube_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """kwok and kube-controller-manager for this module's tests (both left running for the whole module)."""
    kube_cluster.start_kwok()
    kube_cluster.start_controller_manager()
    yield kube_cluster
    kube_cluster.kill("kube-controller-manager")
    kube_cluster.kill("kwok")


# ----------------------------------------------------------------------------- objects


def priority_class(kube: Kube, name: str, value: int) -> str:
    name = f"{name}-{kube.tag}"
    body = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value}
    kube.req("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", body=body)
    kube.cluster_objects.append(f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}")
    return name


def deployment(
    kube: Kube, name: str, replicas: int, gpu: int, *, queue: str = "", priority: str = "", grace: int = 0
) -> None:
    """A Deployment whose pods are the members of PodGroup `name` (created with the PodGroup, as a grouper
    would): its ReplicaSet re-makes every member that is deleted, with a new name."""
    labels = {"kai.scheduler/queue": queue} if queue else {}
    spec: dict[str, Any] = {
        "schedulerName": "kai-scheduler",
        "terminationGracePeriodSeconds": grace,
        "nodeSelector": {"test-id": kube.ns},
        "containers": [{"name": "c", "image": "registry.invalid/none:0", "resources": {"limits": {GPU: str(gpu)}}}],
    }
    if priority:
        spec["priorityClassName"] = priority
    body = deployment_manifest(name, replicas, spec, labels, {GROUP: name})
    kube.req("POST", f"/apis/apps/v1/namespaces/{kube.ns}/deployments", body=body)


def gang(
    kube: Kube, name: str, replicas: int, gpu: int = 1, annotations: dict[str, str] | None = None, **kw: Any
) -> str:
    """PodGroup `name` (minMember = replicas) and the Deployment that makes its members."""
    spec: dict[str, Any] = {}
    if kw.get("queue"):
        spec["queue"] = kw["queue"]
    if kw.get("priority"):
        spec["priorityClassName"] = kw["priority"]
    kube.podgroup(name, replicas, annotations, **spec)
    deployment(kube, name, replicas, gpu, **kw)
    return name


def members(pods: dict[str, dict[str, Any]], pg: str) -> dict[str, dict[str, Any]]:
    """The gang's pods that are not terminating."""
    return {
        n: p
        for n, p in pods.items()
        if (p["metadata"].get("annotations") or {}).get(GROUP) == pg and not p["metadata"].get("deletionTimestamp")
    }


def bound(pods: dict[str, dict[str, Any]], pg: str) -> dict[str, str]:
    """Bound, live members of the gang: name -> node."""
    return {n: p["spec"]["nodeName"] for n, p in members(pods, pg).items() if p["spec"].get("nodeName")}


def running(kube: Kube, pg: str, n: int) -> dict[str, str] | None:
    """The gang's n members, every one Running (kwok) on a node, or None."""
    live = members(kube.pods(), pg)
    ok = {m: p["spec"]["nodeName"] for m, p in live.items() if (p.get("status") or {}).get("phase") == "Running"}
    return ok if len(ok) == n == len(live) else None


def config(tmp_path: Path, **keys: Any) -> str:
    path = tmp_path / "kaisched.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in keys.items()))
    return str(path)


def deleted_by_daemons(proxy: FaultProxy, ns: str) -> dict[str, int]:
    """Pod name -> DELETE requests the daemons sent for it."""
    out: dict[str, int] = {}
    for _, method, path, _ in proxy.received:
        if method == "DELETE" and path.startswith(f"/api/v1/namespaces/{ns}/pods/"):
            name = path.split("?")[0].rsplit("/", 1)[-1]
            out[name] = out.get(name, 0) + 1
    return out


def gpu_total(kube: Kube) -> int:
    nodes = kube.req("GET", "/api/v1/nodes").get("items") or []
    return sum(int((n.get("status") or {}).get("allocatable", {}).get(GPU, "0")) for n in nodes)


def condition(kube: Kube, pg: str) -> tuple[str, str] | None:
    conds = kube.conditions(pg)
    return (str(conds[0].get("reason")), str(conds[0].get("message"))) if conds else None


# ----------------------------------------------------------------------------- node loss (issue 10.3)


def lose_node(kube: Kube, node: str) -> list[str]:
    """Delete the node, then its pods as the pod GC would (grace 0: no kubelet is left to confirm)."""
    kube.req("DELETE", f"/api/v1/nodes/{node}")
    lost = [n for n, p in kube.pods().items() if p["spec"].get("nodeName") == node]
    for name in lost:
        kube.delete_pod(name)
    return lost


@pytest.mark.parametrize("case", ["room-in-rack", "room-elsewhere", "no-room"])
def test_node_loss_gang_replaced_whole_or_evicted_whole(
    case: str, controllers: LocalCluster, kube: Kube, daemon: Daemons, tmp_path: Path
) -> None:
    """A gang of 4 (minMember 4, required rack) runs 2 + 2 on nodes x and y of rack r1; x is deleted with
    its 2 members, and the gang's ReplicaSet makes 2 new ones.
    - room-in-rack: node z of r1 has room (and node w of r2 more): the 2 go to z, the 2 on y are left alone;
    - room-elsewhere: only w (rack r2) has room: the 2 new members never go there while 2 run in r1; the gang
      runs half for the stale-gang grace period, is evicted whole (StaleGangEvicted on each running member)
      and is placed whole on w;
    - no-room: as above, then it waits whole, saying why, until a node of r2 has room."""
    grace = 30 if case == "room-in-rack" else 3
    topo = kube.topology([RACK])
    x = kube.node("x", 2, rack="r1", kwok=True)
    y = kube.node("y", 2, rack="r1", kwok=True)
    gang(kube, "g", 4, annotations={"kai.scheduler/topology": topo, REQUIRED: RACK})
    d = daemon.start("--config", config(tmp_path, staleGangGraceSeconds=grace))
    first = wait_for(lambda: running(kube, "g", 4), "the gang of 4 Running on x and y", daemon)
    assert sorted(first.values()) == sorted([x, x, y, y]), first
    on_y = {n: kube.pods()[n]["metadata"]["uid"] for n, node in first.items() if node == y}
    z = kube.node("z", 2, rack="r1", kwok=True) if case == "room-in-rack" else ""
    w = kube.node("w", 4, rack="r2", kwok=True) if case != "no-room" else ""
    if z or w:
        wait_for(lambda: gpu_total(kube) == 4 + (2 if z else 0) + 4 or None, "the new nodes listed", daemon)
        daemon.wait_cycles(d, 2)  # the daemon's cache has them
    lost = lose_node(kube, x)
    assert len(lost) == 2, lost
    t_loss = time.monotonic()

    if z:
        placed = wait_for(lambda: running(kube, "g", 4), "the gang whole again", daemon)
        assert sorted(placed.values()) == sorted([y, y, z, z]), f"the 2 new members go to z, in rack r1: {placed}"
        pods = kube.pods()
        assert {n: pods[n]["metadata"]["uid"] for n in on_y} == on_y, "the members on y were left running"
        daemon.wait_cycles(d, 3)
        assert not kube.events("StaleGangEvicted")
        assert wait_for(lambda: STALE_SINCE not in _annotations(kube, "g") or None, "no stale mark", daemon)
        return

    # no room in r1: half-running (2 on y, 2 pending) until the grace period ends, never after it
    marked = False
    evicted_at = None
    half_until = t_loss
    while time.monotonic() - t_loss < grace + 20:
        pods = kube.pods()
        live = members(pods, "g")
        if not any(n in live for n in on_y):
            evicted_at = time.monotonic()
            break
        placed = bound(pods, "g")
        assert set(placed.values()) == {y}, f"a member placed outside the rack of those running: {placed}"
        half_until = time.monotonic()
        marked = marked or STALE_SINCE in _annotations(kube, "g")
        time.sleep(0.2)
    assert evicted_at is not None, f"the half gang was not evicted within {grace + 20}s\n{daemon.tail()}"
    half = half_until - t_loss
    print(f"node loss -> gang evicted whole: {evicted_at - t_loss:.2f}s (grace {grace}s; half-running {half:.2f}s)")
    assert marked, "the stale mark was written on the PodGroup while the gang ran half"
    # the mark starts when the daemon sees the gang below minMember (after t_loss): never evicted earlier
    assert evicted_at - t_loss >= grace, f"evicted {evicted_at - t_loss:.2f}s after the loss, grace {grace}s"
    assert half <= grace + 5, f"ran half for {half:.1f}s with a grace period of {grace}s"
    events = wait_for(
        lambda: len(kube.events("StaleGangEvicted")) >= 2 and kube.events("StaleGangEvicted"),
        "StaleGangEvicted events",
        daemon,
    )
    assert {e["regarding"]["name"] for e in events} == set(on_y), [e["regarding"]["name"] for e in events]
    assert {e["regarding"]["uid"] for e in events} == set(on_y.values())
    assert all("stale-gang eviction" in e["note"] and f"{kube.ns}/g" in e["note"] for e in events), events
    if not w:
        # whole or nothing from now on: 4 pending members (the ReplicaSet re-made the evicted ones), none bound
        wait_for(lambda: len(members(kube.pods(), "g")) == 4 or None, "4 pending members", daemon)
        daemon.wait_cycles(d, 5)
        assert not bound(kube.pods(), "g"), "nothing of the gang runs: no rack holds 4"
        reason = wait_for(lambda: condition(kube, "g"), "a condition saying why the gang waits", daemon)
        assert reason[0] == "GangTooLarge", reason  # its rack r1 has y alone now (2 GPUs)
        assert STALE_SINCE not in _annotations(kube, "g"), "the stale mark cleared: nothing runs"
        w = kube.node("w", 4, rack="r2", kwok=True)
    placed = wait_for(lambda: running(kube, "g", 4), "the gang whole in rack r2", daemon)
    assert set(placed.values()) == {w}, placed


def _annotations(kube: Kube, pg: str) -> dict[str, str]:
    return dict(kube.get_podgroup(pg)["metadata"].get("annotations") or {})


# ----------------------------------------------------------------------------- take-back (issue 12)


def fill(kube: Kube, prefix: str, n: int, **kw: Any) -> list[str]:
    """n training gangs of 2 x 1 GPU, each a PodGroup and its Deployment."""
    return [gang(kube, f"{prefix}{i}", 2, **kw) for i in range(n)]


def whole_gangs(pods: dict[str, dict[str, Any]], gangs: list[str], size: int) -> tuple[list[str], list[str]]:
    """(gangs running whole, gangs with no member bound); a gang partly bound fails the test."""
    whole, none = [], []
    for g in gangs:
        b = len(bound(pods, g))
        assert b in (0, size), f"gang {g} partly bound: {bound(pods, g)}"
        (whole if b == size else none).append(g)
    return whole, none


def four_nodes(kube: Kube) -> list[str]:
    nodes = [kube.node(f"n{i}", 2, kwok=True) for i in range(4)]
    total = wait_for(lambda: gpu_total(kube) or None, "the nodes listed")
    assert total == 8, f"precondition: the cluster's only GPUs are this test's 8 (found {total})"
    return nodes


def test_team_b_reclaims_its_fair_share_from_team_a_deployments(
    controllers: LocalCluster, kube: Kube, daemon: Daemons, proxy: FaultProxy
) -> None:
    """8 GPUs; team A's 4 training gangs (Deployments, 2 x 1 GPU) fill them; team B's gang of 4 arrives.
    Equal weights: fair shares 4 and 4. Reclaim evicts 2 of A's gangs whole, B runs within a few cycles of
    its pods existing, A keeps 4 GPUs (its share) and nothing more moves; A's re-made gangs say why they
    cannot take back."""
    four_nodes(kube)
    train = priority_class(kube, "train", 50)
    qa, qb = kube.queue("team-a", weight=1), kube.queue("team-b", weight=1)
    a_gangs = fill(kube, "a", 4, queue=qa, priority=train)
    d = daemon.start()
    wait_for(lambda: all(running(kube, g, 2) for g in a_gangs) or None, "team A's 4 gangs Running", daemon)
    gang(kube, "b", 4, queue=qb, priority=train, grace=0)
    wait_for(lambda: len(members(kube.pods(), "b")) == 4 or None, "team B's 4 pods made", daemon)
    c0, t0 = d.cycles(), time.monotonic()
    # The decision is the scheduler's and is counted in cycles: the first eviction for B goes out within a
    # few cycles of its pods existing. What follows (victims terminating, binds, kwok starting the pods) is
    # the API server's pace, which a loaded machine stretches, so it is waited for, not counted.
    wait_for(lambda: deleted_by_daemons(proxy, kube.ns) or None, "the first eviction for team B", daemon)
    decided = d.cycles() - c0
    wait_for(lambda: running(kube, "b", 4), "team B's gang Running", daemon)
    cycles, took = d.cycles() - c0, time.monotonic() - t0
    print(f"reclaim: first eviction {decided:.0f} cycles, B Running {took:.2f}s / {cycles:.0f} cycles after its pods")
    assert decided <= 5, f"B's reclaim took {decided:.0f} cycles to start"
    daemon.wait_cycles(d, 10)  # converged: nothing more moves
    pods = kube.pods()
    whole, waiting = whole_gangs(pods, a_gangs, 2)
    assert len(whole) == 2 and len(waiting) == 2, (whole, waiting)
    assert len(bound(pods, "b")) == 4
    victims = wait_for(lambda: len(kube.events("Reclaimed")) >= 4 and kube.events("Reclaimed"), "Reclaimed events")
    assert len(victims) == 4, [e["regarding"]["name"] for e in victims]
    assert all(f"{kube.ns}/b" in e["note"] for e in victims)
    assert sorted(deleted_by_daemons(proxy, kube.ns).values()) == [1, 1, 1, 1], deleted_by_daemons(proxy, kube.ns)
    assert {e["regarding"]["name"] for e in victims} == set(deleted_by_daemons(proxy, kube.ns))

    def queue_status(q: str) -> dict[str, Any]:
        return kube.req("GET", f"/apis/scheduling.run.ai/v2/queues/{q}").get("status") or {}

    for q in (qa, qb):
        st = wait_for(
            lambda q=q: (s := queue_status(q)) and (s.get("allocated") or {}).get(GPU) == "4" and s,
            f"queue {q} allocated 4 GPUs",
            daemon,
        )
        assert st["fairShare"][GPU] == "4", st
    for g in waiting:
        _, message = wait_for(lambda g=g: condition(kube, g), f"{g}'s condition", daemon)
        print(f"{g} waits: {message}")
        assert "cannot take back" in message and "reclaim" in message, message
        assert f"queue {qa} is not below its fair share" in message, message


def test_inference_gang_preempts_training_in_its_queue(
    controllers: LocalCluster, kube: Kube, daemon: Daemons, proxy: FaultProxy
) -> None:
    """One queue (quota 8 GPUs) full of 4 training gangs (priority 50); an inference gang of 4 (priority
    125) preempts 2 of them whole; the re-made training gangs say why they cannot take back."""
    four_nodes(kube)
    train, serve = priority_class(kube, "train", 50), priority_class(kube, "inference", 125)
    q = kube.queue("ml", weight=1, quota=8)
    t_gangs = fill(kube, "t", 4, queue=q, priority=train, grace=1)
    d = daemon.start()
    wait_for(lambda: all(running(kube, g, 2) for g in t_gangs) or None, "the 4 training gangs Running", daemon)
    w = Watcher(kube)
    gang(kube, "serve", 4, queue=q, priority=serve)
    t0 = time.monotonic()
    wait_for(lambda: (w.observe(), running(kube, "serve", 4))[1], "the inference gang Running", daemon)
    print(f"preempt: inference gang Running {time.monotonic() - t0:.2f}s after it was created (victims' grace 1s)")
    daemon.wait_cycles(d, 10)
    pods = w.observe()
    whole, waiting = whole_gangs(pods, t_gangs, 2)
    assert len(whole) == 2 and len(waiting) == 2, (whole, waiting)
    preempted = kube.events("Preempted")
    assert len(preempted) == 4 and all(f"{kube.ns}/serve" in e["note"] for e in preempted), preempted
    assert sorted(deleted_by_daemons(proxy, kube.ns).values()) == [1, 1, 1, 1]
    for g in waiting:
        _, message = wait_for(lambda g=g: condition(kube, g), f"{g}'s condition", daemon)
        print(f"{g} waits: {message}")
        assert "cannot take back" in message and "preempt" in message, message
        assert "non-preemptible" in message or "not of lower priority" in message, message


def test_daemon_killed_between_evictions_the_next_finishes_the_plan(
    controllers: LocalCluster, kube: Kube, daemon: Daemons, proxy: FaultProxy
) -> None:
    """As above, but the daemon dies (SIGKILL-like exit) right after the first of the preempt plan's 4
    evictions. The next daemon finds the plan on the inference PodGroup, evicts the 3 left (each victim
    deleted exactly once in all), and binds the inference gang whole."""
    four_nodes(kube)
    train, serve = priority_class(kube, "train", 50), priority_class(kube, "inference", 125)
    q = kube.queue("ml", weight=1, quota=8)
    t_gangs = fill(kube, "t", 4, queue=q, priority=train, grace=1)
    first: DaemonProc = daemon.start(env={ENV: "evict:after-first"})
    wait_for(lambda: all(running(kube, g, 2) for g in t_gangs) or None, "the 4 training gangs Running", daemon)
    w = Watcher(kube)
    w.observe()
    gang(kube, "serve", 4, queue=q, priority=serve)
    wait_for(lambda: not first.alive() or None, "the daemon died after the first eviction", daemon)
    assert first.popen.returncode == 137
    assert sorted(deleted_by_daemons(proxy, kube.ns).values()) == [1], deleted_by_daemons(proxy, kube.ns)
    plan = intent_of(kube, "serve")
    assert plan and '"evictions"' in plan, plan
    assert not bound(w.observe(), "serve"), "nothing of the preemptor bound before the plan completes"
    daemon.start()
    placed = wait_for(lambda: (w.observe(), running(kube, "serve", 4))[1], "the next daemon bound the gang", daemon)
    assert len(placed) == 4
    wait_for(lambda: intent_of(kube, "serve") is None or None, "the plan cleared", daemon)
    deleted = deleted_by_daemons(proxy, kube.ns)
    assert sorted(deleted.values()) == [1, 1, 1, 1], f"each victim deleted once: {deleted}"
    # the first victim's event may have died with the first daemon (events are posted off the cycle)
    assert 3 <= len(kube.events("Preempted")) <= 4
    wait_for(lambda: "3 of its 4 victims evicted now" in daemon.tail() or None, "the recovery line", daemon)
    whole, _ = whole_gangs(w.observe(), t_gangs, 2)
    assert len(whole) == 2, whole

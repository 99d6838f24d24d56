"""The Kubernetes committer's evictions on the real API server (through the fault proxy, which logs every
request): GangCommits built by hand (the scheduling actions that make them are tested in tests/scenarios),
applied by a KubeBackend in this process, or by a harness process that dies at a crash point, after which
a daemon must finish the plan: every victim evicted exactly once, the preemptor bound whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.backends.kubernetes import KubeBackend
from scheduler.binder.commit import INTENT_ANNOTATION, Intent
from scheduler.binder.crash import ENV, EVICT_POINTS
from scheduler.daemon.status import StatusWriter
from scheduler.framework.record import GangCommit
from scheduler.kube.client import KubeClient
from tests.faultproxy import FaultProxy, Rule
from tests.integration import test_commit_faults as faults
from tests.integration.evict_harness import AGENT
from tests.integration.test_commit_faults import intent_of
from tests.integration.test_daemon import GPU, REPO, SCHED, Daemons, Kube, wait_for
from tests.kubecluster import LocalCluster

# the fault tests' fixtures: the proxy, the test's namespace, daemons behind the proxy
proxy, kube, daemon = faults.proxy, faults.kube, faults.daemon


def victim(kube: Kube, name: str, node: str, pg: str = "", grace: int = 0) -> str:
    """A running (bound) pod of ours that a plan may evict, with its own grace period."""
    meta: dict[str, Any] = {"name": name, "labels": {}}
    if pg:
        meta["annotations"] = {"pod-group-name": pg}
    spec = {
        "schedulerName": SCHED,
        "terminationGracePeriodSeconds": grace,
        "nodeName": node,
        "containers": [{"name": "c", "image": "registry.invalid/none:0", "resources": {"limits": {GPU: "1"}}}],
    }
    kube.req(
        "POST",
        f"/api/v1/namespaces/{kube.ns}/pods",
        body={"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
    )
    return name


def full_cluster(kube: Kube, grace: int = 0, kwok: bool = False) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Two 2-GPU nodes (kwok's, with `kwok`) held by gang `old` (4 x 1 GPU, bound, with `grace`); gang `new`
    (4 x 1 GPU) pending. Returns the victims, the preemptor pods and the pipelined binds onto their room."""
    nodes = [kube.node(f"en{i}", 2, kwok=kwok) for i in range(2)]
    kube.podgroup("old", 4)
    victims = [victim(kube, f"old-{i}", nodes[i // 2], pg="old", grace=grace) for i in range(4)]
    kube.podgroup("new", 4)
    pods = kube.gang("new", 4)
    return victims, pods, [(f"{kube.ns}/{p}", nodes[i // 2]) for i, p in enumerate(pods)]


def take_back(kube: Kube, reason: str, victims: list[str], pipelined: list[tuple[str, str]]) -> GangCommit:
    """What the scheduling core hands over for gang `new`: evict every victim, bind onto their room."""
    evictions = tuple((f"{kube.ns}/{v}", reason) for v in victims)
    return GangCommit(f"{kube.ns}/new", True, binds=(), evictions=evictions, pipelined=tuple(pipelined))


def deletes(proxy: FaultProxy, ns: str, names: list[str], agent: str = "") -> dict[str, int]:
    """DELETE requests per pod name (by user agent substring, '' for everyone)."""
    out = dict.fromkeys(names, 0)
    for _, method, path, ua in proxy.received:
        name = path.split("?")[0].rsplit("/", 1)[-1]
        if method == "DELETE" and path.startswith(f"/api/v1/namespaces/{ns}/pods/") and name in out and agent in ua:
            out[name] += 1
    return out


@pytest.fixture
def backend(proxy: FaultProxy, kube_cluster: LocalCluster, tmp_path: Path) -> Iterator[KubeBackend]:
    client = KubeClient.from_kubeconfig(str(proxy.kubeconfig(kube_cluster.token, tmp_path / "proxy.kubeconfig")))
    b = KubeBackend(client, SCHED, identity="test")
    status = StatusWriter(client, SCHED, "test")
    b.committer.event = status.event
    b.start()
    assert b.wait_synced(30)
    yield b
    status.flush()
    status.close()
    b.stop()


def settle(backend: KubeBackend, kube: Kube, names: list[str]) -> None:
    """Let the backend's cache see the pods the test just made."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        backend.drain()
        if all(backend.state.pod(f"{kube.ns}/{n}") is not None for n in names):
            return
        time.sleep(0.05)
    raise AssertionError(f"cache never saw {names}")


def test_commit_evicts_the_victims_then_binds_the_preemptor_whole(
    kube: Kube, backend: KubeBackend, proxy: FaultProxy
) -> None:
    victims, pods, pipelined = full_cluster(kube)
    settle(backend, kube, victims + pods)
    uids = {n: p["metadata"]["uid"] for n, p in kube.pods().items()}
    start = time.monotonic()
    out = backend.commit([take_back(kube, "reclaim", victims, pipelined)])
    took = time.monotonic() - start
    sent = [(t, m, p) for t, m, p, _ in proxy.received if t >= start and kube.ns in p]
    plan_at = min(t for t, m, p in sent if m == "PATCH" and "podgroups" in p)
    deleted_at = max(t for t, m, p in sent if m == "DELETE")
    bound_at = max(t for t, m, p in sent if p.endswith("/binding"))
    if os.environ.get("EVICT_TRACE"):
        for t, m, p in sent:
            print(f"  +{t - start:.3f} {m} {p}")
    print(
        f"commit to preemptor bound: {took:.2f}s (4 victims, 4 pipelined binds): "
        f"plan recorded +{plan_at - start:.2f}s, "
        f"last victim deleted +{deleted_at - start:.2f}s, last bind sent +{bound_at - start:.2f}s"
    )
    assert out.errors == {}, out.errors
    assert out.evicted == {f"{kube.ns}/new": sorted(f"{kube.ns}/{v}" for v in victims)}
    assert kube.all_bound(pods) == {p.split("/")[1]: n for p, n in pipelined}
    assert not [v for v in victims if v in kube.pods()]
    assert deletes(proxy, kube.ns, victims) == dict.fromkeys(victims, 1)
    assert intent_of(kube, "new") is None
    # the order of writes: plan, DisruptionTarget before each victim's DELETE, binds after every DELETE
    writes = [(m, p.split("?")[0]) for _, m, p, _ in proxy.received if m != "GET" and kube.ns in p]
    plan = writes.index(("PATCH", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{kube.ns}/podgroups/new"))
    first_delete = min(i for i, (m, _) in enumerate(writes) if m == "DELETE")
    last_delete = max(i for i, (m, _) in enumerate(writes) if m == "DELETE")
    binds = [i for i, (m, p) in enumerate(writes) if p.endswith("/binding")]
    assert plan < first_delete and max(binds[:4]) < first_delete  # the dry runs, before anything is evicted
    assert min(binds[4:]) > last_delete
    for v in victims:
        assert writes.index(("PATCH", f"/api/v1/namespaces/{kube.ns}/pods/{v}/status")) < writes.index(
            ("DELETE", f"/api/v1/namespaces/{kube.ns}/pods/{v}")
        )
    backend.committer.close()
    events = wait_for(lambda: len(kube.events("Reclaimed")) == 4 and kube.events("Reclaimed"), "4 Reclaimed events")
    assert {e["regarding"]["name"] for e in events} == set(victims)
    assert all(f"{kube.ns}/new" in e["note"] for e in events)
    assert {e["regarding"]["uid"] for e in events} == {uids[v] for v in victims}


def test_disruption_target_condition_and_grace_period_kept(kube: Kube, backend: KubeBackend) -> None:
    """A victim with a grace period (no kubelet here: it stays Terminating) carries DisruptionTarget as
    kube-scheduler sets it, and was deleted with its own grace period; a lone preemptor's placement onto its
    room is released whole when it does not go within grace + margin, and its plan (kept on the pod,
    written through pods/status) is cleared."""
    node = kube.node("gn", 1)
    victim(kube, "slow", node, grace=2)
    kube.pod("lone", 1)
    settle(backend, kube, ["slow", "lone"])
    backend.committer.evict_margin = 1.0
    start = time.monotonic()
    out = backend.commit(
        [GangCommit(f"{kube.ns}/lone", False, (), ((f"{kube.ns}/slow", "preempt"),), ((f"{kube.ns}/lone", node),))]
    )
    waited = time.monotonic() - start
    error = out.errors[f"{kube.ns}/lone"]
    assert "victims still terminating after 3s" in error and "nothing was bound" in error, error
    assert 2.5 < waited < 8, waited
    pods = kube.pods()
    assert not pods["lone"]["spec"].get("nodeName")
    assert INTENT_ANNOTATION not in (pods["lone"]["metadata"].get("annotations") or {})
    slow = pods["slow"]
    assert slow["metadata"].get("deletionTimestamp") and slow["metadata"].get("deletionGracePeriodSeconds") == 2
    (cond,) = [c for c in slow["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert (cond["status"], cond["reason"]) == ("True", "PreemptionByScheduler")
    assert "preempt" in cond["message"] and f"{kube.ns}/lone" in cond["message"]
    kube.delete_pod("slow")


def test_preemptor_waits_for_victims_kwok_terminates(
    kube_cluster: LocalCluster, kube: Kube, backend: KubeBackend
) -> None:
    """With kwok playing the kubelet, victims with a grace period terminate and leave; the preemptor binds
    when they have gone. The time from the commit's start to every preemptor pod bound is printed."""
    kwok = kube_cluster.start_kwok()
    try:
        victims, pods, pipelined = full_cluster(kube, grace=5, kwok=True)
        wait_for(
            lambda: all(p["status"].get("phase") == "Running" for n, p in kube.pods().items() if n in victims) or None,
            "kwok runs the victims",
        )
        settle(backend, kube, victims + pods)
        start = time.monotonic()
        out = backend.commit([take_back(kube, "preempt", victims, pipelined)])
        took = time.monotonic() - start
        print(f"kwok: plan to preemptor bound {took:.2f}s (4 victims with a 5 s grace period)")
        assert out.errors == {}, out.errors
        assert kube.all_bound(pods)
        assert not [v for v in victims if v in kube.pods()]
    finally:
        kube_cluster.kill("kwok")
        del kwok


def run_harness(kubeconfig: Path, commit: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.evict_harness", str(kubeconfig), json.dumps(commit)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def plan_text(kube: Kube, lone: bool) -> str | None:
    """The intent record: on the lone preemptor pod, or on the preemptor's PodGroup."""
    obj = kube.pods()["solo"] if lone else kube.get_podgroup("new")
    text = (obj["metadata"].get("annotations") or {}).get(INTENT_ANNOTATION)
    return str(text) if text is not None else None


CASES = [(p, False) for p in EVICT_POINTS] + [("evict:after-first", True)]


@pytest.mark.parametrize(("point", "lone"), CASES, ids=[f"{p}{'-lone' if lone else ''}" for p, lone in CASES])
def test_crash_mid_plan_then_a_daemon_finishes_it(
    point: str, lone: bool, kube: Kube, daemon: Daemons, proxy: FaultProxy
) -> None:
    """The committer dies at `point` of a plan evicting 4 victims; a daemon started afterwards recovers the
    plan: every victim deleted exactly once in all, the preemptor bound whole, the intent gone."""
    victims, pods, pipelined = full_cluster(kube)
    ns = kube.ns
    if lone:  # a preemptor without a PodGroup: one pod needing both nodes' room is impossible; one node
        for p in pods:
            kube.delete_pod(p)
        kube.pod("solo", 1)
        pods, pipelined = ["solo"], [(f"{ns}/solo", pipelined[0][1])]
    job = f"{ns}/solo" if lone else f"{ns}/new"
    commit = {
        "job": job,
        "has_pod_group": not lone,
        "evictions": [(f"{ns}/{v}", "preempt") for v in victims],
        "pipelined": pipelined,
    }
    done = run_harness(daemon.kubeconfig, commit, {ENV: point})
    assert done.returncode == 137, done.stdout + done.stderr
    by_harness = {"evict:after-plan": 0, "evict:after-first": 1, "evict:before-binds": 4}[point]
    assert sum(deletes(proxy, ns, victims, AGENT).values()) == by_harness
    plan = Intent.parse(job, plan_text(kube, lone) or "")
    assert plan is not None and sorted(v.pod for v in plan.evictions) == sorted(f"{ns}/{v}" for v in victims)
    assert not any(kube.placements(pods).values()), "nothing of the preemptor bound before recovery"
    d = daemon.start()
    wait_for(lambda: kube.all_bound(pods), "the daemon finished the plan and bound the preemptor", daemon)
    final = kube.pods()
    assert not [v for v in victims if v in final], "every victim evicted"
    assert deletes(proxy, ns, victims) == dict.fromkeys(victims, 1), "each victim deleted exactly once"
    assert {p: final[p]["spec"]["nodeName"] for p in pods} == {p.split("/")[1]: n for p, n in pipelined}
    wait_for(lambda: plan_text(kube, lone) is None or None, "the plan cleared", daemon)
    line = wait_for(lambda: "victims evicted now" in daemon.tail() and daemon.tail(), "the recovery line", daemon)
    assert f"{4 - by_harness} of its {len(plan.evictions)} victims evicted now" in line, line
    del d


def test_lease_lost_mid_plan_evicts_nothing_more_and_the_next_leader_finishes(
    kube: Kube, daemon: Daemons, proxy: FaultProxy
) -> None:
    """The committer's lease lapses while its first victim's DisruptionTarget patch is held at the proxy:
    its DELETE is refused before it leaves the process (fenced), the plan stays on the PodGroup, and the
    daemon that comes next evicts every victim once and binds the preemptor whole."""
    victims, pods, pipelined = full_cluster(kube)
    ns = kube.ns
    proxy.add(Rule("PATCH", r"/pods/[^/]+/status$", "delay", delay=4, nth=(1,)))
    commit = {
        "job": f"{ns}/new",
        "has_pod_group": True,
        "evictions": [(f"{ns}/{v}", "reclaim") for v in victims],
        "pipelined": pipelined,
    }
    done = run_harness(daemon.kubeconfig, commit, {"KAISCHED_HARNESS_FENCE": "3"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "not sent: lease last renewed" in out["errors"][f"{ns}/new"], out
    assert "the plan stays on the PodGroup" in out["errors"][f"{ns}/new"], out
    assert sum(deletes(proxy, ns, victims, AGENT).values()) == 0, "a fenced committer deleted a victim"
    assert plan_text(kube, False), "the plan is left for the next leader"
    assert not any(kube.placements(pods).values())
    daemon.start()
    wait_for(lambda: kube.all_bound(pods), "the next daemon finished the plan", daemon)
    assert deletes(proxy, ns, victims) == dict.fromkeys(victims, 1)
    assert not [v for v in victims if v in kube.pods()]
    wait_for(lambda: plan_text(kube, False) is None or None, "the plan cleared", daemon)


def test_cache_watches_disruption_budgets(kube: Kube, backend: KubeBackend) -> None:
    """The reflector lists and watches policy/v1 PodDisruptionBudgets (take-back's victim order reads
    them): a budget's status update and its deletion reach the snapshot."""
    path = f"/apis/policy/v1/namespaces/{kube.ns}/poddisruptionbudgets"
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "keep"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "train"}}},
    }
    kube.req("POST", path, body=body)
    # what the disruption controller would write (none runs here)
    status = {"status": {"disruptionsAllowed": 2, "currentHealthy": 3, "desiredHealthy": 1, "expectedPods": 3}}
    kube.req("PATCH", f"{path}/keep/status", body=status, content_type="application/merge-patch+json")

    def budget() -> Any:
        backend.drain()
        return backend.state.snapshot().budgets.get(f"{kube.ns}/keep")

    wait_for(
        lambda: budget() is not None and budget().allowed == 2, "the budget and its status in the cache", timeout=10
    )
    b = budget()
    assert b.selects(kube.ns, "p", {"app": "train"}) and not b.selects(kube.ns, "p", {"app": "serve"})
    kube.req("DELETE", f"{path}/keep")
    wait_for(lambda: budget() is None, "the deleted budget gone from the cache", timeout=10)

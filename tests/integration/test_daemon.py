"""`kaisched run` as a subprocess against the real kube-apiserver + etcd (tests/kubecluster.py).

Each test starts its own daemon (fixture ``daemon``), creates its own Nodes (unique names, a unique
``test-id`` label that its pods select, deleted afterwards) and waits with bounded polls. The daemon's
stderr goes to a file whose tail is printed at teardown (pytest shows it for failed tests) and is part
of every wait timeout message. No kubelet runs: bound pods stay Pending with spec.nodeName set.

The API server restart test is last in the file: it restarts the session's shared API server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import urllib3

from scheduler.kube.client import ApiError, KubeClient
from tests.daemonproc import DaemonProcess
from tests.kubecluster import LocalCluster, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GPU = "nvidia.com/gpu"
ZONE = "topology.kubernetes.io/zone"
RACK = "topology.kubernetes.io/rack"
SCHED = "kai-scheduler"
WAIT_S = 30.0
T = TypeVar("T")


# ----------------------------------------------------------------------------- the daemon process


class DaemonProc(DaemonProcess):
    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        args: tuple[str, ...],
        wrapper: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        port = free_port()
        argv = [
            *(wrapper or []),
            sys.executable,
            "-m",
            "scheduler.cli.main",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--http-address",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--schedule-period",
            "0.2",
            *args,
        ]
        super().__init__(argv, log, port, env=env)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"daemon exited with {self.popen.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if self.get("/readyz")[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready after {timeout:.0f}s:\n{self.tail()}")

    def cycles(self) -> float:
        return self.metrics().get("kaisched_cycles_total", 0.0)


class Daemons:
    """Starts daemons for one test; every one is killed at teardown."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.procs: list[DaemonProc] = []

    def start_wrapped(self, wrapper: list[str], env: dict[str, str]) -> DaemonProc:
        """A daemon started through a wrapper command (e.g. in its own mount namespace)."""
        d = DaemonProc(self.kubeconfig, self.log, (), wrapper=wrapper, env=env)
        self.procs.append(d)
        d.wait_ready()
        return d

    def start(self, *args: str, env: dict[str, str] | None = None) -> DaemonProc:
        d = DaemonProc(self.kubeconfig, self.log, args, env=env)
        self.procs.append(d)
        d.wait_ready()
        return d

    def tail(self) -> str:
        return self.procs[-1].tail() if self.procs else "<no daemon started>"

    def wait_cycles(self, d: DaemonProc, n: int = 3) -> None:
        """Wait until the daemon has run n more cycles (so 'still waiting' is a real observation)."""
        start = d.cycles()
        wait_for(lambda: d.cycles() >= start + n or None, f"{n} daemon cycles", self)


@pytest.fixture
def daemon(kube_cluster: LocalCluster, kai_crds: list[str], tmp_path: Path) -> Iterator[Daemons]:
    ds = Daemons(kube_cluster.kubeconfig, tmp_path / "kaisched.log")
    yield ds
    for d in ds.procs:
        d.kill()
    if ds.procs:
        # pytest shows teardown output only for failed tests
        print(f"---- daemon log tail ({ds.log}) ----\n{ds.tail()}")


def wait_for(fn: Callable[[], T | None], what: str, daemons: Daemons | None = None, timeout: float = WAIT_S) -> T:
    """Poll fn until it returns something truthy; fail after `timeout` with the last value and the log tail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            tail = daemons.tail() if daemons else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n---- daemon log ----\n{tail}")
        time.sleep(0.2)


# ----------------------------------------------------------------------------- API objects


class Kube:
    """Raw JSON helpers for one test: its namespace, nodes, pods, PodGroups, Topologies and Queues."""

    def __init__(self, kubeconfig: Path, ns: str) -> None:
        self.kubeconfig = kubeconfig
        self.client = KubeClient.from_kubeconfig(str(kubeconfig), qps=0, burst=1)
        self.ns = ns
        self.tag = ns[-8:]  # unique per test
        self.cluster_objects: list[str] = []  # paths to delete at teardown

    def reconnect(self) -> None:
        self.client = KubeClient.from_kubeconfig(str(self.kubeconfig), qps=0, burst=1)

    def req(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        for attempt in range(5):
            try:
                return self.client.request(method, path, **kw)
            except urllib3.exceptions.HTTPError:  # a pooled connection the API server closed
                if attempt == 4:
                    raise
                time.sleep(0.3)
        raise AssertionError("unreachable")

    # --- cluster-scoped -----------------------------------------------------------------------
    def node(self, name: str, gpu: int, zone: str = "", rack: str = "", kwok: bool = False) -> str:
        """A Ready node; `kwok`: managed by the kwok controller (heartbeats; bound pods become Running)."""
        name = f"{name}-{self.tag}"
        labels = {"test-id": self.ns, "kubernetes.io/hostname": name}
        if zone:
            labels[ZONE] = f"{zone}-{self.tag}"
        if rack:
            labels[RACK] = f"{rack}-{self.tag}"
        meta: dict[str, Any] = {"name": name, "labels": labels}
        if kwok:
            meta["annotations"] = {LocalCluster.KWOK_NODE_ANNOTATION: "fake"}
        self.req("POST", "/api/v1/nodes", body={"apiVersion": "v1", "kind": "Node", "metadata": meta})
        self.cluster_objects.append(f"/api/v1/nodes/{name}")
        res = {"cpu": "64", "memory": "256Gi", GPU: str(gpu), "pods": "110"}
        self.req(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            body={
                "status": {
                    "allocatable": res,
                    "capacity": res,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Test", "message": "test node"}],
                }
            },
            content_type="application/merge-patch+json",
        )
        return name

    def zone(self, z: str) -> str:
        return f"{z}-{self.tag}"

    def topology(self, levels: list[str]) -> str:
        name = f"topo-{self.tag}"
        body = {
            "apiVersion": "kai.scheduler/v1alpha1",
            "kind": "Topology",
            "metadata": {"name": name},
            "spec": {"levels": [{"nodeLabel": lv} for lv in levels]},
        }
        self.req("POST", "/apis/kai.scheduler/v1alpha1/topologies", body=body)
        self.cluster_objects.append(f"/apis/kai.scheduler/v1alpha1/topologies/{name}")
        return name

    def queue(self, name: str, weight: float, quota: int = 0, limit: int = -1) -> str:
        name = f"{name}-{self.tag}"
        body = {
            "apiVersion": "scheduling.run.ai/v2",
            "kind": "Queue",
            "metadata": {"name": name},
            "spec": {"resources": {"gpu": {"quota": quota, "limit": limit, "overQuotaWeight": weight}}},
        }
        self.req("POST", "/apis/scheduling.run.ai/v2/queues", body=body)
        self.cluster_objects.append(f"/apis/scheduling.run.ai/v2/queues/{name}")
        return name

    def cleanup(self) -> None:
        for path in reversed(self.cluster_objects):
            with contextlib.suppress(ApiError):
                self.req("DELETE", path)

    # --- namespaced ---------------------------------------------------------------------------
    def pod(
        self,
        name: str,
        gpu: int = 1,
        pg: str = "",
        queue: str = "",
        scheduler: str = SCHED,
        node_name: str = "",
        labels: dict[str, str] | None = None,
        select: bool = True,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
        if pg:
            meta["annotations"] = {"pod-group-name": pg}
        if queue:
            meta["labels"]["kai.scheduler/queue"] = queue
        spec: dict[str, Any] = {
            "schedulerName": scheduler,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": "registry.invalid/none:0",
                    "resources": {"limits": {GPU: str(gpu)}} if gpu else {},
                }
            ],
        }
        if select:
            spec["nodeSelector"] = {"test-id": self.ns}
        if node_name:
            spec["nodeName"] = node_name
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        return self.req("POST", f"/api/v1/namespaces/{self.ns}/pods", body=body)

    def gang(self, pg: str, n: int, gpu: int = 1, **kw: Any) -> list[str]:
        names = [f"{pg}-{i}" for i in range(n)]
        for name in names:
            self.pod(name, gpu, pg=pg, **kw)
        return names

    def podgroup(
        self, name: str, min_member: int | None, annotations: dict[str, str] | None = None, **spec: Any
    ) -> None:
        if min_member is not None:
            spec["minMember"] = min_member
        body = {
            "apiVersion": "scheduling.run.ai/v2alpha2",
            "kind": "PodGroup",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
        self.req("POST", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{self.ns}/podgroups", body=body)

    def get_podgroup(self, name: str) -> dict[str, Any]:
        return self.req("GET", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{self.ns}/podgroups/{name}")

    def conditions(self, pg: str) -> list[dict[str, Any]]:
        return list((self.get_podgroup(pg).get("status") or {}).get("schedulingConditions") or [])

    def condition_reason(self, pg: str) -> str | None:
        conds = self.conditions(pg)
        return str(conds[0].get("reason")) if conds else None

    def pods(self) -> dict[str, dict[str, Any]]:
        items = self.req("GET", f"/api/v1/namespaces/{self.ns}/pods").get("items") or []
        return {p["metadata"]["name"]: p for p in items}

    def placements(self, names: list[str] | None = None) -> dict[str, str]:
        """pod name -> spec.nodeName ('' while unbound)."""
        pods = self.pods()
        keys = names if names is not None else sorted(pods)
        return {n: str((pods.get(n, {}).get("spec") or {}).get("nodeName") or "") for n in keys}

    def all_bound(self, names: list[str]) -> dict[str, str] | None:
        got = self.placements(names)
        return got if all(got.values()) else None

    def events(self, reason: str | None = None, regarding: str | None = None) -> list[dict[str, Any]]:
        items = self.req("GET", f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events").get("items") or []
        return [
            e
            for e in items
            if (reason is None or e.get("reason") == reason)
            and (regarding is None or (e.get("regarding") or {}).get("name") == regarding)
        ]

    def bind(self, pod: str, node: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod, "namespace": self.ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.req("POST", f"/api/v1/namespaces/{self.ns}/pods/{pod}/binding", body=body)

    def delete_pod(self, pod: str) -> None:
        self.req("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{pod}", body={"gracePeriodSeconds": 0})


@pytest.fixture
def kube(kube_cluster: LocalCluster, kai_crds: list[str], namespace: str) -> Iterator[Kube]:
    k = Kube(kube_cluster.kubeconfig, namespace)
    yield k
    k.cleanup()


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# ----------------------------------------------------------------------------- tests


def test_gang_of_8_binds_completely(kube: Kube, daemon: Daemons) -> None:
    n1, n2 = kube.node("g8-a", 4), kube.node("g8-b", 4)
    d = daemon.start()
    kube.podgroup("train", 8)
    names = kube.gang("train", 8)
    placed = wait_for(lambda: kube.all_bound(names), "all 8 gang members bound", daemon)
    assert set(placed.values()) == {n1, n2}, placed
    assert sum(1 for v in placed.values() if v == n1) == 4
    scheduled = wait_for(
        lambda: {e["regarding"]["name"] for e in kube.events("Scheduled")} >= set(names) or None,
        "a Scheduled event for every member",
        daemon,
    )
    assert scheduled
    for e in kube.events("Scheduled"):
        assert e["regarding"]["kind"] == "Pod" and e["reportingController"] == SCHED
        assert placed[e["regarding"]["name"]] in e["note"], e["note"]
    wait_for(lambda: kube.condition_reason("train") is None or None, "no condition on the scheduled gang", daemon)
    rs = wait_for(
        lambda: (
            kube.req("GET", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{kube.ns}/podgroups/train")
            .get("status", {})
            .get("resourcesStatus")
        ),
        "resourcesStatus written",
        daemon,
    )
    assert rs["allocated"]["nvidia.com/gpu"] == "8" and rs["requested"]["nvidia.com/gpu"] == "8", rs
    assert d.alive()


def test_required_zone_waits_then_binds_at_once(kube: Kube, daemon: Daemons) -> None:
    topo = kube.topology([ZONE, RACK])
    a1 = kube.node("rz-a1", 4, zone="za", rack="za-r1")
    a2 = kube.node("rz-a2", 4, zone="za", rack="za-r2")
    b1 = kube.node("rz-b1", 4, zone="zb", rack="zb-r1")
    # another scheduler's pod holds 2 GPUs of zone za: za has the allocatable (8) but not the free (6)
    kube.pod("foreign", gpu=2, scheduler="other-scheduler", node_name=a2, select=False)
    d = daemon.start()
    kube.podgroup("zonal", 8, {"kai.scheduler/topology": topo, "kai.scheduler/topology-required-placement": ZONE})
    names = kube.gang("zonal", 8)

    wait_for(
        lambda: kube.condition_reason("zonal") == "TopologyRequiredUnsatisfiable" or None,
        "condition TopologyRequiredUnsatisfiable",
        daemon,
    )
    # the pods are created one by one: an earlier cycle may have said NotEnoughPods first
    events = wait_for(
        lambda: [e for e in kube.events("Unschedulable", "zonal") if "TopologyRequiredUnsatisfiable" in e["note"]],
        "an Unschedulable event on the PodGroup naming the topology problem",
        daemon,
    )
    assert events[0]["type"] == "Warning" and events[0]["regarding"]["kind"] == "PodGroup"
    daemon.wait_cycles(d, 3)
    assert not any(kube.placements(names).values()), "nothing binds while no zone can hold the gang"
    assert kube.condition_reason("zonal") == "TopologyRequiredUnsatisfiable"

    b2 = kube.node("rz-b2", 4, zone="zb", rack="zb-r2")  # zone zb now has 8 free GPUs
    placed = wait_for(lambda: kube.all_bound(names), "the gang bound after zone zb grew", daemon)
    assert set(placed.values()) == {b1, b2}, f"all in zone zb: {placed}"
    assert a1 not in placed.values()
    wait_for(lambda: kube.conditions("zonal") == [] or None, "the condition cleared", daemon)


def test_preferred_rack_widens_to_zone(kube: Kube, daemon: Daemons) -> None:
    topo = kube.topology([ZONE, RACK])
    a1 = kube.node("pr-a1", 4, zone="za", rack="za-r1")
    a2 = kube.node("pr-a2", 4, zone="za", rack="za-r2")
    # zone zb's only rack is the biggest rack (5): bin-packing alone would start there and cross zones
    kube.node("pr-b1", 5, zone="zb", rack="zb-r1")
    daemon.start()
    kube.podgroup("pref", 6, {"kai.scheduler/topology": topo, "kai.scheduler/topology-preferred-placement": RACK})
    names = kube.gang("pref", 6)
    placed = wait_for(lambda: kube.all_bound(names), "the 6-pod gang bound", daemon)
    assert set(placed.values()) == {a1, a2}, f"no rack holds 6 GPUs; zone za does, alone: {placed}"


def test_two_queues_share_by_weight(kube: Kube, daemon: Daemons) -> None:
    kube.node("fs-a", 4)
    kube.node("fs-b", 4)
    nodes = kube.req("GET", "/api/v1/nodes").get("items") or []
    total = sum(int((n.get("status") or {}).get("allocatable", {}).get(GPU, "0")) for n in nodes)
    assert total == 8, f"precondition: the cluster's only GPUs are this test's 8 (found {total})"
    qa, qb = kube.queue("light", weight=1), kube.queue("heavy", weight=3)
    # both backlogs exist before the daemon starts: fair share is decided with both queues asking
    for i in range(12):
        kube.pod(f"a-{i}", queue=qa)
        kube.pod(f"b-{i}", queue=qb)
    d = daemon.start()

    def split() -> tuple[int, int] | None:
        got = kube.placements()
        a = sum(1 for n, v in got.items() if v and n.startswith("a-"))
        b = sum(1 for n, v in got.items() if v and n.startswith("b-"))
        return (a, b) if a + b == 8 else None

    # Quotas are 0, so the 8 GPUs are all over-quota: water-filled by overQuotaWeight 1:3 (neither
    # queue's request of 12 caps it) = fair shares 2 and 6; queues under their share go first.
    assert wait_for(split, "the cluster's 8 GPUs all bound", daemon) == (2, 6)
    daemon.wait_cycles(d, 3)
    assert split() == (2, 6), "no further binds: the cluster is full"

    def queue_status(q: str) -> dict[str, Any]:
        return kube.req("GET", f"/apis/scheduling.run.ai/v2/queues/{q}").get("status") or {}

    for q, share in ((qa, "2"), (qb, "6")):

        def allocated(q: str = q, share: str = share) -> dict[str, Any] | None:
            st = queue_status(q)
            return st if (st.get("allocated") or {}).get(GPU) == share else None

        st = wait_for(allocated, f"Queue {q} status allocated {share} GPUs", daemon)
        assert st["fairShare"][GPU] == share, st
        assert st["requested"][GPU] == "12", st
    waiting = kube.events("Unschedulable")
    assert waiting and all("InsufficientResources" in e["note"] for e in waiting), [e["note"] for e in waiting]


def test_foreign_pod_left_alone_but_counted(kube: Kube, daemon: Daemons) -> None:
    node = kube.node("fp", 4)
    kube.pod("foreign", gpu=2, scheduler="other-scheduler")
    d = daemon.start()
    daemon.wait_cycles(d, 3)
    assert kube.placements(["foreign"]) == {"foreign": ""}, "another scheduler's pending pod is not ours to bind"
    assert not kube.events(regarding="foreign")
    kube.bind("foreign", node)  # the other scheduler binds it

    kube.podgroup("four", 4)
    names = kube.gang("four", 4)  # 4 GPUs: fits the node, but not next to the foreign pod's 2
    wait_for(lambda: kube.condition_reason("four") == "InsufficientResources" or None, "InsufficientResources", daemon)
    daemon.wait_cycles(d, 3)
    assert not any(kube.placements(names).values())
    assert kube.placements(["foreign"]) == {"foreign": node}, "the foreign pod stays where its scheduler put it"
    assert not kube.events(regarding="foreign"), "no events about another scheduler's pod"

    kube.delete_pod("foreign")
    placed = wait_for(lambda: kube.all_bound(names), "the gang bound once the foreign pod left", daemon)
    assert set(placed.values()) == {node}


def test_restart_mid_run_binds_nothing_twice(kube: Kube, daemon: Daemons) -> None:
    kube.node("rs-a", 16)
    kube.node("rs-b", 16)
    names: list[str] = []
    for g in range(6):
        kube.podgroup(f"job{g}", 4)
        names += kube.gang(f"job{g}", 4)
    first_seen: dict[str, str] = {}

    def observe() -> dict[str, str]:
        got = kube.placements(names)
        for n, node in got.items():
            if node:
                prev = first_seen.setdefault(n, node)
                assert prev == node, f"{n} moved from {prev} to {node}: bound twice"
        return got

    # a slow client (5 requests/s) so that the backlog binds over several seconds
    d1 = daemon.start("--qps", "5", "--burst", "1")
    wait_for(lambda: sum(1 for v in observe().values() if v) >= 3 or None, "part of the backlog bound", daemon)
    d1.kill(signal.SIGKILL)
    partial = sum(1 for v in observe().values() if v)
    assert partial < len(names), "the first daemon bound everything before it was killed; slow it down"

    d2 = daemon.start()
    wait_for(lambda: all(observe().values()) or None, "every pod bound after the restart", daemon)
    daemon.wait_cycles(d2, 3)
    final = observe()
    assert final == first_seen
    assert not kube.events("FailedBinding"), [e["note"] for e in kube.events("FailedBinding")]
    assert d2.metrics().get("kaisched_bind_failures_total", 0) == 0
    per_pod: dict[str, int] = {}
    for e in kube.events("Scheduled"):
        per_pod[e["regarding"]["name"]] = per_pod.get(e["regarding"]["name"], 0) + 1
    assert all(v == 1 for v in per_pod.values()), f"a pod scheduled twice: {per_pod}"
    log = d2.tail(400)
    assert "Traceback" not in log and " ERROR " not in log, log
    print(f"{partial}/{len(names)} bound before the kill")


def test_invalid_podgroup_does_not_block_valid_gang(kube: Kube, daemon: Daemons) -> None:
    topo = kube.topology([ZONE, RACK])
    kube.node("iv-a", 8, zone="za", rack="za-r1")
    d = daemon.start()
    # the CRD accepts both; the scheduler cannot act on either
    kube.podgroup(
        "badlevel",
        2,
        {"kai.scheduler/topology": topo, "kai.scheduler/topology-required-placement": "example.com/no-such-level"},
    )
    bad1 = kube.gang("badlevel", 2)
    kube.podgroup("badsub", None, minSubGroup=1, subGroups=[{"name": "workers", "minMember": 2}])
    bad2 = [f"badsub-{i}" for i in range(2)]
    for n in bad2:
        kube.pod(n, pg="badsub", labels={"kai.scheduler/subgroup-name": "ps"})
    kube.podgroup("good", 4)
    good = kube.gang("good", 4)

    placed = wait_for(lambda: kube.all_bound(good), "the valid gang bound", daemon)
    assert len(placed) == 4
    wait_for(
        lambda: kube.condition_reason("badlevel") == "UnknownTopologyLevel" or None, "UnknownTopologyLevel", daemon
    )
    wait_for(lambda: kube.condition_reason("badsub") == "InvalidPodGroup" or None, "InvalidPodGroup", daemon)
    ev1 = wait_for(lambda: kube.events("Unschedulable", "badlevel"), "event on badlevel", daemon)
    assert "example.com/no-such-level" in ev1[0]["note"], ev1[0]["note"]
    ev2 = wait_for(lambda: kube.events("Unschedulable", "badsub"), "event on badsub", daemon)
    assert "'ps'" in ev2[0]["note"] and "does not define" in ev2[0]["note"], ev2[0]["note"]
    msg = kube.conditions("badsub")[0]["message"]
    assert "ps" in msg, msg

    # a gang created after the invalid ones are known still schedules
    kube.podgroup("good2", 2)
    good2 = kube.gang("good2", 2)
    wait_for(lambda: kube.all_bound(good2), "a later valid gang bound", daemon)
    assert not any(kube.placements(bad1 + bad2).values())
    assert d.alive()


def test_missing_queue_event_says_how_to_fix(kube: Kube, daemon: Daemons) -> None:
    kube.node("mq", 4)
    daemon.start()
    queue = uniq("no-such-queue")
    kube.pod("orphan", queue=queue)
    ev = wait_for(lambda: kube.events("Unschedulable", "orphan"), "an Unschedulable event on the pod", daemon)
    note = ev[0]["note"]
    assert ev[0]["type"] == "Warning" and ev[0]["regarding"]["kind"] == "Pod"
    assert "QueueDoesNotExist" in note and queue in note, note
    assert f"create a Queue named {queue}" in note and "kai.scheduler/queue" in note, note
    assert kube.placements(["orphan"]) == {"orphan": ""}


def test_runs_with_a_read_only_root_filesystem(kube: Kube, daemon: Daemons, tmp_path: Path) -> None:
    """As the chart runs it (readOnlyRootFilesystem, a writable /tmp): nothing else may need writing."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount the root filesystem read-only")
    script = (
        "mount --bind /tmp /tmp && mount --bind / / && mount -o remount,bind,ro / && "
        '! touch /.kaisched-probe 2>/dev/null && exec "$@"'
    )
    kube.node("ro", 2)
    d = daemon.start_wrapped(["unshare", "-m", "sh", "-c", script, "sh"], env={"PYTHONDONTWRITEBYTECODE": "1"})
    kube.pod("ro-pod")
    wait_for(lambda: kube.all_bound(["ro-pod"]), "the pod bound by a daemon on a read-only root", daemon)
    assert "Read-only file system" not in d.tail(), d.tail()


def test_health_ready_metrics(kube: Kube, daemon: Daemons) -> None:
    kube.node("hm", 2)
    d = daemon.start()
    assert d.get("/healthz") == (200, "ok\n")
    assert d.get("/readyz") == (200, "ok\n")
    assert d.get("/nope")[0] == 404
    kube.pod("one")
    wait_for(lambda: kube.all_bound(["one"]), "the pod bound", daemon)
    m = wait_for(lambda: (m := d.metrics()).get("kaisched_pods_bound_total", 0) >= 1 and m, "pods_bound_total", daemon)
    assert m["kaisched_cycles_total"] >= 1
    status, body = d.get("/metrics")
    assert status == 200
    assert "# TYPE kaisched_cycles_total counter" in body and "# TYPE kaisched_pods_bound_total counter" in body
    assert "kaisched_cycle_duration_seconds_count" in body


def test_missing_podgroup_event_on_the_pods(kube: Kube, daemon: Daemons) -> None:
    kube.node("mp", 4)
    daemon.start()
    kube.pod("lost-0", pg="no-such-group")
    kube.pod("lost-1", pg="no-such-group")
    kube.pod("fine")
    ev = wait_for(lambda: kube.events("Unschedulable", "lost-0"), "an Unschedulable event on the member pod", daemon)
    note = ev[0]["note"]
    assert ev[0]["regarding"]["kind"] == "Pod", ev[0]
    assert "PodGroupNotFound" in note and "no-such-group" in note and "pod-group-name" in note, note
    wait_for(lambda: kube.all_bound(["fine"]), "the valid pod bound", daemon)
    assert kube.placements(["lost-0", "lost-1"]) == {"lost-0": "", "lost-1": ""}


def test_leader_election_one_scheduler_at_a_time(kube: Kube, daemon: Daemons) -> None:
    """Two replicas with --leader-elect: only the leader schedules; killing it hands over within the lease."""
    kube.node("le", 8)
    lease = uniq("lease")
    args = (
        "--leader-elect",
        "--leader-elect-namespace",
        "default",
        "--leader-elect-name",
        lease,
        "--lease-duration",
        "4",
    )
    first, second = daemon.start(*args), daemon.start(*args)
    kube.pod("le-0")
    wait_for(lambda: kube.all_bound(["le-0"]), "a pod bound by the leader", daemon)
    leaders = wait_for(
        lambda: [d for d in (first, second) if d.metrics().get("kaisched_cycles_total", 0) > 0],
        "the leader's first cycle counted",
        daemon,
    )
    assert len(leaders) == 1, "exactly one replica may run cycles"
    leader = leaders[0]
    standby = second if leader is first else first
    first_node = kube.placements(["le-0"])["le-0"]
    leader.kill()
    names = [f"le-{i}" for i in range(1, 4)]
    for n in names:
        kube.pod(n)
    wait_for(lambda: kube.all_bound(names), "the standby took over and bound new pods", daemon, timeout=40)
    # the pods show bound before the standby's cycle has finished counting them
    wait_for(lambda: standby.metrics().get("kaisched_pods_bound_total", 0) == 3 or None, "standby counted 3", daemon)
    assert kube.placements(["le-0"])["le-0"] == first_node  # nothing bound twice or moved


def test_apiserver_restart_under_running_daemon(kube_cluster: LocalCluster, kube: Kube, daemon: Daemons) -> None:
    """Last in the file: it restarts the session's API server."""
    kube.node("ar", 8)
    d = daemon.start()
    kube.pod("before")
    wait_for(lambda: kube.all_bound(["before"]), "a pod bound before the restart", daemon)

    kube_cluster.restart_apiserver()
    kube.reconnect()
    assert d.alive(), d.tail()
    names = [f"after-{i}" for i in range(3)]
    for n in names:
        kube.pod(n)
    kube.podgroup("gang-after", 3)
    gang = kube.gang("gang-after", 3)
    placed = wait_for(lambda: kube.all_bound(names + gang), "pods created after the restart bound", daemon)
    assert len(placed) == 6
    assert d.alive() and d.get("/healthz")[0] == 200
    assert kube.placements(["before"])["before"], "the earlier binding survives"

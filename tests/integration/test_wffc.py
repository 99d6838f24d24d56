"""WaitForFirstConsumer claims written by the Kubernetes committer before a gang binds, on the real API
server (through the fault proxy, which logs every request).

The volume side is upstream's: kube-controller-manager's PersistentVolume controller (started per test
where a claim must complete; with `--enable-hostpath-provisioner`, its in-tree test provisioner for class
provisioner `kubernetes.io/host-path`) binds the claims the committer pre-binds (a volume's claimRef) and
provisions the ones it marks (`volume.kubernetes.io/selected-node`). Tests that check what is undone run
without it, so nothing completes behind their back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scheduler.binder.commit import Intent
from scheduler.binder.crash import ENV
from tests.faultproxy import FaultProxy, Rule
from tests.integration import test_commit_faults as faults
from tests.integration.evict_harness import AGENT
from tests.integration.test_commit_faults import BIND, INTENT, intent_of
from tests.integration.test_daemon import GPU, SCHED, Daemons, Kube, wait_for
from tests.integration.test_evictions import run_harness
from tests.kubecluster import LocalCluster

proxy, kube, daemon = faults.proxy, faults.kube, faults.daemon
SELECTED = "volume.kubernetes.io/selected-node"
COMPLETED = "pv.kubernetes.io/bind-completed"
HOSTPATH = "kubernetes.io/host-path"


@pytest.fixture
def pv_controller(kube_cluster: LocalCluster) -> Iterator[Callable[[], None]]:
    """Starts (when called) kube-controller-manager with only the PersistentVolume controller and its
    in-tree test provisioner."""

    def start() -> None:
        kube_cluster.start_controller_manager(
            ("persistentvolume-binder-controller",), ("--enable-hostpath-provisioner",)
        )

    yield start
    kube_cluster.kill("kube-controller-manager")


def storage_class(kube: Kube, name: str, provisioner: str) -> str:
    name = f"{name}-{kube.tag}"
    body = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    kube.req("POST", "/apis/storage.k8s.io/v1/storageclasses", body=body)
    kube.cluster_objects.append(f"/apis/storage.k8s.io/v1/storageclasses/{name}")
    return name


def local_volume(kube: Kube, name: str, cls: str, node: str) -> str:
    name = f"{name}-{kube.tag}"
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": cls,
            "persistentVolumeReclaimPolicy": "Retain",
            "local": {"path": f"/mnt/{name}"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [term]}},
        },
    }
    kube.req("POST", "/api/v1/persistentvolumes", body=body)
    kube.cluster_objects.append(f"/api/v1/persistentvolumes/{name}")
    # Available, as the PV controller marks a new volume (tests that run without it need the same start)
    kube.req(
        "PATCH",
        f"/api/v1/persistentvolumes/{name}/status",
        body={"status": {"phase": "Available"}},
        content_type="application/merge-patch+json",
    )
    return name


def claim(kube: Kube, name: str, cls: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "storageClassName": cls,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    kube.req("POST", f"/api/v1/namespaces/{kube.ns}/persistentvolumeclaims", body=body)


def member(kube: Kube, name: str, pg: str, claim_name: str) -> str:
    spec = {
        "schedulerName": SCHED,
        "terminationGracePeriodSeconds": 0,
        "nodeSelector": {"test-id": kube.ns},
        "containers": [{"name": "c", "image": "registry.invalid/none:0", "resources": {"limits": {GPU: "1"}}}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
    }
    meta = {"name": name, "annotations": {"pod-group-name": pg} if pg else {}}  # "": a pod without a PodGroup
    kube.req(
        "POST",
        f"/api/v1/namespaces/{kube.ns}/pods",
        body={"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
    )
    return name


def get_claim(kube: Kube, name: str) -> dict[str, Any]:
    return kube.req("GET", f"/api/v1/namespaces/{kube.ns}/persistentvolumeclaims/{name}")


def get_volume(kube: Kube, name: str) -> dict[str, Any]:
    return kube.req("GET", f"/api/v1/persistentvolumes/{name}")


def bound_to(kube: Kube, name: str) -> str:
    """The volume a claim is fully bound to (volumeName and bind-completed), else ''."""
    c = get_claim(kube, name)
    done = COMPLETED in (c["metadata"].get("annotations") or {})
    return str(c["spec"].get("volumeName") or "") if done else ""


def selected(kube: Kube, name: str) -> str:
    return str((get_claim(kube, name)["metadata"].get("annotations") or {}).get(SELECTED) or "")


class Order:
    """Watches the namespace's pods and claims and all volumes; every change with its resourceVersion (one
    etcd, so revisions order changes across kinds), to tell what happened before what."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.seen: list[tuple[int, str, dict[str, Any]]] = []
        self.stop = threading.Event()
        paths = {
            "pods": f"/api/v1/namespaces/{kube.ns}/pods",
            "persistentvolumeclaims": f"/api/v1/namespaces/{kube.ns}/persistentvolumeclaims",
            "persistentvolumes": "/api/v1/persistentvolumes",
        }
        self.threads = [threading.Thread(target=self._watch, args=a, daemon=True) for a in paths.items()]
        for t in self.threads:
            t.start()

    def _watch(self, resource: str, path: str) -> None:
        client = type(self.kube.client).from_kubeconfig(str(self.kube.kubeconfig), qps=0, burst=1)
        rv = str(client.request("GET", path)["metadata"]["resourceVersion"])
        while not self.stop.is_set():
            for ev in client.watch(path, {"resourceVersion": rv, "timeoutSeconds": 5}, timeout=10):
                obj = ev.get("object") or {}
                rv = str(obj["metadata"]["resourceVersion"])
                self.seen.append((int(rv), resource, obj))

    def all(self, resource: str, name: str, pred: Callable[[dict[str, Any]], bool]) -> list[int]:
        """The revisions at which `resource`/`name` was seen in a state `pred` accepts, in order."""
        return sorted(rv for rv, r, o in list(self.seen) if r == resource and o["metadata"]["name"] == name and pred(o))

    def first(self, resource: str, name: str, pred: Callable[[dict[str, Any]], bool]) -> int:
        hits = self.all(resource, name, pred)
        assert hits, f"{resource}/{name} never seen so"
        return hits[0]

    def close(self) -> None:
        self.stop.set()


def has_ref(o: dict[str, Any]) -> bool:
    return bool(o["spec"].get("claimRef"))


def has_selected(o: dict[str, Any]) -> bool:
    return SELECTED in (o["metadata"].get("annotations") or {})


def completed(o: dict[str, Any]) -> bool:
    return COMPLETED in (o["metadata"].get("annotations") or {})


def on_node(o: dict[str, Any]) -> bool:
    return bool(o["spec"].get("nodeName"))


def two_nodes(kube: Kube) -> list[str]:
    return [kube.node(f"wn{i}", 1) for i in range(2)]


def gang_with_claims(kube: Kube, cls: str) -> list[str]:
    """Gang `g` of 2 (a, b), each member with its own claim of class `cls` (data-a, data-b)."""
    claim(kube, "data-a", cls)
    claim(kube, "data-b", cls)
    kube.podgroup("g", 2)
    return [member(kube, "a", "g", "data-a"), member(kube, "b", "g", "data-b")]


def local_gang(kube: Kube) -> tuple[list[str], dict[str, str], list[str]]:
    """Two 1-GPU nodes, a local volume on each, gang `g` of 2 members each with its own claim.
    Returns the nodes, volume -> its node, and the members."""
    n0, n1 = two_nodes(kube)
    cls = storage_class(kube, "local", "kubernetes.io/no-provisioner")
    where = {local_volume(kube, "pva", cls, n1): n1, local_volume(kube, "pvb", cls, n0): n0}
    return [n0, n1], where, gang_with_claims(kube, cls)


def claims_before_binds(order: Order, *states: Callable[[dict[str, Any]], bool]) -> None:
    """Each member's claim passed through `states` in that order, and the last before the member bound."""
    time.sleep(0.5)  # the watches catch up
    for pod in ("a", "b"):
        seen = [order.first("persistentvolumeclaims", f"data-{pod}", st) for st in states]
        seen.append(order.first("pods", pod, on_node))
        assert seen == sorted(seen), f"{pod}: claim states and the bind at revisions {seen}, out of order"


def test_local_volumes_bound_before_the_gang_binds_on_their_nodes(
    kube: Kube, daemon: Daemons, pv_controller: Callable[[], None]
) -> None:
    """A gang of 2, each member with a WaitForFirstConsumer claim that only a local volume on one node can
    take: the committer pre-binds each volume (claimRef, as PreBind does), the PV controller binds the
    claims, and only then do the pods bind, each on its volume's node."""
    _, where, pods = local_gang(kube)
    order = Order(kube)
    pv_controller()
    daemon.start()
    try:
        placed = wait_for(lambda: kube.all_bound(pods), "the gang bound", daemon)
        volumes = {c: bound_to(kube, c) for c in ("data-a", "data-b")}
        assert sorted(volumes.values()) == sorted(where), volumes
        assert placed == {"a": where[volumes["data-a"]], "b": where[volumes["data-b"]]}, "each pod on its volume's node"
        for c, pv in volumes.items():
            ref = get_volume(kube, pv)["spec"]["claimRef"]
            assert (ref["name"], ref["uid"]) == (c, get_claim(kube, c)["metadata"]["uid"])
        claims_before_binds(order, completed)
        wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    finally:
        order.close()


def test_provisioned_claims_get_their_node_before_the_gang_binds(
    kube: Kube, daemon: Daemons, pv_controller: Callable[[], None]
) -> None:
    """A class that provisions: the committer sets each claim's selected-node (the node its pod goes to),
    the PV controller's host-path provisioner creates a volume for it and binds it, and only then do the
    pods bind, each on the node its claim was given."""
    two_nodes(kube)
    order = Order(kube)
    pods = gang_with_claims(kube, storage_class(kube, "prov", HOSTPATH))
    pv_controller()
    daemon.start()
    try:
        placed = wait_for(lambda: kube.all_bound(pods), "the gang bound", daemon)
        assert {"a": selected(kube, "data-a"), "b": selected(kube, "data-b")} == placed
        assert bound_to(kube, "data-a") and bound_to(kube, "data-b"), "both provisioned and bound"
        claims_before_binds(order, has_selected, completed)
        wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    finally:
        order.close()


def failed_binding(kube: Kube, daemon: Daemons, text: str) -> str:
    def note() -> str | None:
        notes = [str(e.get("note")) for e in kube.events("FailedBinding")]
        return next((n for n in notes if text in n), None)

    return wait_for(note, f"a FailedBinding event saying {text!r}", daemon)


def test_a_claim_write_that_fails_gives_back_the_ones_written(
    kube: Kube, daemon: Daemons, proxy: FaultProxy, pv_controller: Callable[[], None]
) -> None:
    """The second volume's claimRef write fails: the first volume's claimRef (ours) is released, no pod
    binds, the gang says why; once the volume controller runs, the retry binds it whole."""
    _, where, pods = local_gang(kube)
    order = Order(kube)
    rule = proxy.add(Rule("PATCH", r"/api/v1/persistentvolumes/[^/?]+$", "status", status=500, nth=(2,)))
    try:
        daemon.start()
        note = failed_binding(kube, daemon, "claims undone")
        assert "HTTP 500" in note, note
        assert rule.fired == 1
        written = [pv for pv in where if order.all("persistentvolumes", pv, has_ref)]
        assert written, "a claimRef was written"
        pv = written[0]
        set_at = order.first("persistentvolumes", pv, has_ref)
        released = [rv for rv in order.all("persistentvolumes", pv, lambda o: not has_ref(o)) if rv > set_at]
        assert released, f"the claimRef on {pv} was not released"
        bound = order.all("pods", "a", on_node) + order.all("pods", "b", on_node)
        assert not bound or min(bound) > released[0], "a pod bound before the failed claims were undone"
        pv_controller()
        placed = wait_for(lambda: kube.all_bound(pods), "the retry bound the gang", daemon, timeout=60)
        volumes = {p: bound_to(kube, f"data-{p}") for p in pods}
        assert placed == {p: where[v] for p, v in volumes.items()}, (placed, volumes)
    finally:
        order.close()


def test_provisioning_that_never_completes_is_given_back(kube: Kube, daemon: Daemons) -> None:
    """No provisioner serves the class: after --volume-bind-timeout the committer removes the selected
    node it set on each claim and binds nothing; the gang says why."""
    two_nodes(kube)
    order = Order(kube)
    pods = gang_with_claims(kube, storage_class(kube, "none", "example.com/nobody"))
    try:
        daemon.start("--volume-bind-timeout", "1")
        note = failed_binding(kube, daemon, "claims not bound after 1s")
        assert "claims undone, nothing was bound" in note, note
        for c in ("data-a", "data-b"):
            marked = order.first("persistentvolumeclaims", c, has_selected)
            cleared = [
                rv for rv in order.all("persistentvolumeclaims", c, lambda o: not has_selected(o)) if rv > marked
            ]
            assert cleared, f"selected-node of {c} not removed"
        assert not any(kube.placements(pods).values())
    finally:
        order.close()


def test_a_bind_that_fails_after_the_claims_rolls_back_and_retries_on_the_volumes(
    kube: Kube, daemon: Daemons, proxy: FaultProxy, pv_controller: Callable[[], None]
) -> None:
    """The second pod's bind fails once the claims are bound: the bound member is rolled back; the claims
    stay bound (a claim's volume is set once, as kube-scheduler leaves it), and the retry binds the gang on
    those volumes' nodes."""
    _, where, pods = local_gang(kube)
    proxy.add(Rule("POST", BIND, "status", status=500, nth=(2,)))
    pv_controller()
    daemon.start()
    failed_binding(kube, daemon, "rolled back")
    placed = wait_for(lambda: kube.all_bound(pods), "the retry bound the gang", daemon)
    volumes = {p: bound_to(kube, f"data-{p}") for p in pods}
    assert placed == {p: where[v] for p, v in volumes.items()}, (placed, volumes)
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)


@pytest.mark.parametrize("point", ["claims:after-first", "claims:before-binds"])
def test_crash_mid_claims_then_recovery_completes(
    point: str, kube: Kube, daemon: Daemons, pv_controller: Callable[[], None]
) -> None:
    """The committer dies after writing the first of the gang's two claims (or with both bound by the volume
    controller, before any pod binds): the intent holds both; the next daemon writes what is left, waits for
    the volume controller and binds the gang as planned."""
    _, where, pods = local_gang(kube)
    ns = kube.ns
    by_node = {n: pv for pv, n in where.items()}
    (n0, n1) = sorted(by_node)
    plan = {"a": (n0, by_node[n0]), "b": (n1, by_node[n1])}
    commit = {
        "job": f"{ns}/g",
        "has_pod_group": True,
        "binds": [(f"{ns}/{p}", n) for p, (n, _) in sorted(plan.items())],
        "claims": [(f"{ns}/data-{p}", pv, n) for p, (n, pv) in sorted(plan.items())],
    }
    first = point == "claims:after-first"
    if not first:
        pv_controller()  # the harness's wait completes
    done = run_harness(daemon.kubeconfig, commit, {ENV: point})
    assert done.returncode == 137, done.stdout + done.stderr
    intent = Intent.parse(f"{ns}/g", intent_of(kube, "g") or "")
    assert intent is not None and [b.claim for b in intent.claims] == [f"{ns}/data-a", f"{ns}/data-b"]
    refs = {pv: get_volume(kube, pv)["spec"].get("claimRef") for _, pv in plan.values()}
    assert (bool(refs[plan["a"][1]]), bool(refs[plan["b"][1]])) == (True, not first), refs
    assert not any(kube.placements(pods).values())
    if first:
        pv_controller()
    daemon.start()
    placed = wait_for(lambda: kube.all_bound(pods), "recovery bound the gang", daemon)
    assert placed == {p: n for p, (n, _) in plan.items()}
    assert {p: bound_to(kube, f"data-{p}") for p in pods} == {p: pv for p, (_, pv) in plan.items()}
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    line = wait_for(lambda: "recovery" in daemon.tail() and daemon.tail(), "the recovery line", daemon)
    assert "completed (2 members bound)" in line, line


def test_crash_after_the_claim_writes_then_recovery_undoes_them(kube: Kube, daemon: Daemons) -> None:
    """The committer dies with both claims given their node (provisioning not done); a member is deleted
    meanwhile, so the plan cannot complete: the next daemon rolls it back and removes both selected
    nodes."""
    n0, n1 = two_nodes(kube)
    pods = gang_with_claims(kube, storage_class(kube, "none", "example.com/nobody"))
    ns = kube.ns
    commit = {
        "job": f"{ns}/g",
        "has_pod_group": True,
        "binds": [(f"{ns}/a", n0), (f"{ns}/b", n1)],
        "claims": [(f"{ns}/data-a", "", n0), (f"{ns}/data-b", "", n1)],
    }
    done = run_harness(daemon.kubeconfig, commit, {ENV: "claims:after-writes"})
    assert done.returncode == 137, done.stdout + done.stderr
    assert (selected(kube, "data-a"), selected(kube, "data-b")) == (n0, n1)
    kube.delete_pod("b")
    daemon.start()
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    assert (selected(kube, "data-a"), selected(kube, "data-b")) == ("", "")
    line = wait_for(lambda: "recovery" in daemon.tail() and daemon.tail(), "the recovery line", daemon)
    assert "rolled back" in line, line
    assert not kube.placements(pods[:1])["a"]


def test_lease_lost_between_claim_writes_writes_nothing_more_and_the_next_leader_finishes(
    kube: Kube, daemon: Daemons, proxy: FaultProxy, pv_controller: Callable[[], None]
) -> None:
    """The committer's lease lapses while its first claimRef write is held at the proxy: the second write
    (and the undo) are refused before they leave the process, the intent stays, and the daemon that comes
    next writes the rest and binds the gang as planned."""
    _, where, pods = local_gang(kube)
    ns = kube.ns
    by_node = {n: pv for pv, n in where.items()}
    n0, n1 = sorted(by_node)
    commit = {
        "job": f"{ns}/g",
        "has_pod_group": True,
        "binds": [(f"{ns}/a", n0), (f"{ns}/b", n1)],
        "claims": [(f"{ns}/data-a", by_node[n0], n0), (f"{ns}/data-b", by_node[n1], n1)],
    }
    proxy.add(Rule("PATCH", r"/api/v1/persistentvolumes/[^/?]+$", "delay", delay=4, nth=(1,)))
    done = run_harness(daemon.kubeconfig, commit, {"KAISCHED_HARNESS_FENCE": "3"})
    assert done.returncode == 0, done.stdout + done.stderr
    error = json.loads(done.stdout.strip().splitlines()[-1])["errors"][f"{ns}/g"]
    assert "not sent: lease last renewed" in error and "left to recovery" in error, error
    sent = [p for _, m, p, ua in proxy.received if m == "PATCH" and "/persistentvolumes/" in p and AGENT in ua]
    assert len(sent) == 1, f"a fenced committer sent {sent}"
    assert intent_of(kube, "g"), "the intent is left for the next leader"
    assert not any(kube.placements(pods).values())
    pv_controller()
    daemon.start()
    placed = wait_for(lambda: kube.all_bound(pods), "the next daemon bound the gang", daemon)
    assert placed == {"a": n0, "b": n1}
    assert (bound_to(kube, "data-a"), bound_to(kube, "data-b")) == (by_node[n0], by_node[n1])


def test_a_lone_pod_records_its_claim_on_itself_and_binds_after_provisioning(
    kube: Kube, daemon: Daemons, proxy: FaultProxy, pv_controller: Callable[[], None]
) -> None:
    """A pod without a PodGroup keeps the record of its claim on itself (through pods/status, as a lone
    preemptor's plan), gets its node provisioned, binds, and the record goes."""
    two_nodes(kube)
    claim(kube, "data-solo", storage_class(kube, "prov", HOSTPATH))
    member(kube, "solo", "", "data-solo")
    pv_controller()
    daemon.start()
    node = wait_for(lambda: kube.placements(["solo"])["solo"], "the pod bound", daemon)
    assert selected(kube, "data-solo") == node and bound_to(kube, "data-solo")
    ns = kube.ns
    # the record is cleared after the bind lands (the pipeline's worker clears it once the bind answered)
    wait_for(lambda: INTENT not in (kube.pods()["solo"]["metadata"].get("annotations") or {}) or None, "record cleared")
    status_writes = [
        p for _, m, p, _ in proxy.received if m == "PATCH" and p == f"/api/v1/namespaces/{ns}/pods/solo/status"
    ]
    assert len(status_writes) == 2, f"the record written and cleared: {status_writes}"

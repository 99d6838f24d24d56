"""WaitForFirstConsumer claims written by the Kubernetes committer before a gang binds, on the real API
server (through the fault proxy, which logs every request).

The volume side is upstream's: kube-controller-manager's PersistentVolume controller (started per test
where a claim must complete; with `--enable-hostpath-provisioner`, its in-tree test provisioner for class
provisioner `kubernetes.io/host-path`) binds the claims the committer pre-binds (a volume's claimRef) and
provisions the ones it marks (`volume.kubernetes.io/selected-node`). Tests that check what is undone run
without it, so nothing completes behind their back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration import test_commit_faults as faults
from tests.integration.test_commit_faults import intent_of
from tests.integration.test_daemon import GPU, SCHED, Daemons, Kube, wait_for
from tests.kubecluster import LocalCluster

proxy, kube, daemon = faults.proxy, faults.kube, faults.daemon
SELECTED = "volume.kubernetes.io/selected-node"
COMPLETED = "pv.kubernetes.io/bind-completed"
HOSTPATH = "kubernetes.io/host-path"


@pytest.fixture
def pv_controller(kube_cluster: LocalCluster) -> Iterator[Callable[[], None]]:
    """Starts (when called) kube-controller-manager with only the PersistentVolume controller."""

    def start() -> None:
        kube_cluster.spawn(
            "kcm-volumes",
            [
                str(kube_cluster.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kube_cluster.kubeconfig}",
                "--controllers=persistentvolume-binder-controller",
                "--enable-hostpath-provisioner",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=2",
            ],
        )

    yield start
    kube_cluster.kill("kcm-volumes")


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
    meta = {"name": name, "annotations": {"pod-group-name": pg}}
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
    """Watches the namespace's pods and claims; every change with its resourceVersion (one etcd, so
    revisions order changes across kinds), to tell what happened before what."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.seen: list[tuple[int, str, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._watch, args=(r,), daemon=True) for r in ("pods", "persistentvolumeclaims")
        ]
        for t in self.threads:
            t.start()

    def _watch(self, resource: str) -> None:
        path = f"/api/v1/namespaces/{self.kube.ns}/{resource}"
        client = type(self.kube.client).from_kubeconfig(str(self.kube.kubeconfig), qps=0, burst=1)
        rv = str(client.request("GET", path)["metadata"]["resourceVersion"])
        while not self.stop.is_set():
            for ev in client.watch(path, {"resourceVersion": rv, "timeoutSeconds": 5}, timeout=10):
                obj = ev.get("object") or {}
                rv = str(obj["metadata"]["resourceVersion"])
                self.seen.append((int(rv), resource, obj))

    def first(self, resource: str, name: str, pred: Callable[[dict[str, Any]], bool]) -> int:
        hits = [
            rv
            for rv, r, o in sorted(self.seen, key=lambda x: x[0])
            if r == resource and o["metadata"]["name"] == name and pred(o)
        ]
        assert hits, f"{resource}/{name} never seen so"
        return hits[0]

    def close(self) -> None:
        self.stop.set()


def two_nodes(kube: Kube) -> list[str]:
    return [kube.node(f"wn{i}", 1) for i in range(2)]


def test_local_volumes_bound_before_the_gang_binds_on_their_nodes(
    kube: Kube, daemon: Daemons, pv_controller: Callable[[], None]
) -> None:
    """A gang of 2, each member with a WaitForFirstConsumer claim that only a local volume on one node can
    take: the committer pre-binds each volume (claimRef, as PreBind does), the PV controller binds the
    claims, and only then do the pods bind, each on its volume's node."""
    n0, n1 = two_nodes(kube)
    cls = storage_class(kube, "local", "kubernetes.io/no-provisioner")
    pv_a, pv_b = local_volume(kube, "pva", cls, n1), local_volume(kube, "pvb", cls, n0)
    claim(kube, "data-a", cls)
    claim(kube, "data-b", cls)
    kube.podgroup("g", 2)
    order = Order(kube)
    pods = [member(kube, "a", "g", "data-a"), member(kube, "b", "g", "data-b")]
    pv_controller()
    daemon.start()
    try:
        placed = wait_for(lambda: kube.all_bound(pods), "the gang bound", daemon)
        where = {pv_a: n1, pv_b: n0}
        volumes = {c: bound_to(kube, c) for c in ("data-a", "data-b")}
        assert sorted(volumes.values()) == sorted(where), volumes
        assert placed == {"a": where[volumes["data-a"]], "b": where[volumes["data-b"]]}, "each pod on its volume's node"
        for c, pv in volumes.items():
            ref = get_volume(kube, pv)["spec"]["claimRef"]
            assert (ref["name"], ref["uid"]) == (c, get_claim(kube, c)["metadata"]["uid"])
        time.sleep(0.5)  # the watches catch up
        for pod, c in (("a", "data-a"), ("b", "data-b")):
            claim_done = order.first(
                "persistentvolumeclaims", c, lambda o: COMPLETED in (o["metadata"].get("annotations") or {})
            )
            pod_bound = order.first("pods", pod, lambda o: bool(o["spec"].get("nodeName")))
            assert claim_done < pod_bound, f"{pod} bound (rv {pod_bound}) before its claim {c} (rv {claim_done})"
        wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    finally:
        order.close()

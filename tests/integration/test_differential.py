"""Differential test: our per-node feasibility against upstream kube-scheduler's, the oracle.

A dedicated local API server holds a generated cluster (nodes with labels, taints, capacity and CSI
attach limits; running pods with labels, host ports and anti-affinity, one terminating; namespaces with
labels; storage classes, local and CSI volumes, bound and unbound claims). Then each generated pod, alone:
kube-scheduler (built by e2e/testbin from the pinned Kubernetes, with a profile of its own) runs its
filters and hands the nodes that passed them to a filter extender served by this test, which records
them and answers "none", so nothing binds and the cluster stays as generated; a pod that passes no
node is reported Unschedulable without reaching the extender. Our answer for the same pod (the object
the API server stored, after its defaulting) is `node_verdicts` on a session over the same objects.
Every (pod, node) pair is a case; the test fails on any disagreement not listed in DELIBERATE (each of
which the README's "Deliberate differences from kube-scheduler" names), printing the seed and the pod.

KAISCHED_DIFF_SEED / KAISCHED_DIFF_PODS choose the seed and the number of pods (default 7 and 200)."""

from __future__ import annotations

import json
import os
import random
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scheduler.actions.common.feasibility import node_verdicts
from scheduler.cache.cluster_state import ClusterState
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.session import Session
from scheduler.kube.convert import pod_from_k8s
from tests import kubecluster
from tests.kubecluster import LocalCluster

SEED = int(os.environ.get("KAISCHED_DIFF_SEED", "7"))
PODS = int(os.environ.get("KAISCHED_DIFF_PODS", "200"))
ORACLE = "oracle-scheduler"
ZONE, RACK, HOST = "topology.kubernetes.io/zone", "example.com/rack", "kubernetes.io/hostname"
NAMESPACES = {"diff-a": {"team": "a", "env": "prod"}, "diff-b": {"team": "b", "env": "dev"}}
APPS = ("web", "db", "cache", "batch")
README = Path(__file__).resolve().parents[2] / "README.md"

Obj = dict[str, Any]

# Known, deliberate differences: name -> predicate(pod object, node name, our reason, kube's verdict).
# Each name must appear in the README's "Deliberate differences from kube-scheduler" section.
DELIBERATE: dict[str, Callable[[Obj, str, str | None, bool], bool]] = {}


# ------------------------------------------------------------------------------------------ the API
class Api:
    def __init__(self, cluster: LocalCluster) -> None:
        self.base = cluster.server
        self.token = cluster.token
        self.ctx = ssl.create_default_context(cafile=str(cluster.ca_file))

    def call(self, method: str, path: str, body: Obj | None = None, ctype: str = "application/json") -> Obj:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": ctype},
        )
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=15) as r:
                return dict(json.loads(r.read() or b"{}"))
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read()[:500]!r}") from e

    def create(self, path: str, obj: Obj) -> Obj:
        return self.call("POST", path, obj)

    def items(self, path: str, kind: str) -> list[Obj]:
        return [{**o, "kind": kind} for o in self.call("GET", path).get("items") or []]


# ------------------------------------------------------------------------------------------ the oracle
class Extender(ThreadingHTTPServer):
    """kube-scheduler's filter extender: records the nodes that passed its filters, passes none."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: dict[str, list[str]] = {}  # pod uid -> node names kube-scheduler found feasible
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: Extender

    def do_POST(self) -> None:
        args = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        pod = args.get("Pod") or args.get("pod") or {}
        names = args.get("NodeNames") or args.get("nodenames") or []
        with self.server.lock:
            self.server.seen.setdefault(pod["metadata"]["uid"], list(names))
        body = json.dumps({"NodeNames": [], "FailedAndUnresolvableNodes": dict.fromkeys(names, "oracle")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_oracle(cluster: LocalCluster, ext: Extender) -> None:
    cfg = Path(cluster.workdir or "/tmp") / "oracle-scheduler.yaml"
    cfg.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        f"clientConnection:\n  kubeconfig: {cluster.kubeconfig}\n  qps: 200\n  burst: 400\n"
        "leaderElection:\n  leaderElect: false\n"
        f"profiles:\n- schedulerName: {ORACLE}\n"
        "extenders:\n"
        f"- urlPrefix: http://127.0.0.1:{ext.server_address[1]}\n"
        "  filterVerb: filter\n  nodeCacheCapable: true\n  weight: 1\n"
    )
    argv = [str(cluster.bin_dir / "kube-scheduler"), f"--config={cfg}", "--secure-port=0", "-v=1"]
    cluster.spawn("kube-scheduler", argv)


# ------------------------------------------------------------------------------------------ generation
def selector(rng: random.Random) -> Obj:
    if rng.random() < 0.7:
        return {"matchLabels": {"app": rng.choice(APPS)}}
    return {
        "matchExpressions": [{"key": "app", "operator": rng.choice(["In", "NotIn"]), "values": rng.sample(APPS, 2)}]
    }


def affinity_term(rng: random.Random) -> Obj:
    term: Obj = {"labelSelector": selector(rng), "topologyKey": rng.choice([HOST, ZONE, ZONE, RACK])}
    r = rng.random()
    if r < 0.2:
        term["namespaces"] = [rng.choice(sorted(NAMESPACES))]
    elif r < 0.35:
        term["namespaceSelector"] = {"matchLabels": {"env": rng.choice(["prod", "dev"])}}
    elif r < 0.42:
        term["namespaceSelector"] = {}
    r = rng.random()  # a key may not be in both lists (the API server refuses it)
    if r < 0.15:
        term["matchLabelKeys"] = ["tier"]
    elif r < 0.25:
        term["mismatchLabelKeys"] = ["tier"]
    return term


def nodes(rng: random.Random) -> list[Obj]:
    out = []
    for i in range(8):
        labels = {"pool": rng.choice(["x", "y"]), HOST: f"n{i}"}
        if i != 7:  # n7 carries no zone and no rack
            labels[ZONE] = f"z{i % 3}"
            labels[RACK] = f"r{i % 4}"
        alloc = {
            "cpu": str(rng.choice([4, 8, 16])),
            "memory": f"{rng.choice([8, 16, 32])}Gi",
            "pods": str(rng.choice([4, 10, 110])),
        }
        if i != 5:
            alloc["ephemeral-storage"] = f"{rng.choice([10, 50])}Gi"
        if i % 2 == 0:
            alloc["example.com/gpu"] = str(rng.choice([1, 4]))
        spec: Obj = {}
        if i == 3:
            spec["taints"] = [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
        if i == 4:
            spec["taints"] = [{"key": "slow", "value": "", "effect": "PreferNoSchedule"}]
        if i == 6:
            spec["unschedulable"] = True
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"n{i}", "labels": labels},
                "spec": spec,
                "status": {"capacity": alloc, "allocatable": alloc},
            }
        )
    return out


def container(rng: random.Random, ports: bool) -> Obj:
    req: Obj = {"cpu": f"{rng.choice([100, 500, 1000, 1500])}m", "memory": f"{rng.choice([256, 1024, 3072])}Mi"}
    if rng.random() < 0.2:
        req["ephemeral-storage"] = f"{rng.choice([1, 20])}Gi"
    if rng.random() < 0.15:
        req["example.com/gpu"] = "1"
    c: Obj = {"name": "c", "image": "busybox", "resources": {"requests": req}}
    if ports and rng.random() < 0.3:
        c["ports"] = [
            {"containerPort": 80, "hostPort": rng.choice([8080, 9090]), "protocol": rng.choice(["TCP", "TCP", "UDP"])}
        ]
        if rng.random() < 0.3:
            c["ports"][0]["hostIP"] = rng.choice(["127.0.0.1", "10.0.0.1"])
    if req.get("example.com/gpu"):
        c["resources"]["limits"] = {"example.com/gpu": "1"}
    return c


def running_pods(rng: random.Random) -> list[Obj]:
    out = []
    for i in range(16):
        ns = rng.choice(sorted(NAMESPACES))
        spec: Obj = {
            "nodeName": f"n{rng.randrange(8)}",
            "containers": [container(rng, ports=True)],
            "tolerations": [{"operator": "Exists"}],
        }
        if rng.random() < 0.25:
            spec["affinity"] = {
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [affinity_term(rng)]}
            }
        labels = {"app": rng.choice(APPS), "tier": rng.choice(["front", "back"])}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"run-{i}", "namespace": ns, "labels": labels},
                "spec": spec,
            }
        )
    return out


def storage(rng: random.Random) -> tuple[list[Obj], list[Obj], list[Obj], list[str]]:
    """(storage classes, volumes, claims in diff-a, claim names a pod may use)."""
    classes = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "local"},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "zonal"},
            "provisioner": "csi.example.com",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowedTopologies": [{"matchLabelExpressions": [{"key": ZONE, "values": ["z0", "z1"]}]}],
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "immediate"},
            "provisioner": "csi.example.com",
            "volumeBindingMode": "Immediate",
        },
    ]
    pvs, pvcs = [], []
    for i in range(6):
        host = f"n{rng.choice([0, 1, 2, 4, 7])}"
        pvs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"local-{i}"},
                "spec": {
                    "storageClassName": "local",
                    "capacity": {"storage": f"{rng.choice([5, 20])}Gi"},
                    "accessModes": [rng.choice(["ReadWriteOnce", "ReadWriteMany"])],
                    "local": {"path": "/mnt"},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": HOST, "operator": "In", "values": [host]}]}
                            ]
                        }
                    },
                },
            }
        )
    for i in range(4):
        pvcs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"wffc-{i}", "namespace": "diff-a"},
                "spec": {
                    "storageClassName": "local",
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": f"{rng.choice([1, 10])}Gi"}},
                },
            }
        )
    pvcs.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "zonal-0", "namespace": "diff-a"},
            "spec": {
                "storageClassName": "zonal",
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    pvcs.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "imm-0", "namespace": "diff-a"},
            "spec": {
                "storageClassName": "immediate",
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    # a claim bound to a local volume (as the volume controller leaves it: claimRef, phase, annotation)
    pvs.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "bound-0"},
            "spec": {
                "storageClassName": "local",
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "local": {"path": "/mnt"},
                "claimRef": {"namespace": "diff-a", "name": "bound-0"},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": HOST, "operator": "In", "values": ["n1"]}]}]
                    }
                },
            },
        }
    )
    pvcs.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": "bound-0",
                "namespace": "diff-a",
                "annotations": {"pv.kubernetes.io/bind-completed": "yes"},
            },
            "spec": {
                "storageClassName": "local",
                "accessModes": ["ReadWriteOnce"],
                "volumeName": "bound-0",
                "resources": {"requests": {"storage": "5Gi"}},
            },
        }
    )
    names = [*(f"wffc-{i}" for i in range(4)), "zonal-0", "imm-0", "bound-0", "missing-0"]
    return classes, pvs, pvcs, names


def case_pod(rng: random.Random, i: int, claims: list[str]) -> Obj:
    ns = "diff-a" if rng.random() < 0.6 else "diff-b"
    labels = {"app": rng.choice(APPS), "tier": rng.choice(["front", "back"])}
    spec: Obj = {"schedulerName": ORACLE, "containers": [container(rng, ports=True)]}
    if rng.random() < 0.3:
        spec["nodeSelector"] = {"pool": rng.choice(["x", "y"])}
    if rng.random() < 0.3:
        spec["tolerations"] = [
            rng.choice(
                [
                    {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
                    {"operator": "Exists"},
                ]
            )
        ]
    affinity: Obj = {}
    if rng.random() < 0.25:
        expr = rng.choice(
            [
                {"key": ZONE, "operator": "In", "values": rng.sample(["z0", "z1", "z2"], 2)},
                {"key": ZONE, "operator": "NotIn", "values": ["z1"]},
                {"key": ZONE, "operator": "Exists"},
            ]
        )
        term: Obj = {"matchExpressions": [expr]}
        if rng.random() < 0.3:
            field = {
                "key": "metadata.name",
                "operator": rng.choice(["In", "NotIn"]),
                "values": [f"n{rng.randrange(8)}"],
            }
            term = {"matchFields": [field]}
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
    if rng.random() < 0.3:
        affinity["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [affinity_term(rng)]}
    if rng.random() < 0.35:
        affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [affinity_term(rng)]}
    if affinity:
        spec["affinity"] = affinity
    if rng.random() < 0.35:
        c: Obj = {
            "maxSkew": rng.choice([1, 1, 2]),
            "topologyKey": rng.choice([ZONE, RACK, HOST]),
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector(rng),
        }
        if rng.random() < 0.25:
            c["minDomains"] = rng.choice([2, 4])
        if rng.random() < 0.25:
            c["nodeAffinityPolicy"] = "Ignore"
        if rng.random() < 0.25:
            c["nodeTaintsPolicy"] = "Honor"
        if rng.random() < 0.2:
            c["matchLabelKeys"] = ["tier"]
        spec["topologySpreadConstraints"] = [c]
    if ns == "diff-a" and rng.random() < 0.35:
        spec["volumes"] = [{"name": "v", "persistentVolumeClaim": {"claimName": rng.choice(claims)}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"case-{i}", "namespace": ns, "labels": labels},
        "spec": spec,
    }


# ------------------------------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def oracle() -> Iterator[tuple[LocalCluster, Extender]]:
    if kubecluster.missing_binaries(kubecluster.testbin_dir(), ("etcd", "kube-apiserver", "kube-scheduler")):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("testbin binaries missing: run e2e/testbin/build.sh", pytrace=False)
        pytest.skip("testbin binaries missing: run e2e/testbin/build.sh")
    ext = Extender()
    threading.Thread(target=ext.serve_forever, daemon=True).start()
    with LocalCluster() as cluster:
        start_oracle(cluster, ext)
        yield cluster, ext
    ext.shutdown()


def build_cluster(api: Api, rng: random.Random) -> list[str]:
    for name, labels in NAMESPACES.items():
        api.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
        )
    for n in nodes(rng):
        api.create("/api/v1/nodes", n)
    csinode = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {"name": "n0"},
        "spec": {"drivers": [{"name": "csi.example.com", "nodeID": "n0", "allocatable": {"count": 0}}]},
    }
    api.create("/apis/storage.k8s.io/v1/csinodes", csinode)
    classes, pvs, pvcs, claims = storage(rng)
    for sc in classes:
        api.create("/apis/storage.k8s.io/v1/storageclasses", sc)
    for pv in pvs:
        api.create("/api/v1/persistentvolumes", pv)
        phase = "Bound" if pv["spec"].get("claimRef") else "Available"
        api.call(
            "PATCH",
            f"/api/v1/persistentvolumes/{pv['metadata']['name']}/status",
            {"status": {"phase": phase}},
            ctype="application/merge-patch+json",
        )
    for pvc in pvcs:
        api.create(f"/api/v1/namespaces/{pvc['metadata']['namespace']}/persistentvolumeclaims", pvc)
    for p in running_pods(rng):
        api.create(f"/api/v1/namespaces/{p['metadata']['namespace']}/pods", p)
    # one running pod is terminating (no kubelet finishes it): spread ignores it, everything else counts it
    leaving = running_pods(random.Random(SEED + 1))[0]
    leaving["metadata"] |= {"name": "leaving", "namespace": "diff-a", "labels": {"app": "web", "tier": "front"}}
    api.create("/api/v1/namespaces/diff-a/pods", leaving)
    api.call("DELETE", "/api/v1/namespaces/diff-a/pods/leaving")
    return claims


def our_state(api: Api) -> ClusterState:
    state = ClusterState()
    for path, kind in (
        ("/api/v1/namespaces", "Namespace"),
        ("/api/v1/nodes", "Node"),
        ("/api/v1/persistentvolumes", "PersistentVolume"),
        ("/api/v1/persistentvolumeclaims", "PersistentVolumeClaim"),
        ("/apis/storage.k8s.io/v1/storageclasses", "StorageClass"),
        ("/apis/storage.k8s.io/v1/csinodes", "CSINode"),
        ("/api/v1/pods", "Pod"),
    ):
        for obj in api.items(path, kind):
            state.apply_object(obj)
    return state


def kube_verdict(api: Api, ext: Extender, pod: Obj, timeout: float = 20.0) -> set[str]:
    """The nodes kube-scheduler's filters accept for the pod (empty: it reported it Unschedulable)."""
    uid, ns, name = pod["metadata"]["uid"], pod["metadata"]["namespace"], pod["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ext.lock:
            if uid in ext.seen:
                return set(ext.seen[uid])
        now = api.call("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
        for cond in (now.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                with ext.lock:  # the extender, when called, answered before this condition was written
                    return set(ext.seen.get(uid, ()))
        time.sleep(0.03)
    raise AssertionError(f"kube-scheduler gave no verdict on {ns}/{name} in {timeout}s")


def test_feasibility_matches_kube_scheduler(oracle: tuple[LocalCluster, Extender]) -> None:
    cluster, ext = oracle
    api = Api(cluster)
    rng = random.Random(SEED)
    claims = build_cluster(api, rng)
    state = our_state(api)
    config = SchedulerConfig()
    cases = 0
    agree_feasible = 0
    disagreements: list[str] = []
    deliberate: dict[str, int] = {}
    rejected: dict[str, int] = {}  # our reasons where both reject, by kind (what the generator exercised)
    for i in range(PODS):
        spec = case_pod(rng, i, claims)
        ns = spec["metadata"]["namespace"]
        stored = api.create(f"/api/v1/namespaces/{ns}/pods", spec)
        theirs = kube_verdict(api, ext, stored)
        ours_pod = replace(pod_from_k8s({**stored, "kind": "Pod"}), scheduler_name="kai-scheduler")
        state.upsert_pod(ours_pod)
        session = Session(state.snapshot(), config, now=0.0)
        verdicts = node_verdicts(session, ours_pod)
        state.delete_pod(ours_pod.key)
        api.call("DELETE", f"/api/v1/namespaces/{ns}/pods/{stored['metadata']['name']}?gracePeriodSeconds=0")
        for node, why in sorted(verdicts.items()):
            cases += 1
            kube_ok = node in theirs
            if (why is None) == kube_ok:
                agree_feasible += kube_ok
                if why is not None:
                    kind = why.split(" (")[0].split(":")[0]
                    rejected[kind] = rejected.get(kind, 0) + 1
                continue
            known = next((k for k, f in DELIBERATE.items() if f(stored, node, why, kube_ok)), None)
            if known is not None:
                deliberate[known] = deliberate.get(known, 0) + 1
                continue
            disagreements.append(
                f"seed {SEED} pod case-{i} node {node}: kube-scheduler {'accepts' if kube_ok else 'rejects'}, we "
                f"{'accept' if why is None else 'reject: ' + why}\n  spec: {json.dumps(spec['spec'], sort_keys=True)}"
                f"\n  labels: {spec['metadata']['labels']} namespace {ns}"
            )
    readme = README.read_text()
    section = readme.split("## Deliberate differences from kube-scheduler", 1)[-1]
    assert all(name in section for name in DELIBERATE), "every listed difference must be named in the README"
    summary = (
        f"differential (seed {SEED}): {PODS} pods x {len(verdicts)} nodes = {cases} cases, {agree_feasible} feasible "
        f"pairs agreed, {len(disagreements)} disagreements, deliberate: {deliberate or 'none'}"
    )
    print(summary)
    for kind, n in sorted(rejected.items(), key=lambda kv: -kv[1]):
        print(f"  both reject {n:4d}: {kind}")
    assert not disagreements, summary + "\n" + "\n".join(disagreements[:20])
    assert agree_feasible > cases // 10, "the generator must produce feasible pairs too (else the test proves little)"

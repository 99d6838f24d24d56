"""E2E cluster providers: one interface, two ways to get a cluster with the scheduler installed.

- ``LocalProvider``: etcd + kube-apiserver + kube-controller-manager (Deployments, ReplicaSets, garbage
  collection) + the kwok controller (nodes Ready, bound pods Running), all built by e2e/testbin/build.sh.
  The chart is rendered with helm and applied (CRDs, RBAC, ServiceAccount, ConfigMap, queues, priority
  classes, Topology); its Deployment is not applied (there are no kubelets to run it): instead two
  daemon processes run with the Deployment's own arguments, authenticated as the chart's ServiceAccount
  with a token from the TokenRequest API, so every request they make is checked against the chart's
  ClusterRole and Role, not an admin's rights.
- ``KindProvider``: a kind cluster (1 control plane, 4 workers), the image built from
  deploy/image/Dockerfile and loaded into it, the chart installed with helm. Needs docker (a running
  engine), kind and helm; otherwise every kind test is skipped with the reason.

Tests get nodes from ``provider.nodes(...)``: the local provider creates kwok nodes; the kind provider
lends its workers, relabelled for the test and given fake ``nvidia.com/gpu`` capacity.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
import yaml

from e2e import chart
from scheduler.kube.client import ApiError, KubeClient
from tests.daemonproc import DaemonProcess, parse_metrics
from tests.kubecluster import LocalCluster, free_port, missing_binaries, testbin_dir

REPO = chart.REPO
E2E = REPO / "e2e"
VALUES = E2E / "values-e2e.yaml"
NAMESPACE = "kai-system"
GPU = "nvidia.com/gpu"
REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
RACK = "topology.kubernetes.io/rack"
HOSTNAME = "kubernetes.io/hostname"
T = TypeVar("T")


class Unavailable(Exception):
    """The provider cannot run on this machine; the message says why (tests are skipped with it)."""


def wait_for(fn: Callable[[], T | None], what: str, timeout: float = 60.0, logs: Callable[[], str] | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            tail = f"\n---- scheduler logs ----\n{logs()}" if logs else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(0.25)


class Api:
    """Raw JSON client with retries on dropped pooled connections."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.client = KubeClient.from_kubeconfig(str(kubeconfig), qps=0, burst=1)

    def req(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        for attempt in range(5):
            try:
                return self.client.request(method, path, **kw)
            except urllib3.exceptions.HTTPError:
                if attempt == 4:
                    raise
                time.sleep(0.3)
        raise AssertionError("unreachable")

    def delete(self, path: str, **kw: Any) -> None:
        with contextlib.suppress(ApiError):
            self.req("DELETE", path, **kw)

    def lease_holder(self, namespace: str, name: str) -> str:
        try:
            lease = self.req("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
        except ApiError as err:
            if err.status == 404:
                return ""
            raise
        return str((lease.get("spec") or {}).get("holderIdentity") or "")


@dataclass(frozen=True)
class NodeSpec:
    zone: str
    rack: str
    gpu: int


class Provider:
    name = "?"
    kubeconfig: Path
    api: Api
    lease_name: str
    lease_seconds: int
    topology: str

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def nodes(self, tag: str, specs: list[NodeSpec]) -> list[str]:
        """Nodes for one test, labelled region/zone/rack/hostname (zone and rack names carry the tag) and
        ``test-id: <tag>`` (test pods select it)."""
        raise NotImplementedError

    def release_nodes(self, names: list[str]) -> None:
        raise NotImplementedError

    def replicas(self) -> list[str]:
        """Identities of the scheduler replicas now running."""
        raise NotImplementedError

    def kill(self, identity: str) -> None:
        """Kill a replica at once (no graceful shutdown); a new one replaces it, as a Deployment does."""
        raise NotImplementedError

    def logs(self) -> str:
        raise NotImplementedError

    def leader(self) -> str:
        return self.api.lease_holder(NAMESPACE, self.lease_name)

    @staticmethod
    def node_labels(tag: str, name: str, spec: NodeSpec) -> dict[str, str]:
        return {
            "test-id": tag,
            REGION: f"region-{tag}",
            ZONE: f"{spec.zone}-{tag}",
            RACK: f"{spec.rack}-{tag}",
            HOSTNAME: name,
        }


def _e2e_values() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES.read_text()))


def _refused(line: str) -> bool:
    """A log line about a request the API server refused for lack of rights (ApiError: 'HTTP 403: ...'). A
    write into a namespace a test's teardown is deleting is refused with 403 too (NamespaceTerminating: an
    event for a pod the scheduler's cache has not yet seen go); that is no missing verb."""
    return ("HTTP 403" in line or "forbidden" in line.lower()) and "because it is being terminated" not in line


# ------------------------------------------------------------------------------------------ local


class _Replica(DaemonProcess):
    def __init__(self, identity: str, argv: list[str], log: Path, port: int) -> None:
        super().__init__(argv, log, port, label=identity)
        self.identity = identity


class LocalProvider(Provider):
    name = "local"
    NEEDED = ("etcd", "kube-apiserver", "kube-controller-manager", "kwok")

    def __init__(self) -> None:
        self.cluster: LocalCluster | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="kaisched-e2e-local-"))
        self.replica_procs: dict[str, _Replica] = {}
        self.started = 0
        self.daemon_argv: list[str] = []
        self.docs: list[dict[str, Any]] = []

    def start(self) -> None:
        try:
            bin_dir = testbin_dir()
        except Exception as e:
            raise Unavailable(f"cannot locate the testbin cache ({e}): run e2e/testbin/build.sh") from e
        missing = missing_binaries(bin_dir, self.NEEDED)
        try:
            chart.helm_binary()
        except chart.HelmMissing:
            missing.append("helm")
        if missing:
            raise Unavailable(f"{', '.join(missing)} not built in {bin_dir}: run e2e/testbin/build.sh")
        values = _e2e_values()
        self.lease_name = values["leaderElection"]["leaseName"]
        self.lease_seconds = int(values["leaderElection"]["leaseDurationSeconds"])
        self.topology = values.get("topology", {}).get("name", "default-topology")
        self.cluster = LocalCluster(bin_dir)
        self.cluster.start()
        self.kubeconfig = self.cluster.kubeconfig
        self.cluster.start_kwok()
        self.cluster.start_controller_manager()
        self.api = Api(self.kubeconfig)
        self.docs = chart.render(NAMESPACE, values_files=[VALUES])
        chart.install(self.api.client, self.docs, NAMESPACE, skip_kinds=("Deployment",))
        self._prepare_daemon()
        for _ in range(int(chart.find(self.docs, "Deployment")["spec"]["replicas"])):
            self._start_replica()
        for r in list(self.replica_procs.values()):
            self._wait_ready(r)
        wait_for(self.leader, "a scheduler replica to take the Lease", timeout=self.lease_seconds * 3, logs=self.logs)

    def _prepare_daemon(self) -> None:
        assert self.cluster is not None
        dep = chart.find(self.docs, "Deployment")
        pod = dep["spec"]["template"]["spec"]
        sa = pod["serviceAccountName"]
        (container,) = pod["containers"]
        # the chart's ConfigMap, where the Deployment would mount it
        cm_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
        cm = chart.find(self.docs, "ConfigMap", cm_name)
        config = self.workdir / "config.yaml"
        config.write_text(cm["data"]["config.yaml"])
        # a token for the ServiceAccount from the TokenRequest API, as the kubelet would project it
        tr = self.api.req(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{sa}/token",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 7200},
            },
        )
        token = tr["status"]["token"]
        sa_kubeconfig = self.workdir / "sa.kubeconfig"
        sa_kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "local",
                            "cluster": {
                                "server": self.cluster.server,
                                "certificate-authority": str(self.cluster.ca_file),
                            },
                        }
                    ],
                    "users": [{"name": sa, "user": {"token": token}}],
                    "contexts": [{"name": "sa", "context": {"cluster": "local", "user": sa, "namespace": NAMESPACE}}],
                    "current-context": "sa",
                }
            )
        )
        self.sa_kubeconfig = sa_kubeconfig
        self.sa_user = f"system:serviceaccount:{NAMESPACE}:{sa}"
        args = [str(a) for a in container["args"]]
        mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config")
        fixed = []
        for a in args:
            if a.startswith("--config="):
                assert a == f"--config={mount}/config.yaml", a
                a = f"--config={config}"
            if a.startswith(("--http-address=", "--http-port=", "--debug-port=")):
                continue  # set per replica below: the replicas share one host here
            fixed.append(a)
        self.daemon_argv = fixed

    def _start_replica(self) -> _Replica:
        self.started += 1
        identity = f"kai-scheduler-local-{self.started}"
        port = free_port()
        env = {"POD_NAME": identity, "POD_NAMESPACE": NAMESPACE}
        args = [
            a.replace("$(POD_NAME)", env["POD_NAME"]).replace("$(POD_NAMESPACE)", env["POD_NAMESPACE"])
            for a in self.daemon_argv
        ]
        argv = [
            sys.executable,
            "-m",
            "scheduler.cli.main",
            *args[:1],
            f"--kubeconfig={self.sa_kubeconfig}",
            "--http-address=127.0.0.1",
            f"--http-port={port}",
            "--debug-port=0",
            *args[1:],
        ]
        r = _Replica(identity, argv, self.workdir / f"{identity}.log", port)
        self.replica_procs[identity] = r
        return r

    def _wait_ready(self, r: _Replica, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if not r.alive():
                raise AssertionError(f"replica {r.identity} exited with {r.popen.returncode}:\n{r.tail()}")
            with contextlib.suppress(OSError):
                return r.get("/readyz")[0] == 200
            return False

        wait_for(ready, f"replica {r.identity} ready", timeout=timeout, logs=self.logs)

    def stop(self) -> None:
        for r in self.replica_procs.values():
            r.kill()
        if self.cluster is not None:
            self.cluster.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def nodes(self, tag: str, specs: list[NodeSpec]) -> list[str]:
        names = []
        for i, spec in enumerate(specs):
            name = f"n{i}-{spec.zone}-{spec.rack}-{tag}"
            res = {"cpu": "32", "memory": "256Gi", "pods": "110", GPU: str(spec.gpu)}
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": self.node_labels(tag, name, spec),
                    "annotations": {LocalCluster.KWOK_NODE_ANNOTATION: "fake"},
                },
                # Nodes may carry status on create; kwok adds the Ready condition and heartbeats.
                "status": {"capacity": res, "allocatable": res},
            }
            self.api.req("POST", "/api/v1/nodes", body=body)
            names.append(name)
        return names

    def release_nodes(self, names: list[str]) -> None:
        for n in names:
            self.api.delete(f"/api/v1/nodes/{n}")

    def replicas(self) -> list[str]:
        return sorted(i for i, r in self.replica_procs.items() if r.alive())

    def kill(self, identity: str) -> None:
        self.replica_procs[identity].kill()
        del self.replica_procs[identity]
        self._start_replica()  # the Deployment's ReplicaSet would start a new pod

    def metrics(self, identity: str) -> dict[str, float]:
        return self.replica_procs[identity].metrics()

    def logs(self) -> str:
        return "\n".join(f"--- {i}\n{r.tail()}" for i, r in sorted(self.replica_procs.items()))

    def forbidden_lines(self) -> list[str]:
        """Log lines of any replica that report a 403 (the role missing a verb)."""
        out = []
        for f in sorted(self.workdir.glob("*.log")):
            out += [ln for ln in f.read_text(errors="replace").splitlines() if _refused(ln)]
        return out


# ------------------------------------------------------------------------------------------- kind


def _run(argv: list[str], timeout: float = 600, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r


class KindProvider(Provider):
    """Env: KAISCHED_E2E_KIND_CLUSTER (name, default kaisched-e2e; an existing cluster of that name is
    reused and kept), KAISCHED_E2E_KEEP=1 keeps a cluster this run created, KAISCHED_E2E_IMAGE (default
    kaisched:e2e; built from deploy/image/Dockerfile unless KAISCHED_E2E_SKIP_BUILD=1)."""

    name = "kind"
    PAUSE = "registry.k8s.io/pause:3.10"

    def __init__(self) -> None:
        self.cluster_name = os.environ.get("KAISCHED_E2E_KIND_CLUSTER", "kaisched-e2e")
        self.image = os.environ.get("KAISCHED_E2E_IMAGE", "kaisched:e2e")
        self.workdir = Path(tempfile.mkdtemp(prefix="kaisched-e2e-kind-"))
        self.created = False
        self.lent: dict[str, str] = {}  # worker node -> test tag
        self.free: list[str] = []

    @staticmethod
    def check() -> None:
        why = []
        if shutil.which("docker") is None:
            why.append("docker is not installed")
        else:
            r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
            if r.returncode != 0 or not r.stdout.strip():
                err = " ".join((r.stderr or r.stdout).split())[:160]
                why.append(f"no Docker engine reachable (docker info: {err})")
        if shutil.which("kind") is None:
            why.append("kind is not installed")
        if shutil.which("kubectl") is None:
            why.append("kubectl is not installed")
        try:
            chart.helm_binary()
        except chart.HelmMissing as e:
            why.append(str(e))
        if why:
            raise Unavailable("; ".join(why) + " (see README: Install on a cluster)")

    def start(self) -> None:
        self.check()
        values = _e2e_values()
        self.lease_name = values["leaderElection"]["leaseName"]
        self.lease_seconds = int(values["leaderElection"]["leaseDurationSeconds"])
        self.topology = values.get("topology", {}).get("name", "default-topology")
        existing = _run(["kind", "get", "clusters"]).stdout.split()
        if self.cluster_name not in existing:
            _run(
                [
                    "kind",
                    "create",
                    "cluster",
                    "--name",
                    self.cluster_name,
                    "--config",
                    str(E2E / "kind-config.yaml"),
                    "--wait",
                    "120s",
                ],
                timeout=900,
            )
            self.created = True
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(_run(["kind", "get", "kubeconfig", "--name", self.cluster_name]).stdout)
        if os.environ.get("KAISCHED_E2E_SKIP_BUILD") != "1":
            _run(
                ["docker", "build", "-f", str(REPO / "deploy/image/Dockerfile"), "-t", self.image, str(REPO)],
                timeout=1800,
            )
        _run(["docker", "pull", self.PAUSE], check=False)
        for img in (self.image, self.PAUSE):
            _run(["kind", "load", "docker-image", img, "--name", self.cluster_name])
        repo, _, tag = self.image.rpartition(":")
        _run(
            [
                chart.helm_binary(),
                "upgrade",
                "--install",
                chart.RELEASE,
                str(chart.CHART_DIR),
                "--namespace",
                NAMESPACE,
                "--create-namespace",
                "--values",
                str(VALUES),
                "--set",
                f"image.repository={repo}",
                "--set",
                f"image.tag={tag}",
                "--set",
                "image.pullPolicy=Never",
                "--wait",
                "--timeout",
                "5m",
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            timeout=600,
        )
        self.api = Api(self.kubeconfig)
        nodes = self.api.req("GET", "/api/v1/nodes", params={"labelSelector": "!node-role.kubernetes.io/control-plane"})
        self.free = sorted(n["metadata"]["name"] for n in nodes.get("items") or [])
        for n in self.free:
            self._reset(n)
        wait_for(self.leader, "a scheduler replica to take the Lease", timeout=self.lease_seconds * 3)

    def stop(self) -> None:
        if self.created and os.environ.get("KAISCHED_E2E_KEEP") != "1":
            _run(["kind", "delete", "cluster", "--name", self.cluster_name], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _reset(self, node: str) -> None:
        labels: dict[str, str | None] = {"test-id": None, REGION: None, ZONE: None, RACK: None}
        self.api.req(
            "PATCH",
            f"/api/v1/nodes/{node}",
            body={"metadata": {"labels": labels}},
            content_type="application/merge-patch+json",
        )
        self._gpus(node, 0)

    def _gpus(self, node: str, n: int) -> None:
        # fake extended resource, as "Advertise Extended Resources for a Node" does; the kubelet keeps it
        self.api.req(
            "PATCH",
            f"/api/v1/nodes/{node}/status",
            body={"status": {"capacity": {GPU: str(n)}, "allocatable": {GPU: str(n)}}},
            content_type="application/merge-patch+json",
        )

    def nodes(self, tag: str, specs: list[NodeSpec]) -> list[str]:
        if len(specs) > len(self.free):
            raise Unavailable(f"the kind cluster has {len(self.free)} free workers, the test needs {len(specs)}")
        names = []
        for spec in specs:
            node = self.free.pop(0)
            labels = self.node_labels(tag, node, spec)
            labels.pop(HOSTNAME)  # the kubelet's own
            self.api.req(
                "PATCH",
                f"/api/v1/nodes/{node}",
                body={"metadata": {"labels": labels}},
                content_type="application/merge-patch+json",
            )
            self._gpus(node, spec.gpu)
            self.lent[node] = tag
            names.append(node)
        return names

    def release_nodes(self, names: list[str]) -> None:
        for n in names:
            self._reset(n)
            self.lent.pop(n, None)
            self.free.append(n)
        self.free.sort()

    def _pods(self) -> list[dict[str, Any]]:
        sel = f"app.kubernetes.io/name=kai-scheduler,app.kubernetes.io/instance={chart.RELEASE}"
        items = self.api.req("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": sel})
        return [p for p in items.get("items") or [] if not (p["metadata"].get("deletionTimestamp"))]

    def replicas(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self._pods() if (p.get("status") or {}).get("phase") == "Running")

    def kill(self, identity: str) -> None:
        self.api.req("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{identity}", body={"gracePeriodSeconds": 0})

    def metrics(self, identity: str) -> dict[str, float]:
        body = _run(
            [
                "kubectl",
                "--kubeconfig",
                str(self.kubeconfig),
                "get",
                "--raw",
                f"/api/v1/namespaces/{NAMESPACE}/pods/{identity}:8080/proxy/metrics",
            ]
        ).stdout
        return parse_metrics(body)

    def logs(self) -> str:
        r = _run(
            [
                "kubectl",
                "--kubeconfig",
                str(self.kubeconfig),
                "-n",
                NAMESPACE,
                "logs",
                "--tail=30",
                "-l",
                "app.kubernetes.io/name=kai-scheduler",
                "--prefix",
            ],
            check=False,
        )
        return r.stdout + r.stderr

    def forbidden_lines(self) -> list[str]:
        return [ln for ln in self.logs().splitlines() if _refused(ln)]


PROVIDERS: dict[str, type[Provider]] = {"local": LocalProvider, "kind": KindProvider}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:3000]

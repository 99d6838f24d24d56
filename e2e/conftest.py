"""Fixtures of the e2e suite: every test runs once per provider (``local``, ``kind``).

- ``provider`` (session, parametrized): the cluster with the scheduler installed (e2e/cluster.py).
  A provider that cannot run here skips its tests with the reason; with CI=true a missing ``local``
  provider fails instead (CI builds everything it needs). ``KAISCHED_E2E_PROVIDERS=local`` (or ``kind``)
  selects providers; the default is both.
- ``e2e`` (function): a fresh namespace and tag, helpers to create nodes and workloads, and cleanup.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from e2e.cluster import (  # noqa: E402
    GPU,
    NAMESPACE,
    PROVIDERS,
    ZONE,
    Api,
    NodeSpec,
    Provider,
    Unavailable,
    wait_for,
)
from scheduler.kube.client import ApiError  # noqa: E402
from tests.kubecluster import deployment_manifest  # noqa: E402

SCHED = "kai-scheduler"
PAUSE = "registry.k8s.io/pause:3.10"
DYNAMO_CRD = Path(__file__).resolve().parents[1] / "tests" / "integration" / "crds" / "dynamographdeployments.yaml"


def install_crd(api: Api, path: Path, timeout: float = 30.0) -> None:
    """Create the CRD unless it exists, and wait until its API group version is served."""
    import yaml

    crd = yaml.safe_load(path.read_text())
    try:
        api.req("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    except ApiError as err:
        if err.status != 409:
            raise
    group, version = crd["spec"]["group"], crd["spec"]["versions"][0]["name"]
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ApiError):
            served = api.req("GET", f"/apis/{group}/{version}").get("resources") or []
            if any(r.get("name") == crd["spec"]["names"]["plural"] for r in served):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"CRD {crd['metadata']['name']} not served after {timeout:.0f}s")
        time.sleep(0.2)


def _selected() -> list[str]:
    raw = os.environ.get("KAISCHED_E2E_PROVIDERS", "local,kind")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown:
        raise pytest.UsageError(f"KAISCHED_E2E_PROVIDERS: unknown {unknown}; known: {sorted(PROVIDERS)}")
    return names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: the whole scheduler on a cluster (e2e/)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "provider" in metafunc.fixturenames:
        metafunc.parametrize("provider", _selected(), indirect=True, scope="session")


_FAILED: dict[str, str] = {}


@pytest.fixture(scope="session")
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    name = request.param
    if name in _FAILED:
        pytest.skip(_FAILED[name])
    p = PROVIDERS[name]()
    request.addfinalizer(p.stop)
    try:
        p.start()
    except Unavailable as e:
        msg = f"e2e provider {name!r} unavailable: {e}"
        _FAILED[name] = msg
        if name == "local" and os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    yield p


class E2E:
    """One test's namespace, nodes and workloads (deleted at teardown)."""

    def __init__(self, provider: Provider, test_name: str) -> None:
        self.p = provider
        self.api: Api = provider.api
        self.tag = uuid.uuid4().hex[:6]
        self.ns = f"e2e-{test_name[:30].strip('-_').replace('_', '-').lower()}-{self.tag}"
        self.node_names: list[str] = []
        self.cluster_paths: list[str] = []
        self.api.req("POST", "/api/v1/namespaces", body={"metadata": {"name": self.ns}})

    # --- cluster -----------------------------------------------------------------------------
    def nodes(self, *specs: tuple[str, str, int]) -> list[str]:
        names = self.p.nodes(self.tag, [NodeSpec(z, r, g) for z, r, g in specs])
        self.node_names += names
        return names

    def zone_of(self, node: str) -> str:
        return str(self.api.req("GET", f"/api/v1/nodes/{node}")["metadata"]["labels"][ZONE])

    def zone(self, z: str) -> str:
        return f"{z}-{self.tag}"

    def queue(self, name: str, weight: float) -> str:
        name = f"{name}-{self.tag}"
        body = {
            "apiVersion": "scheduling.run.ai/v2",
            "kind": "Queue",
            "metadata": {"name": name},
            "spec": {"resources": {"gpu": {"quota": 0, "limit": -1, "overQuotaWeight": weight}}},
        }
        self.api.req("POST", "/apis/scheduling.run.ai/v2/queues", body=body)
        self.cluster_paths.append(f"/apis/scheduling.run.ai/v2/queues/{name}")
        return name

    # --- workloads ---------------------------------------------------------------------------
    def podgroup(self, name: str, min_member: int, annotations: dict[str, str] | None = None, **spec: Any) -> None:
        body = {
            "apiVersion": "scheduling.run.ai/v2alpha2",
            "kind": "PodGroup",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"minMember": min_member, **spec},
        }
        self.api.req("POST", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{self.ns}/podgroups", body=body)

    def pod_spec(self, gpu: int, priority_class: str = "") -> dict[str, Any]:
        res: dict[str, Any] = {"requests": {"cpu": "10m", "memory": "8Mi"}}
        if gpu:
            res["limits"] = {GPU: str(gpu)}
        spec: dict[str, Any] = {
            "schedulerName": SCHED,
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"test-id": self.tag},
            "containers": [{"name": "main", "image": PAUSE, "resources": res}],
        }
        if priority_class:
            spec["priorityClassName"] = priority_class
        return spec

    def deployment(
        self,
        name: str,
        replicas: int,
        gpu: int,
        pod_group: str = "",
        queue: str = "",
        priority_class: str = "",
    ) -> None:
        labels = {"kai.scheduler/queue": queue} if queue else {}
        annotations = {"pod-group-name": pod_group} if pod_group else {}
        body = deployment_manifest(name, replicas, self.pod_spec(gpu, priority_class), labels, annotations)
        self.api.req("POST", f"/apis/apps/v1/namespaces/{self.ns}/deployments", body=body)

    def dynamo_graph(
        self, name: str, annotations: dict[str, str], services: list[tuple[str, int, int]], priority_class: str = ""
    ) -> str:
        """A DynamoGraphDeployment and, as the Dynamo operator's Deployment path makes them, one Deployment per
        service owned by the graph, its pods labelled with their service (a test-side controller: the
        operator does not run here; its CRD is the minimal one of tests/integration/crds). No PodGroup:
        returns the name the scheduler's grouper gives the graph's gang."""
        install_crd(self.api, DYNAMO_CRD)
        body = {
            "apiVersion": "nvidia.com/v1alpha1",
            "kind": "DynamoGraphDeployment",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"services": {svc: {"replicas": n} for svc, n, _ in services}},
        }
        path = f"/apis/nvidia.com/v1alpha1/namespaces/{self.ns}/dynamographdeployments"
        graph = self.api.req("POST", path, body=body)
        owner = {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment", "name": name,
                 "uid": graph["metadata"]["uid"], "controller": True}  # fmt: skip
        for svc, replicas, gpu in services:
            app = f"{name}-{svc.lower()}"
            labels = {"app": app, "nvidia.com/dynamo-component": svc}
            dep = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": app, "ownerReferences": [owner]},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": app}},
                    "template": {"metadata": {"labels": labels}, "spec": self.pod_spec(gpu, priority_class)},
                },
            }
            self.api.req("POST", f"/apis/apps/v1/namespaces/{self.ns}/deployments", body=dep)
        return f"pg-{name}-{graph['metadata']['uid']}"

    def pinned_pod(self, name: str, node: str, gpu: int) -> None:
        """A pod placed by hand (spec.nodeName): capacity someone else holds."""
        spec = self.pod_spec(gpu)
        spec["nodeName"] = node
        spec.pop("schedulerName")
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
        self.api.req("POST", f"/api/v1/namespaces/{self.ns}/pods", body=body)

    def delete_pod(self, name: str) -> None:
        self.api.req("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{name}", body={"gracePeriodSeconds": 0})

    def pods(self, app: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": f"app={app}"} if app else {}
        items = self.api.req("GET", f"/api/v1/namespaces/{self.ns}/pods", params=params).get("items") or []
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def podgroup_reason(self, name: str) -> str | None:
        pg = self.api.req("GET", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{self.ns}/podgroups/{name}")
        conds = (pg.get("status") or {}).get("schedulingConditions") or []
        return str(conds[0].get("reason")) if conds else None

    def events(self, reason: str) -> list[dict[str, Any]]:
        items = self.api.req("GET", f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events").get("items") or []
        return [e for e in items if e.get("reason") == reason]

    def wait(self, fn: Any, what: str, timeout: float = 90.0) -> Any:
        return wait_for(fn, what, timeout=timeout, logs=self.diagnose)

    def diagnose(self) -> str:
        """What the cluster shows: PodGroup conditions, pods, recent events, then the scheduler's logs."""
        lines = []
        with contextlib.suppress(Exception):
            pgs = self.api.req("GET", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{self.ns}/podgroups")
            for pg in pgs.get("items") or []:
                conds = (pg.get("status") or {}).get("schedulingConditions") or []
                lines.append(
                    f"PodGroup {pg['metadata']['name']}: {[(c.get('reason'), c.get('message')) for c in conds]}"
                )
            for p in self.pods():
                lines.append(
                    f"Pod {p['metadata']['name']}: node={p['spec'].get('nodeName')!r} "
                    f"phase={(p.get('status') or {}).get('phase')}"
                )
            items = self.api.req("GET", f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events").get("items") or []
            for e in items[-15:]:
                lines.append(f"Event {e.get('reason')} {e.get('regarding', {}).get('name')}: {e.get('note')}")
        return "\n".join(lines) + "\n" + self.p.logs()

    # --- teardown ----------------------------------------------------------------------------
    def cleanup(self) -> None:
        ns = self.ns
        for path in (
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            f"/apis/apps/v1/namespaces/{ns}/replicasets",
            f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups",
        ):
            with contextlib.suppress(ApiError):
                self.api.req("DELETE", path, body={"propagationPolicy": "Background"})
        with contextlib.suppress(ApiError):
            self.api.req("DELETE", f"/api/v1/namespaces/{ns}/pods", body={"gracePeriodSeconds": 0})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(ApiError):
                if not self.api.req("GET", f"/api/v1/namespaces/{ns}/pods").get("items"):
                    break
                self.api.req("DELETE", f"/api/v1/namespaces/{ns}/pods", body={"gracePeriodSeconds": 0})
            time.sleep(0.5)
        for path in self.cluster_paths:
            self.api.delete(path)
        self.p.release_nodes(self.node_names)
        self.api.delete(f"/api/v1/namespaces/{ns}")


@pytest.fixture
def e2e(provider: Provider, request: pytest.FixtureRequest) -> Iterator[E2E]:
    ctx = E2E(provider, request.node.originalname)
    yield ctx
    try:
        ctx.cleanup()
    finally:
        # pytest shows this only for failed tests
        print(f"---- scheduler logs ({provider.name}, lease holder {provider.leader()!r}) ----\n{provider.logs()}")


@pytest.fixture(scope="session")
def scheduler_namespace() -> str:
    return NAMESPACE

"""The Helm chart (deploy/chart/kai-scheduler): find helm, render it, and apply what it renders.

Used by tests/integration/test_chart.py (render, then apply to the local API server) and by the e2e
providers (the local provider applies the chart's objects and runs the daemon with the Deployment's own
arguments under the chart's ServiceAccount).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from scheduler.kube.client import ApiError, KubeClient

REPO = Path(__file__).resolve().parent.parent
CHART_DIR = REPO / "deploy" / "chart" / "kai-scheduler"
CRD_DIR = REPO / "deploy" / "crds"
TESTBIN = REPO / "e2e" / "testbin"
RELEASE = "kai-scheduler"

# kind -> (API path prefix, plural, namespaced): every kind the chart renders (test_chart checks that).
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Service": ("/api/v1", "services", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "PriorityClass": ("/apis/scheduling.k8s.io/v1", "priorityclasses", False),
    "Queue": ("/apis/scheduling.run.ai/v2", "queues", False),
    "Topology": ("/apis/kai.scheduler/v1alpha1", "topologies", False),
}


class HelmMissing(RuntimeError):
    pass


def helm_binary() -> str:
    """helm from KAISCHED_HELM, the testbin cache (e2e/testbin/build.sh builds it), or PATH."""
    env = os.environ.get("KAISCHED_HELM")
    if env:
        return env
    override = os.environ.get("KAISCHED_TESTBIN_DIR")
    if override:
        cand = Path(override) / "helm"
    else:
        out = subprocess.run(["bash", str(TESTBIN / "bindir.sh")], check=True, capture_output=True, text=True)
        cand = Path(out.stdout.strip().splitlines()[-1]) / "helm"
    if os.access(cand, os.X_OK):
        return str(cand)
    found = shutil.which("helm")
    if found:
        return found
    raise HelmMissing(f"helm not found (looked in {cand} and PATH): run e2e/testbin/build.sh")


def helm_template(
    namespace: str,
    values_files: Iterable[Path] = (),
    set_values: Mapping[str, str] | None = None,
    include_crds: bool = True,
    release: str = RELEASE,
) -> str:
    argv = [helm_binary(), "template", release, str(CHART_DIR), "--namespace", namespace]
    if include_crds:
        argv.append("--include-crds")
    for f in values_files:
        argv += ["--values", str(f)]
    for k, v in (set_values or {}).items():
        argv += ["--set", f"{k}={v}"]
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/kaisched-helm/cache",
        "HELM_CONFIG_HOME": "/tmp/kaisched-helm/config",
        "HELM_DATA_HOME": "/tmp/kaisched-helm/data",
    }
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"helm template failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def render(namespace: str, **kw: Any) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm_template(namespace, **kw)) if d]


def object_path(obj: Mapping[str, Any], namespace: str | None = None, named: bool = True) -> str:
    prefix, plural, namespaced = RESOURCES[obj["kind"]]
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or namespace
    base = f"{prefix}/namespaces/{ns}/{plural}" if namespaced else f"{prefix}/{plural}"
    return f"{base}/{meta['name']}" if named else base


def apply(
    client: KubeClient, obj: Mapping[str, Any], namespace: str, dry_run: bool = False, manager: str = "kaisched-e2e"
) -> dict[str, Any]:
    """Server-side apply (what `kubectl apply --server-side` and Helm 4 do); dry_run validates only."""
    params: dict[str, Any] = {"fieldManager": manager, "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    obj = dict(obj)
    if RESOURCES[obj["kind"]][2]:
        obj["metadata"] = {**obj["metadata"], "namespace": obj["metadata"].get("namespace") or namespace}
    return client.request(
        "PATCH", object_path(obj, namespace), params=params, body=obj, content_type="application/apply-patch+yaml"
    )


def wait_crds_established(client: KubeClient, names: Iterable[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = client.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
            if conds.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s: {conds}")
            time.sleep(0.1)


def install(
    client: KubeClient, docs: list[dict[str, Any]], namespace: str, skip_kinds: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Apply rendered objects in Helm's order: namespace, CRDs (wait Established), then the rest."""
    skip = set(skip_kinds)
    try:
        client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    except ApiError as err:
        if err.status != 409:
            raise
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    for d in crds:
        apply(client, d, namespace)
    wait_crds_established(client, [d["metadata"]["name"] for d in crds])
    out = []
    for d in docs:
        if d["kind"] != "CustomResourceDefinition" and d["kind"] not in skip:
            out.append(apply(client, d, namespace))
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(hits) != 1:
        raise LookupError(f"expected one {kind} {name or ''} in the rendered chart, found {len(hits)}")
    return hits[0]

"""The Helm chart (deploy/chart/kai-scheduler) and the image recipe (deploy/image).

`helm template` output (helm built by e2e/testbin/build.sh) is applied to the local kube-apiserver with a
server-side dry run (schemas, CEL rules and admission of every object, CRs against our CRDs); the RBAC is
applied for real and probed with SubjectAccessReviews: every request the daemon makes is allowed, and
nothing else that matters is. e2e/ then runs the daemon under that identity.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import chart
from scheduler.cli.main import _parser
from scheduler.framework.config import SchedulerConfig
from scheduler.kube.client import ApiError, KubeClient
from scheduler.kube.paths import GROUPED_OWNERS
from tests.kubecluster import LocalCluster, apply_crds

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "chart" / "kai-scheduler"
DOCKERFILE = REPO / "deploy" / "image" / "Dockerfile"
RELEASE_NS = "kai-system"

# Every request the daemon makes (scheduler/backends/kubernetes.py, scheduler/binder/commit.py and volumes.py,
# scheduler/daemon/status.py, scheduler/daemon/leader.py): (group, resource, verbs, why).
# The ClusterRole must hold exactly these.
DAEMON_CLUSTER_RULES = [
    ("", "nodes", {"list", "watch"}, "node reflector: capacity, labels, taints, readiness"),
    ("", "pods", {"list", "watch"}, "pod reflector: pending pods, and bound pods' usage"),
    ("", "pods", {"get", "delete", "create"}, "gang rollback: read, delete, re-create unowned pods unbound"),
    ("", "pods/binding", {"create"}, "the bind"),
    ("", "pods/status", {"patch"}, "DisruptionTarget; a lone preemptor's plan; pod-group-name"),
    ("scheduling.k8s.io", "priorityclasses", {"list", "watch"}, "priorities"),
    ("scheduling.run.ai", "podgroups", {"list", "watch"}, "gangs"),
    ("scheduling.run.ai", "podgroups", {"patch"}, "the gang commit's intent annotation (scheduler/binder/commit.py)"),
    ("scheduling.run.ai", "queues", {"list", "watch"}, "queues"),
    ("scheduling.run.ai", "podgroups/status", {"patch"}, "schedulingConditions, resourcesStatus"),
    ("scheduling.run.ai", "queues/status", {"patch"}, "allocated, requested, fairShare"),
    ("kai.scheduler", "topologies", {"list", "watch"}, "topology trees"),
    ("", "namespaces", {"list", "watch"}, "namespace labels for pod affinity namespaceSelector"),
    ("", "persistentvolumeclaims", {"list", "watch"}, "claims: bound volumes, WaitForFirstConsumer"),
    ("", "persistentvolumes", {"list", "watch"}, "volumes' node affinity, volumes to bind"),
    ("", "persistentvolumeclaims", {"get", "patch"}, "WaitForFirstConsumer: a claim's selected-node, read back"),
    ("", "persistentvolumes", {"get", "patch"}, "WaitForFirstConsumer: a chosen volume's claimRef, read back"),
    ("storage.k8s.io", "storageclasses", {"list", "watch"}, "binding mode, allowed topologies"),
    ("storage.k8s.io", "csinodes", {"list", "watch"}, "CSI attach limits"),
    ("policy", "poddisruptionbudgets", {"list", "watch"}, "take-back prefers victims that break no budget"),
    ("events.k8s.io", "events", {"create"}, "Scheduled / Unschedulable / FailedBinding / Preempted ... events"),
    ("scheduling.run.ai", "podgroups", {"create"}, "the grouper's PodGroups (scheduler/grouper/live.py)"),
    *(
        (r.group, r.plural, {"get", "list", "watch"}, "the grouper watches the workloads, reads owners not seen yet")
        for r in GROUPED_OWNERS
    ),
]


def _helm_or_skip() -> None:
    try:
        chart.helm_binary()
    except chart.HelmMissing as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    _helm_or_skip()
    return chart.render(RELEASE_NS)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# ----------------------------------------------------------------------------- no cluster needed


def test_chart_crds_are_deploy_crds() -> None:
    """The chart ships deploy/crds unchanged (copy with: cp deploy/crds/*.yaml deploy/chart/kai-scheduler/crds/)."""
    src = {p.name: p.read_bytes() for p in sorted((REPO / "deploy" / "crds").glob("*.yaml"))}
    dst = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert src, "no CRDs in deploy/crds"
    assert sorted(dst) == sorted(src), "the chart's crds/ must hold exactly deploy/crds/*.yaml"
    stale = [n for n in src if src[n] != dst[n]]
    assert not stale, f"out of date in the chart, copy again: {stale}"


def test_rendered_objects(docs: list[dict[str, Any]]) -> None:
    kinds = sorted({d["kind"] for d in docs})
    assert set(kinds) <= set(chart.RESOURCES), f"e2e/chart.py RESOURCES lacks {set(kinds) - set(chart.RESOURCES)}"
    assert len(_by_kind(docs, "CustomResourceDefinition")) == 3
    pcs = {d["metadata"]["name"]: d["value"] for d in _by_kind(docs, "PriorityClass")}
    assert pcs == {"train": 50, "build-preemptible": 75, "build": 100, "inference": 125}
    assert not any(d.get("globalDefault") for d in _by_kind(docs, "PriorityClass"))
    queues = {d["metadata"]["name"]: d["spec"] for d in _by_kind(docs, "Queue")}
    assert set(queues) == {"default-parent-queue", "default-queue"}
    assert queues["default-queue"]["parentQueue"] == "default-parent-queue"
    assert "parentQueue" not in queues["default-parent-queue"]
    (topo,) = _by_kind(docs, "Topology")
    assert [lv["nodeLabel"] for lv in topo["spec"]["levels"]] == [
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/rack",
        "kubernetes.io/hostname",
    ]


def test_deployment_shape(docs: list[dict[str, Any]]) -> None:
    (dep,) = _by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert "--leader-elect" in args and f"--leader-elect-name={'kai-scheduler'}" in args
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert f"--http-port={port}" in args
    (svc,) = _by_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert pod["serviceAccountName"] == _by_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
    # the daemon's own parser accepts the arguments (env references substituted as the kubelet does)
    env = {"POD_NAME": "kai-scheduler-abc", "POD_NAMESPACE": RELEASE_NS}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]
    ns = _parser().parse_args(argv)
    assert ns.command == "run" and ns.leader_elect and ns.leader_elect_namespace == RELEASE_NS
    assert ns.identity == "kai-scheduler-abc" and ns.config == "/etc/kai-scheduler/config.yaml"


def test_configmap_is_a_valid_scheduler_config(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    (cm,) = _by_kind(docs, "ConfigMap")
    text = cm["data"]["config.yaml"]
    assert set(yaml.safe_load(text)) == {
        "schedulerName",
        "schedulePeriodSeconds",
        "nodeOrder",
        "defaultQueue",
        "implicitDefaultQueue",
        "defaultPriority",
    }
    (tmp_path / "c.yaml").write_text(text)
    assert SchedulerConfig.load(tmp_path / "c.yaml") == SchedulerConfig()  # the chart's defaults are the daemon's


def test_values_override_config() -> None:
    _helm_or_skip()
    docs = chart.render(
        RELEASE_NS, set_values={"config.nodeOrder": "spread", "replicaCount": "3", "topology.create": "false"}
    )
    (cm,) = _by_kind(docs, "ConfigMap")
    assert yaml.safe_load(cm["data"]["config.yaml"])["nodeOrder"] == "spread"
    assert _by_kind(docs, "Deployment")[0]["spec"]["replicas"] == 3
    assert not _by_kind(docs, "Topology")


def test_clusterrole_is_exactly_what_the_daemon_uses(docs: list[dict[str, Any]]) -> None:
    (role,) = _by_kind(docs, "ClusterRole")
    granted: set[tuple[str, str, str]] = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    assert "*" not in (g, r, v), rule
                    granted.add((g, r, v))
    wanted = {(g, r, v) for g, r, verbs, _ in DAEMON_CLUSTER_RULES for v in verbs}
    assert granted == wanted, f"extra: {sorted(granted - wanted)}; missing: {sorted(wanted - granted)}"
    (lrole,) = _by_kind(docs, "Role")
    assert lrole["metadata"]["namespace"] == RELEASE_NS
    assert {(tuple(r["verbs"]), tuple(r.get("resourceNames") or ())) for r in lrole["rules"]} == {
        (("create",), ()),
        (("get", "update"), ("kai-scheduler",)),
    }


def test_dockerfile_recipe() -> None:
    """No image can be built here: check what can be checked without a Docker engine."""
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines() if ln.strip() and not ln.startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert froms and all("slim" in ln or "${PYTHON_IMAGE}" in ln for ln in froms), froms
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.1[1-9]-slim", text, re.M)
    ignore = (REPO / ".dockerignore").read_text().split()
    for ln in lines:
        if not ln.upper().startswith("COPY ") or "--from=" in ln:
            continue
        *srcs, _dst = shlex.split(ln)[1:]
        for s in srcs:
            assert (REPO / s).exists(), f"COPY source {s} missing from the build context (repository root)"
            assert f"!{s}" in ignore or f"!{s}/" in ignore, f"{s} is excluded by .dockerignore"
    user = [ln for ln in lines if ln.upper().startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root"), user
    assert "PYTHONDONTWRITEBYTECODE=1" in text, "a read-only root filesystem: no .pyc writes at run time"
    assert 'ENTRYPOINT ["kaisched"]' in text
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'kaisched = "scheduler.cli.main:main"' in pyproject, "the entrypoint script is gone"
    assert 'readme = "README.md"' in pyproject  # why README.md is copied


# ----------------------------------------------------------------------------- against the API server


@pytest.fixture
def admin(kube_cluster: LocalCluster) -> Iterator[KubeClient]:
    yield KubeClient.from_kubeconfig(str(kube_cluster.kubeconfig), qps=0, burst=1)


def test_rendered_chart_passes_server_side_dry_run(
    kube_cluster: LocalCluster, kai_crds: list[str], namespace: str, admin: KubeClient
) -> None:
    """Every object, as the API server would store it: schemas, CEL rules, admission (CRs need the CRDs)."""
    _helm_or_skip()
    docs = chart.render(namespace)
    for d in docs:
        try:
            out = chart.apply(admin, d, namespace, dry_run=True)
        except ApiError as err:
            raise AssertionError(f"{d['kind']} {d['metadata']['name']} refused: {err}\n{yaml.safe_dump(d)}") from err
        assert out["kind"] == d["kind"] and out["metadata"]["name"] == d["metadata"]["name"]
    # and a broken value is refused by the CRD's own validation, so the dry run does check
    bad = next(d for d in docs if d["kind"] == "Topology")
    bad = {**bad, "spec": {"levels": [{"nodeLabel": "kubernetes.io/hostname"}, {"nodeLabel": "x/zone"}]}}
    with pytest.raises(ApiError) as e:
        chart.apply(admin, bad, namespace, dry_run=True)
    assert e.value.status == 422, e.value


def test_examples_pass_server_side_dry_run(
    kube_cluster: LocalCluster, kai_crds: list[str], namespace: str, admin: KubeClient, kube_api: Any
) -> None:
    """deploy/examples/ (the README's quick start applies them) are valid objects (a DynamoGraphDeployment
    against the minimal test CRD of tests/integration/crds: its spec is not checked)."""
    apply_crds(kube_api, REPO / "tests" / "integration" / "crds")
    files = sorted((REPO / "deploy" / "examples").glob("*.yaml"))
    assert files
    where = {
        "PodGroup": ("/apis/scheduling.run.ai/v2alpha2", "podgroups"),
        "Deployment": ("/apis/apps/v1", "deployments"),
        "DynamoGraphDeployment": ("/apis/nvidia.com/v1alpha1", "dynamographdeployments"),
    }
    for f in files:
        for d in yaml.safe_load_all(f.read_text()):
            if not d:
                continue
            kind = d["kind"]
            path, plural = where[kind]
            try:
                admin.request("POST", f"{path}/namespaces/{namespace}/{plural}", params={"dryRun": "All"}, body=d)
            except ApiError as err:
                raise AssertionError(f"{f.name}: {kind} {d['metadata']['name']} refused: {err}") from err
        pods = [d for d in yaml.safe_load_all(f.read_text()) if d and d["kind"] == "Deployment"]
        groups = {d["metadata"]["name"]: d for d in yaml.safe_load_all(f.read_text()) if d and d["kind"] == "PodGroup"}
        for dep in pods:
            tmpl = dep["spec"]["template"]
            pg = tmpl["metadata"]["annotations"]["pod-group-name"]
            assert pg in groups and tmpl["spec"]["schedulerName"] == "kai-scheduler", dep["metadata"]["name"]
        for name, pg in groups.items():
            members = sum(
                d["spec"]["replicas"]
                for d in pods
                if d["spec"]["template"]["metadata"]["annotations"]["pod-group-name"] == name
            )
            assert pg["spec"]["minMember"] == members, (name, members)


def _sar(admin: KubeClient, user: str, group: str, resource: str, verb: str, ns: str = "", name: str = "") -> bool:
    res, _, sub = resource.partition("/")
    attrs = {"group": group, "resource": res, "verb": verb, "subresource": sub, "namespace": ns, "name": name}
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "resourceAttributes": attrs,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{user.split(':')[2]}",
                "system:authenticated",
            ],
        },
    }
    out = admin.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=body)
    return bool(out["status"].get("allowed"))


def test_rbac_allows_the_daemon_and_little_else(
    kube_cluster: LocalCluster, kai_crds: list[str], namespace: str, admin: KubeClient
) -> None:
    _helm_or_skip()
    release = f"kai-{namespace[-8:]}"  # its own ClusterRole name, so nothing else in the session is touched
    docs = chart.render(namespace, release=release)
    rbac = [
        d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    for d in rbac:
        chart.apply(admin, d, namespace)
    try:
        sa = _by_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
        user = f"system:serviceaccount:{namespace}:{sa}"
        for group, resource, verbs, why in DAEMON_CLUSTER_RULES:
            for verb in sorted(verbs):
                # cluster-wide (list/watch of all namespaces) and in some other namespace
                for ns in (
                    ("", "some-team")
                    if resource not in ("nodes", "priorityclasses", "queues", "queues/status", "topologies")
                    else ("",)
                ):
                    assert _sar(admin, user, group, resource, verb, ns), f"{verb} {resource} ({why}) denied in {ns!r}"
        lease = "kai-scheduler"
        for verb in ("get", "update"):
            assert _sar(admin, user, "coordination.k8s.io", "leases", verb, namespace, lease), verb
        assert _sar(admin, user, "coordination.k8s.io", "leases", "create", namespace)
        denied = [
            ("coordination.k8s.io", "leases", "update", namespace, "someone-elses-lease"),
            ("coordination.k8s.io", "leases", "get", "kube-system", lease),
            ("", "pods", "update", "some-team", ""),
            ("", "pods", "patch", "some-team", ""),
            ("", "nodes", "patch", "", ""),
            ("", "nodes", "get", "", ""),
            ("", "secrets", "get", "some-team", ""),
            ("", "persistentvolumes", "delete", "", ""),
            ("", "persistentvolumes", "update", "", ""),
            ("", "persistentvolumeclaims", "delete", "some-team", ""),
            ("", "secrets", "list", "", ""),
            ("", "configmaps", "get", namespace, ""),
            ("", "pods/exec", "create", "some-team", ""),
            ("scheduling.run.ai", "podgroups", "update", "some-team", ""),
            ("scheduling.run.ai", "podgroups", "delete", "some-team", ""),
            ("apps", "daemonsets", "list", "", ""),  # the grouper watches the kinds it groups only
            ("apps", "deployments", "patch", "some-team", ""),
            ("batch", "jobs", "update", "some-team", ""),
            ("scheduling.run.ai", "queues", "delete", "", ""),
            ("", "events", "create", "some-team", ""),  # core/v1 events: the daemon writes events.k8s.io only
            ("rbac.authorization.k8s.io", "clusterroles", "escalate", "", ""),
        ]
        for group, resource, verb, ns, name in denied:
            assert not _sar(admin, user, group, resource, verb, ns, name), f"{verb} {resource} in {ns!r} allowed"
    finally:
        for d in reversed(rbac):
            with contextlib.suppress(ApiError):
                admin.request("DELETE", chart.object_path(d, namespace))

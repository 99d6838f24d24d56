"""The workload grouper in the daemon, on the real API server with kube-controller-manager (Deployments,
ReplicaSets, Jobs, StatefulSets and garbage collection make the pods, as on a real cluster): nobody writes
a PodGroup; the daemon makes them, annotates the pods and schedules them as gangs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_daemon import GPU, RACK, SCHED, ZONE, Daemons, Kube, daemon, kube, wait_for
from tests.kubecluster import LocalCluster, apply_crds, missing_binaries
from tests.upstream_crds import CrdSet
from tests.upstream_crds import workload_crds as upstream_workload_crds

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (daemon, kube)  # test_daemon.py's, requested by name below

PG_API = "/apis/scheduling.run.ai/v2alpha2"
TEST_CRDS = Path(__file__).parent / "crds"


@pytest.fixture(scope="module")
def controllers(kube_cluster: LocalCluster) -> Iterator[None]:
    """kube-controller-manager with the workload controllers and the garbage collector, for this module."""
    if missing_binaries(kube_cluster.bin_dir, ("kube-controller-manager",)):
        pytest.skip("kube-controller-manager not built: run e2e/testbin/build.sh")
    kube_cluster.start_controller_manager(
        ("deployment-controller", "replicaset-controller", "job-controller", "statefulset-controller",
         "garbage-collector-controller")
    )  # fmt: skip
    yield
    kube_cluster.kill("kube-controller-manager")


def template(k: Kube, gpu: int = 1, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels or {}},
        "spec": {
            "schedulerName": SCHED,
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"test-id": k.ns},
            "containers": [{"name": "c", "image": "registry.invalid/none:0", "resources": {"limits": {GPU: str(gpu)}}}],
        },
    }


def create(k: Kube, api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    return k.req("POST", f"{api}/namespaces/{k.ns}/{plural}", body=body)


def podgroups(k: Kube) -> dict[str, dict[str, Any]]:
    items = k.req("GET", f"{PG_API}/namespaces/{k.ns}/podgroups").get("items") or []
    return {p["metadata"]["name"]: p for p in items}


def pods_of(k: Kube, prefix: str) -> dict[str, dict[str, Any]]:
    return {n: p for n, p in k.pods().items() if n.startswith(prefix)}


def bound(k: Kube, prefix: str, n: int) -> dict[str, dict[str, Any]] | None:
    pods = pods_of(k, prefix)
    ok = len(pods) == n and all((p.get("spec") or {}).get("nodeName") for p in pods.values())
    return pods if ok else None


def test_workloads_are_grouped_and_scheduled_as_gangs(kube: Kube, daemon: Daemons, controllers: None) -> None:
    kube.node("gr-a", 8)
    kube.node("gr-b", 8)
    daemon.start()
    dep = create(kube, "/apis/apps/v1", "deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"team": "serving"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template(kube, 1, {"app": "web"})},
    })  # fmt: skip
    job_tmpl = {**template(kube), "spec": {**template(kube)["spec"], "restartPolicy": "Never"}}
    job = create(kube, "/apis/batch/v1", "jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "work"},
        "spec": {"parallelism": 4, "completions": 4, "template": job_tmpl},
    })  # fmt: skip
    ranks = create(kube, "/apis/batch/v1", "jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ranks"},
        "spec": {"parallelism": 3, "completions": 3, "completionMode": "Indexed", "template": job_tmpl},
    })  # fmt: skip
    sts = create(kube, "/apis/apps/v1", "statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "annotations": {"kai.scheduler/min-member": "3"}},
        "spec": {"replicas": 3, "podManagementPolicy": "Parallel", "serviceName": "db",
                 "selector": {"matchLabels": {"app": "db"}}, "template": template(kube, 1, {"app": "db"})},
    })  # fmt: skip
    web = wait_for(lambda: bound(kube, "web-", 2), "the Deployment's 2 pods bound", daemon)
    work = wait_for(lambda: bound(kube, "work-", 4), "the Job's 4 pods bound", daemon)
    rk = wait_for(lambda: bound(kube, "ranks-", 3), "the indexed Job's 3 ranks bound", daemon)
    db = wait_for(lambda: bound(kube, "db-", 3), "the StatefulSet's 3 pods bound", daemon)
    groups = podgroups(kube)

    def check(pods: dict[str, dict[str, Any]], name: str, min_member: int, kind: str, owner: dict[str, Any]) -> None:
        pg = groups[name]
        assert pg["spec"]["minMember"] == min_member, (name, pg["spec"])
        assert pg["metadata"]["annotations"]["kai.scheduler/grouped-by"] == "kaisched"
        (ref,) = pg["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"]) == (kind, owner["metadata"]["uid"])
        for pod in pods.values():
            assert pod["metadata"]["annotations"]["pod-group-name"] == name

    # a Deployment: one gang per pod, owned by the pod (KAI's rule); the Deployment's labels carried over
    for pod in web.values():
        m = pod["metadata"]
        check({m["name"]: pod}, f"pg-{m['name']}-{m['uid']}", 1, "Pod", pod)
        assert groups[f"pg-{m['name']}-{m['uid']}"]["metadata"]["labels"]["team"] == "serving"
        assert groups[f"pg-{m['name']}-{m['uid']}"]["spec"]["priorityClassName"] == "inference"
    check(work, f"pg-work-{job['metadata']['uid']}", 1, "Job", job)
    check(rk, f"pg-ranks-{ranks['metadata']['uid']}", 3, "Job", ranks)
    check(db, f"pg-db-{sts['metadata']['uid']}", 3, "StatefulSet", sts)
    assert dep["metadata"]["uid"]  # (the Deployment itself owns no PodGroup: its pods do)
    assert len(groups) == 2 + 3, sorted(groups)


def test_a_gang_waits_whole_and_follows_a_scale(kube: Kube, daemon: Daemons, controllers: None, tmp_path: Path) -> None:
    """The PodGroup follows the Job's scale through the grouper's watch of Jobs: its periodic re-read of
    owners is set to an hour here, so only the watch can bring the change."""
    kube.node("gw-a", 4)
    kube.node("gw-b", 4)
    config = tmp_path / "config.yaml"
    config.write_text("groupingResyncSeconds: 3600\n")
    daemon.start("--config", str(config))
    job_tmpl = {**template(kube, 3), "spec": {**template(kube, 3)["spec"], "restartPolicy": "Never"}}
    job = create(kube, "/apis/batch/v1", "jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "big"},
        "spec": {"parallelism": 3, "completions": 3, "completionMode": "Indexed", "template": job_tmpl},
    })  # fmt: skip
    name = f"pg-big-{job['metadata']['uid']}"
    wait_for(lambda: name in podgroups(kube) or None, "the indexed Job's PodGroup", daemon)
    # 3 ranks x 3 GPUs on two 4-GPU nodes: no rank starts alone
    wait_for(lambda: kube.condition_reason(name), "the gang's Unschedulable condition", daemon)
    assert not any((p.get("spec") or {}).get("nodeName") for p in pods_of(kube, "big-").values())
    # scaled to 2 ranks (an elastic Indexed Job): the PodGroup follows and the gang fits
    kube.req(
        "PATCH",
        f"/apis/batch/v1/namespaces/{kube.ns}/jobs/big",
        body={"spec": {"parallelism": 2, "completions": 2}},
        content_type="application/merge-patch+json",
    )
    wait_for(lambda: podgroups(kube)[name]["spec"]["minMember"] == 2 or None, "minMember 2 after the scale", daemon)
    wait_for(lambda: bound(kube, "big-", 2), "the 2 remaining ranks bound", daemon)


def test_a_pod_whose_owner_cannot_be_read_waits_with_the_reason(kube: Kube, daemon: Daemons, controllers: None) -> None:
    kube.node("go-a", 4)
    daemon.start()
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "orphan",
            "ownerReferences": [
                # a kind whose CRD is not installed (the garbage collector cannot resolve it either, so the
                # pod stays): the grouper must neither crash nor run the pod as a gang of one
                {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "0000-w", "controller": True}
            ],
        },
        **{k: v for k, v in template(kube).items() if k == "spec"},
    }
    kube.req("POST", f"/api/v1/namespaces/{kube.ns}/pods", body=body)
    events = wait_for(lambda: kube.events("Unschedulable", "orphan"), "an Unschedulable event on the pod", daemon)
    note = events[0]["note"]
    assert "AwaitingPodGroup" in note and f"Widget {kube.ns}/w" in note and "CRD is not installed" in note, note
    daemon.wait_cycles(daemon.procs[-1], 2)
    assert not kube.placements(["orphan"])["orphan"]


@pytest.fixture(scope="module")
def workload_crds(kube_api: Any, tmp_path_factory: pytest.TempPathFactory) -> CrdSet:
    """The workload kinds' CRDs: upstream where the Go module proxy serves the operator's module, else the
    minimal ones of tests/integration/crds (tests/upstream_crds.py)."""
    crds = upstream_workload_crds(tmp_path_factory.mktemp("crds"))
    apply_crds(kube_api, crds.folder)
    return crds


def _crd_names() -> list[str]:
    return sorted(
        d["metadata"]["name"]
        for f in TEST_CRDS.glob("*.yaml")
        for d in yaml.safe_load_all(f.read_text())
        if d and d.get("kind") == "CustomResourceDefinition"
    )


@pytest.mark.parametrize("name", _crd_names())
def test_workload_crd_is_the_upstream_definition(name: str, workload_crds: CrdSet, kube_api: Any) -> None:
    """Each workload CRD the tests install is its operator's own (a full schema), or the test says why not."""
    if name in workload_crds.fallbacks:
        pytest.skip(f"minimal CRD for {name}: {workload_crds.fallbacks[name]}")
    from kubernetes import client

    crd = client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(name)
    (served,) = [v for v in crd.spec.versions if v.storage]
    spec = served.schema.open_apiv3_schema.properties["spec"]
    assert spec.properties and not spec.x_kubernetes_preserve_unknown_fields, (name, workload_crds.upstream[name])


def owner_ref(obj: dict[str, Any]) -> list[dict[str, Any]]:
    m = obj["metadata"]
    return [
        {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": m["name"], "uid": m["uid"], "controller": True}
    ]


def dynamo_controller(k: Kube, dgd: dict[str, Any], gpus: dict[str, int]) -> None:
    """What the Dynamo operator's non-Grove path makes, test-side: a Deployment per service of the graph,
    owned by it, its pods labelled with their service (kube-controller-manager makes ReplicaSets and pods)."""
    graph = dgd["metadata"]["name"]
    for service, spec in sorted(dgd["spec"]["services"].items()):
        labels = {"nvidia.com/dynamo-component": service, "app": f"{graph}-{service.lower()}"}
        create(k, "/apis/apps/v1", "deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{graph}-{service.lower()}", "labels": labels, "ownerReferences": owner_ref(dgd)},
            "spec": {"replicas": spec["replicas"], "selector": {"matchLabels": {"app": labels["app"]}},
                     "template": template(k, gpus[service], labels)},
        })  # fmt: skip


def test_dynamo_graph_starts_whole_in_one_zone(
    kube: Kube, daemon: Daemons, controllers: None, workload_crds: CrdSet
) -> None:
    """The seed's flow, with no PodGroup written: a DynamoGraphDeployment annotated with required zone
    placement; its frontend, prefill and decode Deployments' pods are one gang that lands in the one zone
    with room (zone-a: 8 GPUs; zone-b: 4, short of the graph's 6)."""
    a1, a2 = kube.node("dy-a1", 4, "zone-a", "ra1"), kube.node("dy-a2", 4, "zone-a", "ra2")
    kube.node("dy-b1", 4, "zone-b", "rb1")
    topo = kube.topology([ZONE, RACK])
    daemon.start()
    dgd = create(kube, "/apis/nvidia.com/v1alpha1", "dynamographdeployments", {
        "apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment",
        "metadata": {"name": "vllm", "annotations": {"kai.scheduler/topology": topo,
                                                     "kai.scheduler/topology-required-placement": ZONE}},
        "spec": {"services": {"Frontend": {"replicas": 1}, "VllmPrefillWorker": {"replicas": 2},
                              "VllmDecodeWorker": {"replicas": 2}}},
    })  # fmt: skip
    dynamo_controller(kube, dgd, {"Frontend": 0, "VllmPrefillWorker": 2, "VllmDecodeWorker": 1})
    pods = wait_for(lambda: bound(kube, "vllm-", 5), "the graph's 5 pods bound", daemon)
    assert {p["spec"]["nodeName"] for p in pods.values()} <= {a1, a2}, {
        n: p["spec"]["nodeName"] for n, p in pods.items()
    }
    name = f"pg-vllm-{dgd['metadata']['uid']}"
    pg = podgroups(kube)[name]
    assert pg["spec"]["minMember"] == 5
    assert pg["spec"]["topologyConstraint"] == {"topology": topo, "requiredTopologyLevel": ZONE}
    assert [(s["name"], s["minMember"]) for s in pg["spec"]["subGroups"]] == [
        ("frontend", 1), ("vllmdecodeworker", 2), ("vllmprefillworker", 2)]  # fmt: skip
    for pod in pods.values():
        assert pod["metadata"]["annotations"]["pod-group-name"] == name
        assert pod["metadata"]["labels"]["kai.scheduler/subgroup-name"] == pod["metadata"]["labels"][
            "nvidia.com/dynamo-component"].lower()  # fmt: skip


def owned_pod(kube: Kube, name: str, owner: dict[str, Any], labels: dict[str, str], gpu: int = 1) -> None:
    """A pod as the workload's operator makes it (the operator does not run here)."""
    t = template(kube, gpu, labels)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "ownerReferences": owner_ref(owner)},
        "spec": t["spec"],
    }
    kube.req("POST", f"/api/v1/namespaces/{kube.ns}/pods", body=body)


def test_jobset_is_one_gang_of_its_replicated_jobs(
    kube: Kube, daemon: Daemons, controllers: None, workload_crds: CrdSet
) -> None:
    """A JobSet whose Jobs a test-side controller makes (as the JobSet operator does, labels on the pod
    template); kube-controller-manager's Job controller makes the pods."""
    kube.node("js-a", 4)
    kube.node("js-b", 4)
    daemon.start()
    pod_tmpl = template(kube, 1, {})  # the schema requires each replicated Job's pod template
    pod_tmpl["spec"]["restartPolicy"] = "Never"
    js = create(kube, "/apis/jobset.x-k8s.io/v1alpha2", "jobsets", {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "train"},
        "spec": {"replicatedJobs": [
            {"name": "driver", "replicas": 1, "template": {"spec": {"parallelism": 1, "template": pod_tmpl}}},
            {"name": "workers", "replicas": 2, "template": {"spec": {"parallelism": 2, "template": pod_tmpl}}}]},
    })  # fmt: skip
    for rj, replicas, parallelism in (("driver", 1, 1), ("workers", 2, 2)):
        for i in range(replicas):
            labels = {"jobset.sigs.k8s.io/replicatedjob-name": rj, "jobset.sigs.k8s.io/job-index": str(i)}
            tmpl = template(kube, 1, labels)
            tmpl["spec"]["restartPolicy"] = "Never"
            create(kube, "/apis/batch/v1", "jobs", {
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": f"train-{rj}-{i}", "ownerReferences": owner_ref(js)},
                "spec": {"parallelism": parallelism, "completions": parallelism, "template": tmpl},
            })  # fmt: skip
    pods = wait_for(lambda: bound(kube, "train-", 5), "the JobSet's 5 pods bound", daemon)
    name = f"pg-train-{js['metadata']['uid']}"
    pg = podgroups(kube)[name]
    assert pg["spec"]["minSubGroup"] == 2 and "minMember" not in pg["spec"], pg["spec"]
    assert [(s["name"], s.get("minMember"), s.get("minSubGroup")) for s in pg["spec"]["subGroups"]] == [
        ("driver", None, 1), ("driver-replica-0", 1, None),
        ("workers", None, 2), ("workers-replica-0", 2, None), ("workers-replica-1", 2, None)]  # fmt: skip
    for pod in pods.values():
        labels = pod["metadata"]["labels"]
        leaf = f"{labels['jobset.sigs.k8s.io/replicatedjob-name']}-replica-{labels['jobset.sigs.k8s.io/job-index']}"
        assert pod["metadata"]["annotations"]["pod-group-name"] == name
        assert labels["kai.scheduler/subgroup-name"] == leaf


def test_pytorchjob_and_raycluster_gangs(kube: Kube, daemon: Daemons, workload_crds: CrdSet) -> None:
    """A PyTorchJob (master + 3 workers) that does not fit waits whole; a RayCluster (head + 2 workers, and a
    suspended worker group) beside it starts whole. Their pods are made test-side, as the operators would
    make them; the CRDs are upstream (test_workload_crd_is_the_upstream_definition)."""
    kube.node("kf-a", 4)
    daemon.start()
    pt = create(kube, "/apis/kubeflow.org/v1", "pytorchjobs", {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "pt"},
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}},
    })  # fmt: skip
    owned_pod(kube, "pt-master-0", pt, {"training.kubeflow.org/replica-type": "master"}, gpu=2)
    for i in range(3):
        owned_pod(kube, f"pt-worker-{i}", pt, {"training.kubeflow.org/replica-type": "worker"}, gpu=2)
    ray_pod = {"spec": {"containers": [{"name": "ray", "image": "registry.invalid/ray:0"}]}}
    # (the upstream CRD requires the template and the min/max replicas; a suspended group (KubeRay's `suspend`)
    # has no pods and is not waited for)
    rc = create(kube, "/apis/ray.io/v1", "rayclusters", {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "rc"},
        "spec": {"headGroupSpec": {"template": ray_pod}, "workerGroupSpecs": [
            {"groupName": "gpu", "replicas": 2, "minReplicas": 0, "maxReplicas": 2, "template": ray_pod},
            {"groupName": "idle", "replicas": 1, "minReplicas": 1, "maxReplicas": 1, "suspend": True,
             "template": ray_pod}]},
    })  # fmt: skip
    owned_pod(kube, "rc-head", rc, {"ray.io/group": "headgroup"}, gpu=0)
    for i in range(2):
        owned_pod(kube, f"rc-gpu-{i}", rc, {"ray.io/group": "gpu"}, gpu=1)
    wait_for(lambda: bound(kube, "rc-", 3), "the RayCluster's 3 pods bound", daemon)
    pt_name, rc_name = f"pg-pt-{pt['metadata']['uid']}", f"pg-rc-{rc['metadata']['uid']}"
    wait_for(lambda: kube.condition_reason(pt_name), "the PyTorchJob gang's condition", daemon)
    assert not any(p["spec"].get("nodeName") for p in pods_of(kube, "pt-").values()), "a rank started alone"
    groups = podgroups(kube)
    assert groups[pt_name]["spec"]["minMember"] == 4
    assert [(s["name"], s["minMember"]) for s in groups[pt_name]["spec"]["subGroups"]] == [("master", 1), ("worker", 3)]
    assert groups[rc_name]["spec"]["minMember"] == 3
    assert [(s["name"], s["minMember"]) for s in groups[rc_name]["spec"]["subGroups"]] == [("headgroup", 1), ("gpu", 2)]

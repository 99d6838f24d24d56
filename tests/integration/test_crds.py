"""The KAI CRDs (deploy/crds) on a real kube-apiserver: schemas, CEL rules, status, printer columns.

Plus a smoke test of the core API the scheduler depends on: a Node, a Pod and a Binding.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration

PG = ("scheduling.run.ai", "v2alpha2", "podgroups")
QUEUE = ("scheduling.run.ai", "v2", "queues")
TOPO = ("kai.scheduler", "v1alpha1", "topologies")
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def podgroup(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.run.ai/v2alpha2",
        "kind": "PodGroup",
        "metadata": {"name": name},
        "spec": spec,
    }


def queue(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def topology(name: str, labels: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kai.scheduler/v1alpha1",
        "kind": "Topology",
        "metadata": {"name": name},
        "spec": {"levels": [{"nodeLabel": lbl} for lbl in labels]},
    }


@pytest.fixture
def custom(kube_api: Any, kai_crds: list[str]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def cluster_objects(custom: client.CustomObjectsApi) -> Any:
    """Create cluster-scoped objects (Queues, Topologies) and delete them after the test."""
    created: list[tuple[tuple[str, str, str], str]] = []

    def create(kind: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        obj = custom.create_cluster_custom_object(*kind, body)
        created.append((kind, body["metadata"]["name"]))
        return obj

    yield create
    for kind, name in created:
        try:
            custom.delete_cluster_custom_object(*kind, name)
        except ApiException as e:
            if e.status != 404:
                raise


def rejected(call: Any, message: str) -> str:
    with pytest.raises(ApiException) as info:
        call()
    e = info.value
    assert e.status == 422, f"expected 422 Invalid, got {e.status}: {e.body}"
    text = json.loads(e.body)["message"]
    assert message in text, f"{message!r} not in {text!r}"
    return text


# ------------------------------------------------------------------ CRDs install


def test_crds_established(kube_api: Any, kai_crds: list[str]) -> None:
    assert sorted(kai_crds) == [
        "podgroups.scheduling.run.ai",
        "queues.scheduling.run.ai",
        "topologies.kai.scheduler",
    ]
    ext = client.ApiextensionsV1Api(kube_api)
    pg = ext.read_custom_resource_definition("podgroups.scheduling.run.ai")
    assert pg.spec.names.short_names == ["pg"]
    assert pg.spec.scope == "Namespaced"
    for name in kai_crds:
        crd = ext.read_custom_resource_definition(name)
        assert crd.spec.versions[0].subresources.status is not None
        conds = {c.type: c.status for c in crd.status.conditions}
        assert conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"


# ------------------------------------------------------------------ PodGroup


def test_podgroup_valid_gang(custom: client.CustomObjectsApi, namespace: str) -> None:
    body = podgroup(
        "gang",
        minMember=3,
        queue="team-a",
        priorityClassName="train",
        preemptibility="preemptible",
        topologyConstraint={
            "topology": "topology-1",
            "requiredTopologyLevel": "topology.kubernetes.io/zone",
            "preferredTopologyLevel": "topology.kubernetes.io/rack",
        },
    )
    obj = custom.create_namespaced_custom_object(*PG[:2], namespace, PG[2], body)
    assert obj["spec"]["minMember"] == 3
    assert obj["spec"]["topologyConstraint"]["topology"] == "topology-1"


def test_podgroup_valid_subgroup_tree(custom: client.CustomObjectsApi, namespace: str) -> None:
    body = podgroup(
        "inference",
        minSubGroup=2,
        queue="team-a",
        subGroups=[
            {"name": "router", "minMember": 1},
            {"name": "workers"},  # inner node: its children hold the pods
            {
                "name": "prefill",
                "parent": "workers",
                "minMember": 2,
                "topologyConstraint": {
                    "topology": "topology-1",
                    "requiredTopologyLevel": "topology.kubernetes.io/rack",
                },
            },
            {"name": "decode", "parent": "workers", "minMember": 0},
        ],
    )
    obj = custom.create_namespaced_custom_object(*PG[:2], namespace, PG[2], body)
    assert [s["name"] for s in obj["spec"]["subGroups"]] == ["router", "workers", "prefill", "decode"]


def test_podgroup_status_is_writable(custom: client.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(*PG[:2], namespace, PG[2], podgroup("pg1", minMember=2))
    status = {
        "schedulingConditions": [
            {
                "type": "UnschedulableOnNodePool",
                "nodePool": "default",
                "reason": "Unschedulable",
                "message": "2 pods do not fit",
                "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "reasons": [
                    {
                        "reason": "OverLimit",
                        "message": "queue team-a is over its gpu limit",
                        "details": {"queueDetails": {"name": "team-a"}},
                    }
                ],
            }
        ],
        "resourcesStatus": {"allocated": {"cpu": "2", "nvidia.com/gpu": 1}, "requested": {"memory": "1000"}},
        "kaischedNote": "unknown status fields are kept",
    }
    out = custom.patch_namespaced_custom_object_status(*PG[:2], namespace, PG[2], "pg1", {"status": status})
    assert out["status"]["schedulingConditions"][0]["reasons"][0]["details"]["queueDetails"]["name"] == "team-a"
    assert out["status"]["resourcesStatus"]["allocated"] == {"cpu": "2", "nvidia.com/gpu": 1}
    assert out["status"]["kaischedNote"] == "unknown status fields are kept"
    # The main resource ignores status, the status subresource ignores spec.
    again = custom.get_namespaced_custom_object(*PG[:2], namespace, PG[2], "pg1")
    assert again["spec"] == {"minMember": 2}


def test_podgroup_printer_columns(kube_cluster: Any, custom: client.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(
        *PG[:2], namespace, PG[2], podgroup("cols", minMember=4, queue="q1", priorityClassName="build")
    )
    status, data = kube_cluster.request(
        f"/apis/scheduling.run.ai/v2alpha2/namespaces/{namespace}/podgroups", headers=TABLE
    )
    assert status == 200, data
    table = json.loads(data)
    cols = [c["name"] for c in table["columnDefinitions"]]
    assert cols[:6] == ["Name", "MinMember", "MinSubGroup", "Queue", "Priority", "Phase"]
    assert table["rows"][0]["cells"][:5] == ["cols", 4, None, "q1", "build"]


def _pg_rejected(custom: client.CustomObjectsApi, ns: str, message: str, **spec: Any) -> str:
    return rejected(
        lambda: custom.create_namespaced_custom_object(*PG[:2], ns, PG[2], podgroup("bad", **spec)), message
    )


def test_podgroup_min_member_and_min_subgroup_exclusive(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(
        custom,
        namespace,
        "minMember and minSubGroup are mutually exclusive",
        minMember=2,
        minSubGroup=1,
        subGroups=[{"name": "a", "minMember": 1}],
    )


def test_podgroup_subgroup_min_member_and_min_subgroup_exclusive(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    _pg_rejected(
        custom,
        namespace,
        "a subGroup's minMember and minSubGroup are mutually exclusive",
        subGroups=[{"name": "a", "minMember": 1, "minSubGroup": 1}],
    )


def test_podgroup_min_member_not_negative(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(custom, namespace, "minMember must be 0 or more", minMember=-1)


def test_podgroup_min_subgroup_needs_subgroups(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(custom, namespace, "minSubGroup needs subGroups", minSubGroup=1)


def test_podgroup_subgroup_min_member_not_negative(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(
        custom,
        namespace,
        "a subGroup's minMember must be 0 or more",
        subGroups=[{"name": "a", "minMember": -2}],
    )


def test_podgroup_subgroup_names_unique(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(
        custom,
        namespace,
        "subGroups names must be unique",
        subGroups=[{"name": "a", "minMember": 1}, {"name": "a", "minMember": 2}],
    )


@pytest.mark.parametrize("bad_name", ["Upper", "under_score", "-dash", "dot.ted", ""])
def test_podgroup_subgroup_name_dns_label(custom: client.CustomObjectsApi, namespace: str, bad_name: str) -> None:
    _pg_rejected(custom, namespace, "subGroup name must be a DNS label", subGroups=[{"name": bad_name, "minMember": 1}])


def test_podgroup_subgroup_name_too_long(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(custom, namespace, "may not be more than 63 bytes", subGroups=[{"name": "a" * 64, "minMember": 1}])


def test_podgroup_subgroup_parent_exists(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(
        custom,
        namespace,
        "a subGroup's parent must be the name of another subGroup",
        subGroups=[{"name": "a", "parent": "missing", "minMember": 1}],
    )


def test_podgroup_subgroup_not_own_parent(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(
        custom,
        namespace,
        "a subGroup cannot be its own parent",
        subGroups=[{"name": "a", "parent": "a", "minMember": 1}],
    )


def test_podgroup_leaf_subgroup_needs_min_member(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(
        custom,
        namespace,
        "a leaf subGroup (one that no subGroup names as parent) must set minMember",
        subGroups=[{"name": "root"}, {"name": "leaf", "parent": "root"}],
    )


def test_podgroup_longer_cycles_are_left_to_the_scheduler(custom: client.CustomObjectsApi, namespace: str) -> None:
    """CEL cannot follow parent chains; a -> b -> a passes the API and the scheduler reports it."""
    body = podgroup("cycle", subGroups=[{"name": "a", "parent": "b", "minMember": 1}, {"name": "b", "parent": "a"}])
    custom.create_namespaced_custom_object(*PG[:2], namespace, PG[2], body)


def test_podgroup_bad_preemptibility(custom: client.CustomObjectsApi, namespace: str) -> None:
    _pg_rejected(
        custom,
        namespace,
        'supported values: "preemptible", "non-preemptible"',
        minMember=1,
        preemptibility="sometimes",
    )


def test_podgroup_unknown_spec_field_is_pruned_not_kept(custom: client.CustomObjectsApi, namespace: str) -> None:
    obj = custom.create_namespaced_custom_object(*PG[:2], namespace, PG[2], podgroup("prune", minMember=1, bogus=True))
    assert "bogus" not in obj["spec"]


# ------------------------------------------------------------------ Queue


def test_queue_valid_tree(custom: client.CustomObjectsApi, cluster_objects: Any) -> None:
    parent, leaf = uniq("parent"), uniq("leaf")
    cluster_objects(QUEUE, queue(parent, resources={"gpu": {"quota": -1, "limit": -1, "overQuotaWeight": 1}}))
    obj = cluster_objects(
        QUEUE,
        queue(
            leaf,
            parentQueue=parent,
            displayName="Team A",
            resources={
                "cpu": {"quota": 4000, "limit": -1, "overQuotaWeight": 2},
                "memory": {"quota": 0, "limit": 16000, "overQuotaWeight": 0.5},
                "gpu": {"quota": 2, "limit": 8, "overQuotaWeight": 1},
            },
        ),
    )
    assert obj["spec"]["priority"] == 100, "priority defaults to 100"
    assert obj["spec"]["resources"]["memory"]["overQuotaWeight"] == 0.5
    out = custom.patch_cluster_custom_object_status(
        *QUEUE,
        leaf,
        {
            "status": {
                "allocated": {"cpu": "1500", "nvidia.com/gpu": "2"},
                "requested": {"cpu": 3000},
                "childQueues": [],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        },
    )
    assert out["status"]["allocated"]["cpu"] == "1500"


def _queue_rejected(custom: client.CustomObjectsApi, message: str, **spec: Any) -> None:
    rejected(lambda: custom.create_cluster_custom_object(*QUEUE, queue(uniq("bad"), **spec)), message)


@pytest.mark.parametrize("res", ["cpu", "memory", "gpu"])
def test_queue_quota_at_least_minus_one(custom: client.CustomObjectsApi, res: str) -> None:
    _queue_rejected(custom, "quota must be -1 (unlimited) or 0 or more", resources={res: {"quota": -2}})


@pytest.mark.parametrize("res", ["cpu", "memory", "gpu"])
def test_queue_limit_at_least_minus_one(custom: client.CustomObjectsApi, res: str) -> None:
    _queue_rejected(custom, "limit must be -1 (no limit) or 0 or more", resources={res: {"limit": -1.5}})


def test_queue_over_quota_weight_not_negative(custom: client.CustomObjectsApi) -> None:
    _queue_rejected(custom, "overQuotaWeight must be 0 or more", resources={"gpu": {"overQuotaWeight": -1}})


def test_queue_not_own_parent(custom: client.CustomObjectsApi) -> None:
    name = uniq("selfish")
    rejected(
        lambda: custom.create_cluster_custom_object(*QUEUE, queue(name, parentQueue=name)),
        "a queue cannot be its own parent",
    )


# ------------------------------------------------------------------ Topology


def test_topology_valid(custom: client.CustomObjectsApi, cluster_objects: Any) -> None:
    labels = [
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/rack",
        "kubernetes.io/hostname",
    ]
    obj = cluster_objects(TOPO, topology(uniq("topology"), labels))
    assert [lv["nodeLabel"] for lv in obj["spec"]["levels"]] == labels
    cluster_objects(TOPO, topology(uniq("sixteen"), [f"example.com/level-{i}" for i in range(16)]))
    cluster_objects(TOPO, topology(uniq("one"), ["kubernetes.io/hostname"]))


def _topo_rejected(custom: client.CustomObjectsApi, labels: list[str], message: str) -> None:
    rejected(lambda: custom.create_cluster_custom_object(*TOPO, topology(uniq("bad"), labels)), message)


def test_topology_needs_a_level(custom: client.CustomObjectsApi) -> None:
    _topo_rejected(custom, [], "a Topology must have 1 to 16 levels")


def test_topology_at_most_sixteen_levels(custom: client.CustomObjectsApi) -> None:
    _topo_rejected(custom, [f"example.com/level-{i}" for i in range(17)], "a Topology must have 1 to 16 levels")


def test_topology_levels_unique(custom: client.CustomObjectsApi) -> None:
    _topo_rejected(
        custom,
        ["topology.kubernetes.io/zone", "topology.kubernetes.io/rack", "topology.kubernetes.io/zone"],
        "level nodeLabels must be unique",
    )


def test_topology_hostname_only_last(custom: client.CustomObjectsApi) -> None:
    _topo_rejected(
        custom,
        ["kubernetes.io/hostname", "topology.kubernetes.io/rack"],
        "kubernetes.io/hostname may only be the last (narrowest) level",
    )


def test_topology_printer_columns(kube_cluster: Any, cluster_objects: Any) -> None:
    name = uniq("cols")
    cluster_objects(TOPO, topology(name, ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]))
    status, data = kube_cluster.request(f"/apis/kai.scheduler/v1alpha1/topologies/{name}", headers=TABLE)
    assert status == 200, data
    table = json.loads(data)
    cols = [c["name"] for c in table["columnDefinitions"]]
    assert cols[:3] == ["Name", "Widest", "Narrowest"]
    assert table["rows"][0]["cells"][1:3] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]


# ------------------------------------------------------------------ core API smoke test


def test_node_pod_binding(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    node_name = uniq("node")
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "4"}
    node = client.V1Node(
        metadata=client.V1ObjectMeta(
            name=node_name, labels={"kubernetes.io/hostname": node_name, "topology.kubernetes.io/zone": "z1"}
        ),
        status=client.V1NodeStatus(
            capacity=capacity,
            allocatable=copy.deepcopy(capacity),
            conditions=[client.V1NodeCondition(type="Ready", status="True")],
        ),
    )
    core.create_node(node)
    try:
        got = core.read_node(node_name)
        assert got.status.allocatable["nvidia.com/gpu"] == "4"
        assert not got.spec.taints, "TaintNodesByCondition must be disabled (no node controller removes it)"

        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="p0", labels={"kai.scheduler/queue": "default-queue"}),
            spec=client.V1PodSpec(
                scheduler_name="kai-scheduler",
                containers=[
                    client.V1Container(
                        name="c",
                        image="registry.invalid/none:0",
                        resources=client.V1ResourceRequirements(
                            requests={"cpu": "1", "nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "1"}
                        ),
                    )
                ],
            ),
        )
        core.create_namespaced_pod(namespace, pod)
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name="p0"),
            target=client.V1ObjectReference(kind="Node", name=node_name),
        )
        # The API answers with a Status, which the typed client cannot decode: read it raw.
        resp = core.create_namespaced_pod_binding("p0", namespace, binding, _preload_content=False)
        assert resp.status == 201, resp.data
        assert json.loads(resp.data)["status"] == "Success"
        bound = core.read_namespaced_pod("p0", namespace)
        assert bound.spec.node_name == node_name
        conds = {c.type: c.status for c in bound.status.conditions or []}
        assert conds.get("PodScheduled") == "True"
        assert bound.status.phase == "Pending", "no kubelet here: bound pods stay Pending"

        # A second bind of the same pod is refused: 409 Conflict.
        with pytest.raises(ApiException) as info:
            core.create_namespaced_pod_binding("p0", namespace, binding, _preload_content=False)
        assert info.value.status == 409

        core.delete_namespaced_pod("p0", namespace, grace_period_seconds=0)
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_pod("p0", namespace)
        assert gone.value.status == 404
    finally:
        core.delete_node(node_name)

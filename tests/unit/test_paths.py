"""The API paths table builds exactly the URLs the Kubernetes API serves (and the code used to spell out)."""

from __future__ import annotations

from scheduler.kube.paths import EVENTS, LEASES, NODES, POD_GROUPS, PODS, QUEUES, TOPOLOGIES, WATCHED


def test_collections_and_items() -> None:
    assert NODES.collection() == "/api/v1/nodes"
    assert PODS.collection() == "/api/v1/pods"
    assert PODS.collection("team") == "/api/v1/namespaces/team/pods"
    assert PODS.item("p", "team", "binding") == "/api/v1/namespaces/team/pods/p/binding"
    assert PODS.of_key("team/p") == "/api/v1/namespaces/team/pods/p"
    assert POD_GROUPS.collection() == "/apis/scheduling.run.ai/v2alpha2/podgroups"
    assert (
        POD_GROUPS.of_key("team/g", "status") == "/apis/scheduling.run.ai/v2alpha2/namespaces/team/podgroups/g/status"
    )
    assert QUEUES.of_key("q", "status") == "/apis/scheduling.run.ai/v2/queues/q/status"
    assert QUEUES.collection("ignored") == "/apis/scheduling.run.ai/v2/queues"  # cluster-scoped
    assert TOPOLOGIES.collection() == "/apis/kai.scheduler/v1alpha1/topologies"
    assert EVENTS.collection("team") == "/apis/events.k8s.io/v1/namespaces/team/events"
    assert LEASES.item("kai", "kube-system") == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kai"


def test_api_versions() -> None:
    assert PODS.api_version == "v1"
    assert POD_GROUPS.api_version == "scheduling.run.ai/v2alpha2"
    assert QUEUES.api_version == "scheduling.run.ai/v2"
    assert TOPOLOGIES.api_version == "kai.scheduler/v1alpha1"
    assert [r.kind for r in WATCHED] == [
        "Node",
        "Pod",
        "PriorityClass",
        "PodGroup",
        "Queue",
        "Topology",
        "Namespace",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "StorageClass",
        "CSINode",
        "PodDisruptionBudget",
    ]

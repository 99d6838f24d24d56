"""The grouping rules, per kind: a pod and its owner chain in, the PodGroup out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scheduler.api.podgroup import SubGroup, TopologyConstraint
from scheduler.grouper.chain import ObjectIndex, walk
from scheduler.grouper.objects import is_ours, needs_update, pod_patch, podgroup_object
from scheduler.grouper.rules import GrouperConfig, GroupingError, GroupSpec, group_pod

CFG = GrouperConfig()
NS = "team"


def obj(
    kind: str,
    name: str,
    uid: str,
    owner: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    api_version: str = "v1",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": uid}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec or {}}


def pod(name: str, owner: dict[str, Any] | None, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return obj("Pod", name, f"uid-{name}", owner, {"schedulerName": "kai-scheduler", **spec}, labels)


def indexed_job(name: str, uid: str, parallelism: int, completions: int) -> dict[str, Any]:
    spec = {"parallelism": parallelism, "completions": completions, "completionMode": "Indexed"}
    return obj("Job", name, uid, spec=spec, api_version="batch/v1")


def group(p: dict[str, Any], *objects: dict[str, Any], config: GrouperConfig = CFG) -> GroupSpec | None:
    chain = walk(p, ObjectIndex(objects).lookup)
    assert chain.missing is None
    return group_pod(p, chain.owners, config)


def test_pod_without_owner_is_not_grouped() -> None:
    assert group(pod("lone", None)) is None


def test_deployment_one_gang_per_pod_owned_by_the_pod() -> None:
    dep = obj(
        "Deployment",
        "web",
        "d1",
        spec={"replicas": 3},
        api_version="apps/v1",
        labels={"kai.scheduler/queue": "team-a", "app": "web"},
        annotations={"kai.scheduler/topology": "t1", "kai.scheduler/topology-preferred-placement": "zone"},
    )
    rs = obj("ReplicaSet", "web-5f", "r1", dep, api_version="apps/v1")
    g = group(pod("web-5f-abc", rs), rs, dep)
    assert g is not None
    assert (g.group.name, g.group.min_member, g.group.queue, g.group.priority_class) == (
        "pg-web-5f-abc-uid-web-5f-abc",
        1,
        "team-a",
        "inference",
    )
    assert (g.owner.kind, g.owner.name, g.owner.uid) == ("Pod", "web-5f-abc", "uid-web-5f-abc")
    assert g.group.constraint == TopologyConstraint("t1", "", "zone")
    assert ("app", "web") in g.labels
    obj_ = podgroup_object(g)
    assert obj_["metadata"]["annotations"]["kai.scheduler/topology"] == "t1"
    assert obj_["spec"]["topologyConstraint"] == {"topology": "t1", "preferredTopologyLevel": "zone"}
    assert is_ours(obj_)


def test_queue_falls_back_to_pod_label_then_default() -> None:
    job = obj("Job", "j", "j1", api_version="batch/v1")
    g = group(pod("j-a", job, {"kai.scheduler/queue": "pod-q"}), job)
    assert g is not None and g.group.queue == "pod-q"
    g = group(pod("j-a", job), job)
    assert g is not None and g.group.queue == "default-queue"


def test_priority_class_order_and_existence() -> None:
    job = obj("Job", "j", "j1", api_version="batch/v1", labels={"priorityClassName": "owner-pc"})
    p = pod("j-a", job, priorityClassName="pod-pc")
    g = group(p, job)
    assert g is not None and g.group.priority_class == "owner-pc"
    # a class that does not exist is passed over (KAI validates each candidate)
    g = group(p, job, config=GrouperConfig(known_priority_classes=frozenset({"pod-pc", "train"})))
    assert g is not None and g.group.priority_class == "pod-pc"
    g = group(p, job, config=GrouperConfig(known_priority_classes=frozenset({"train"})))
    assert g is not None and g.group.priority_class == "train"
    # the per-kind default is configurable
    plain = obj("Job", "k", "k1", api_version="batch/v1")
    g = group(pod("k-a", plain), plain, config=GrouperConfig(priority_classes={"Job": "build"}))
    assert g is not None and g.group.priority_class == "build"


def test_job_min_member() -> None:
    plain = obj("Job", "j", "j1", spec={"parallelism": 4}, api_version="batch/v1")
    g = group(pod("j-a", plain), plain)
    assert g is not None and (g.group.name, g.group.min_member, g.group.priority_class) == ("pg-j-j1", 1, "train")
    indexed = indexed_job("ix", "i1", 4, 4)
    g = group(pod("ix-0", indexed), indexed)
    assert g is not None and g.group.min_member == 4
    more = indexed_job("ix", "i1", 2, 8)
    g = group(pod("ix-0", more), more)
    assert g is not None and g.group.min_member == 1
    annotated = obj(
        "Job",
        "a",
        "a1",
        spec={"parallelism": 4},
        annotations={"kai.scheduler/batch-min-member": "3"},
        api_version="batch/v1",
    )
    g = group(pod("a-0", annotated), annotated)
    assert g is not None and g.group.min_member == 3
    bad = obj("Job", "b", "b1", annotations={"kai.scheduler/batch-min-member": "x"}, api_version="batch/v1")
    with pytest.raises(GroupingError, match="batch-min-member"):
        group(pod("b-0", bad), bad)


def test_cronjob_groups_each_run_as_its_job_with_the_cronjobs_metadata() -> None:
    cron = obj("CronJob", "nightly", "c1", api_version="batch/v1", labels={"kai.scheduler/queue": "batch-q"})
    job = obj("Job", "nightly-123", "j1", cron, api_version="batch/v1")
    g = group(pod("nightly-123-x", job), job, cron)
    assert g is not None
    assert (g.group.name, g.group.queue, g.owner.kind) == ("pg-nightly-123-j1", "batch-q", "Job")


def test_statefulset_min_member_needs_parallel_policy() -> None:
    sts = obj("StatefulSet", "db", "s1", spec={"replicas": 3}, api_version="apps/v1")
    g = group(pod("db-0", sts), sts)
    assert g is not None and (g.group.name, g.group.min_member) == ("pg-db-s1", 1)
    ann = {"kai.scheduler/min-member": "3"}
    ordered = obj("StatefulSet", "db", "s1", spec={"replicas": 3}, annotations=ann, api_version="apps/v1")
    with pytest.raises(GroupingError, match="Parallel"):
        group(pod("db-0", ordered), ordered)
    parallel = obj(
        "StatefulSet",
        "db",
        "s1",
        spec={"replicas": 3, "podManagementPolicy": "Parallel"},
        annotations=ann,
        api_version="apps/v1",
    )
    g = group(pod("db-0", parallel), parallel)
    assert g is not None and g.group.min_member == 3


def test_unknown_kind_default_and_annotation() -> None:
    thing = obj("Widget", "w", "w1", api_version="example.com/v1", annotations={"kai.scheduler/batch-min-member": "2"})
    g = group(pod("w-0", thing), thing)
    assert g is not None and (g.group.name, g.group.min_member, g.group.priority_class) == ("pg-w-w1", 2, "train")


def test_jobset_subgroups_per_replicated_job_and_replica() -> None:
    tmpl = {
        "metadata": {
            "annotations": {"kai.scheduler/topology": "t1", "kai.scheduler/topology-required-placement": "rack"}
        },
        "spec": {"parallelism": 2},
    }
    js = obj(
        "JobSet",
        "train",
        "js1",
        api_version="jobset.x-k8s.io/v1alpha2",
        spec={
            "replicatedJobs": [
                {"name": "driver", "replicas": 1, "template": {"spec": {}}},
                {"name": "workers", "replicas": 2, "template": tmpl},
            ]
        },
    )
    job = obj("Job", "train-workers-1", "jb", js, api_version="batch/v1")
    p = pod(
        "train-workers-1-0",
        job,
        {"jobset.sigs.k8s.io/replicatedjob-name": "workers", "jobset.sigs.k8s.io/job-index": "1"},
    )
    g = group(p, job, js)
    assert g is not None
    assert (g.group.name, g.group.min_member, g.group.min_sub_group, g.pod_subgroup) == (
        "pg-train-js1",
        None,
        2,
        "workers-replica-1",
    )
    rack = TopologyConstraint("t1", "rack", "")
    assert g.group.sub_groups == (
        SubGroup("driver", None, "", TopologyConstraint(), min_sub_group=1),
        SubGroup("driver-replica-0", 1, "driver", TopologyConstraint()),
        SubGroup("workers", None, "", TopologyConstraint(), min_sub_group=2),
        SubGroup("workers-replica-0", 2, "workers", rack),
        SubGroup("workers-replica-1", 2, "workers", rack),
    )
    assert pod_patch(g) == {
        "metadata": {
            "annotations": {"pod-group-name": "pg-train-js1"},
            "labels": {"kai.scheduler/subgroup-name": "workers-replica-1"},
        }
    }


def test_trainjob_is_grouped_as_its_jobset() -> None:
    tj = obj("TrainJob", "tj", "t1", api_version="trainer.kubeflow.org/v1alpha1", labels={"kai.scheduler/queue": "q"})
    js = obj(
        "JobSet",
        "tj",
        "js1",
        tj,
        api_version="jobset.x-k8s.io/v1alpha2",
        spec={"replicatedJobs": [{"name": "node", "replicas": 1, "template": {"spec": {"parallelism": 4}}}]},
    )
    job = obj("Job", "tj-node-0", "jb", js, api_version="batch/v1")
    p = pod("tj-node-0-0", job, {"jobset.sigs.k8s.io/replicatedjob-name": "node", "jobset.sigs.k8s.io/job-index": "0"})
    g = group(p, job, js, tj)
    assert g is not None and (g.group.name, g.group.queue, g.owner.kind, g.group.min_sub_group) == (
        "pg-tj-js1",
        "q",
        "JobSet",
        1,
    )


def test_leaderworkerset_one_gang_per_group() -> None:
    lws = obj(
        "LeaderWorkerSet",
        "llm",
        "l1",
        api_version="leaderworkerset.x-k8s.io/v1",
        spec={"replicas": 2, "leaderWorkerTemplate": {"size": 4}},
    )
    leader_sts = obj("StatefulSet", "llm", "s1", lws, api_version="apps/v1")
    leader = pod(
        "llm-1",
        leader_sts,
        {"leaderworkerset.sigs.k8s.io/group-index": "1", "leaderworkerset.sigs.k8s.io/worker-index": "0"},
    )
    worker_sts = obj("StatefulSet", "llm-1", "s2", leader, api_version="apps/v1")
    worker = pod(
        "llm-1-2",
        worker_sts,
        {"leaderworkerset.sigs.k8s.io/group-index": "1", "leaderworkerset.sigs.k8s.io/worker-index": "2"},
    )
    for p, sub in ((leader, "leader"), (worker, "workers")):
        g = group(p, lws, leader_sts, leader, worker_sts)
        assert g is not None
        assert (g.group.name, g.group.min_member, g.pod_subgroup, g.group.priority_class) == (
            "pg-llm-l1-group-1",
            4,
            sub,
            "inference",
        )
        assert [(s.name, s.min_member) for s in g.group.sub_groups] == [("leader", 1), ("workers", 3)]


def test_leaderworkerset_leader_ready_places_the_leader_alone_first() -> None:
    lws = obj(
        "LeaderWorkerSet",
        "llm",
        "l1",
        api_version="leaderworkerset.x-k8s.io/v1",
        spec={"startupPolicy": "LeaderReady", "leaderWorkerTemplate": {"size": 4}},
    )
    sts = obj("StatefulSet", "llm", "s1", lws, api_version="apps/v1")
    leader = pod(
        "llm-0", sts, {"leaderworkerset.sigs.k8s.io/group-index": "0", "leaderworkerset.sigs.k8s.io/worker-index": "0"}
    )
    g = group(leader, lws, sts)
    assert g is not None and g.group.min_member == 1


def lws_group(
    lws_spec: dict[str, Any], size: int, annotations: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """A LeaderWorkerSet's replica group 0 as the LWS operator makes it: the leader StatefulSet owns the leader
    pod, which owns the workers' StatefulSet, which owns the workers. Returns the LWS and, per pod, its chain."""
    lws = obj("LeaderWorkerSet", "llm", "l1", api_version="leaderworkerset.x-k8s.io/v1", spec=lws_spec,
              annotations=annotations)  # fmt: skip
    leader_sts = obj("StatefulSet", "llm", "s1", lws, api_version="apps/v1")
    index = {"leaderworkerset.sigs.k8s.io/group-index": "0"}
    leader = pod("llm-0", leader_sts, {**index, "leaderworkerset.sigs.k8s.io/worker-index": "0"})
    worker_sts = obj("StatefulSet", "llm-0", "s2", leader, api_version="apps/v1")
    out = [(leader, [lws, leader_sts])]
    for w in range(1, size):
        p = pod(f"llm-0-{w}", worker_sts, {**index, "leaderworkerset.sigs.k8s.io/worker-index": str(w)})
        out.append((p, [lws, leader_sts, leader, worker_sts]))
    return lws, out


def lws_leaves(lws_spec: dict[str, Any], size: int, annotations: dict[str, str] | None = None) -> list[str]:
    """Each pod's leaf subgroup, after checking that every pod sees the same PodGroup and that every leaf's
    minMember is the number of pods in it."""
    _, pods = lws_group(lws_spec, size, annotations)
    specs = [group(p, *objects) for p, objects in pods]
    first = specs[0]
    assert first is not None and first.group.min_member == size
    leaves = []
    for g in specs:
        assert g is not None
        assert (g.group.name, g.group.sub_groups, g.group.min_member) == (
            first.group.name,
            first.group.sub_groups,
            first.group.min_member,
        )
        leaves.append(g.pod_subgroup)
    parents = {s.parent for s in first.group.sub_groups}
    for s in first.group.sub_groups:
        if s.name not in parents:
            assert s.min_member == leaves.count(s.name), (s, leaves)
    return leaves


def test_leaderworkerset_segments_split_the_group_as_lws_does() -> None:
    """subGroupPolicy.subGroupSize: one subgroup per LWS subgroup, named as KAI names them. Size 5 by 2
    (size - 1 divisible): the leader is an extra member of segment 0 (leader, w1, w2), then (w3, w4)."""
    spec = {"leaderWorkerTemplate": {"size": 5, "subGroupPolicy": {"subGroupSize": 2}}}
    leaves = lws_leaves(spec, 5)
    assert leaves == ["leader", "workers", "workers", "segment-1", "segment-1"]
    _, pods = lws_group(spec, 5)
    g = group(pods[0][0], *pods[0][1])
    assert g is not None
    assert [(s.name, s.min_member, s.parent) for s in g.group.sub_groups] == [
        ("segment-0", 3, ""), ("segment-1", 2, ""),
        ("leader", 1, "segment-0"), ("workers", 2, "segment-0")]  # fmt: skip
    # size 4 by 2 (size divisible): (leader, w1), (w2, w3)
    assert lws_leaves({"leaderWorkerTemplate": {"size": 4, "subGroupPolicy": {"subGroupSize": 2}}}, 4) == [
        "leader", "workers", "segment-1", "segment-1"]  # fmt: skip
    # size 3 by 2, one segment: (leader, w1, w2); minMember 3 (KAI's would say 4 and the gang never starts)
    assert lws_leaves({"leaderWorkerTemplate": {"size": 3, "subGroupPolicy": {"subGroupSize": 2}}}, 3) == [
        "leader", "workers", "workers"]  # fmt: skip
    # LeaderExcluded: the leader in no segment, (w1, w2), (w3, w4)
    excluded = {"subGroupSize": 2, "subGroupPolicyType": "LeaderExcluded"}
    assert lws_leaves({"leaderWorkerTemplate": {"size": 5, "subGroupPolicy": excluded}}, 5) == [
        "leader", "segment-0", "segment-0", "segment-1", "segment-1"]  # fmt: skip


def test_leaderworkerset_segment_size_and_topology_from_annotations() -> None:
    """Without subGroupPolicy, KAI's kai.scheduler/segment-size (on the LWS, else its workerTemplate) makes the
    segments; kai.scheduler/segment-topology-*-placement gives each segment its own topology constraint."""
    notes = {
        "kai.scheduler/segment-size": "2",
        "kai.scheduler/segment-topology-required-placement": "rack",
        "kai.scheduler/segment-topology-preferred-placement": "host",
    }
    spec = {"leaderWorkerTemplate": {"size": 5, "workerTemplate": {"metadata": {"annotations": notes}}}}
    assert lws_leaves(spec, 5, {"kai.scheduler/topology": "topo"}) == [
        "leader", "workers", "workers", "segment-1", "segment-1"]  # fmt: skip
    _, pods = lws_group(spec, 5, {"kai.scheduler/topology": "topo"})
    g = group(pods[3][0], *pods[3][1])
    assert g is not None
    by_name = {s.name: s.constraint for s in g.group.sub_groups}
    assert by_name["segment-0"] == by_name["segment-1"] == TopologyConstraint("topo", "rack", "host")
    assert by_name["leader"] == by_name["workers"] == TopologyConstraint()
    # on the LWS itself
    lws_notes = {"kai.scheduler/segment-size": "3"}
    assert lws_leaves({"leaderWorkerTemplate": {"size": 4}}, 4, lws_notes) == [
        "leader",
        "workers",
        "workers",
        "workers",
    ]


def test_leaderworkerset_segment_errors_name_the_fix() -> None:
    for spec, fragment in (
        ({"size": 3, "subGroupPolicy": {"subGroupSize": 4}}, "between 1 and the group size 3"),
        ({"size": 4, "subGroupPolicy": {"subGroupSize": 2, "subGroupPolicyType": "LeaderExcluded"}}, "divisible"),
        ({"size": 3, "subGroupPolicy": {"subGroupSize": 2, "subGroupPolicyType": "Other"}}, "subGroupPolicyType"),
    ):
        _, pods = lws_group({"leaderWorkerTemplate": spec}, 3)
        with pytest.raises(GroupingError, match=fragment):
            group(pods[1][0], *pods[1][1])


def test_leaderworkerset_size_from_the_pods_revision() -> None:
    """The pod's leaderworkerset.sigs.k8s.io/size (the LWS revision that made it) wins over the spec's size,
    so a group made before a resize keeps its own size."""
    _, pods = lws_group({"leaderWorkerTemplate": {"size": 4}}, 2)
    worker, objects = pods[1]
    worker["metadata"]["annotations"] = {"leaderworkerset.sigs.k8s.io/size": "2"}
    g = group(worker, *objects)
    assert g is not None and g.group.min_member == 2
    assert [(s.name, s.min_member) for s in g.group.sub_groups] == [("leader", 1), ("workers", 1)]


def test_leaderworkerset_worker_without_index_label_is_told_by_its_owners() -> None:
    """A worker is owned (through its StatefulSet) by its leader pod: without a worker-index label it is
    still a worker, and the leader without one is still the leader."""
    _, pods = lws_group({"leaderWorkerTemplate": {"size": 3}}, 3)
    for p, _ in pods:
        del p["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"]
    subs = []
    for p, objects in pods:
        g = group(p, *objects)
        assert g is not None
        subs.append(g.pod_subgroup)
    assert subs == ["leader", "workers", "workers"]


def test_leaderworkerset_leader_ready_worker_and_placed_leader_need_the_group() -> None:
    """LeaderReady: once the leader is placed (its workers exist only then), the gang is the whole group."""
    spec = {"startupPolicy": "LeaderReady", "leaderWorkerTemplate": {"size": 3, "subGroupPolicy": {"subGroupSize": 2}}}
    _, pods = lws_group(spec, 3)
    leader, objects = pods[0]
    alone = group(leader, *objects)
    assert alone is not None and (alone.group.min_member, alone.pod_subgroup) == (1, "leader")
    assert [s.name for s in alone.group.sub_groups] == ["leader"]
    leader["spec"]["nodeName"] = "n1"
    for p, objects in pods:
        g = group(p, *objects)
        assert g is not None and g.group.min_member == 3 and g.group.name == alone.group.name
        assert [s.name for s in g.group.sub_groups] == ["segment-0", "leader", "workers"]


def test_pytorchjob_counts_every_replica_with_a_subgroup_per_type() -> None:
    pj = obj(
        "PyTorchJob",
        "pt",
        "p1",
        api_version="kubeflow.org/v1",
        spec={"pytorchReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}},
    )
    g = group(pod("pt-worker-0", pj, {"training.kubeflow.org/replica-type": "worker"}), pj)
    assert g is not None
    assert (g.group.min_member, g.pod_subgroup, g.group.priority_class) == (4, "worker", "train")
    assert [(s.name, s.min_member) for s in g.group.sub_groups] == [("master", 1), ("worker", 3)]
    elastic = obj(
        "PyTorchJob",
        "pt",
        "p1",
        api_version="kubeflow.org/v1",
        spec={
            "pytorchReplicaSpecs": {"Worker": {"replicas": 8}},
            "runPolicy": {"schedulingPolicy": {"minAvailable": 2}},
        },
    )
    g = group(pod("pt-worker-0", elastic), elastic)
    assert g is not None and (g.group.min_member, g.group.sub_groups) == (2, ())


def test_mpijob_launcher_created_late_is_not_counted() -> None:
    mpi = obj(
        "MPIJob",
        "m",
        "m1",
        api_version="kubeflow.org/v2beta1",
        spec={
            "launcherCreationPolicy": "WaitForWorkersReady",
            "mpiReplicaSpecs": {"Launcher": {"replicas": 1}, "Worker": {"replicas": 2}},
        },
    )
    g = group(pod("m-worker-0", mpi), mpi)
    assert g is not None and g.group.min_member == 2
    tf = obj(
        "TFJob",
        "tf",
        "t1",
        api_version="kubeflow.org/v1",
        spec={"tfReplicaSpecs": {"PS": {"replicas": 1}, "Worker": {"replicas": 2}}},
    )
    g = group(pod("tf-ps-0", tf, {"training.kubeflow.org/replica-type": "ps"}), tf)
    assert g is not None and (g.group.min_member, g.pod_subgroup) == (3, "ps")


def test_raycluster_head_and_worker_groups() -> None:
    """A suspended worker group (KubeRay's `suspend`: its pods are deleted) is not waited for."""
    rc = obj(
        "RayCluster",
        "rc",
        "r1",
        api_version="ray.io/v1",
        labels={"ray.io/priority-class-name": "build"},
        spec={
            "headGroupSpec": {"template": {}},
            "workerGroupSpecs": [
                {"groupName": "gpu", "replicas": 4, "minReplicas": 2, "numOfHosts": 2},
                {"groupName": "cpu", "replicas": 3},
                {"groupName": "off", "replicas": 5, "suspend": True},
            ],
        },
    )
    g = group(pod("rc-gpu-0", rc, {"ray.io/group": "gpu"}), rc)
    assert g is not None
    assert (g.group.min_member, g.pod_subgroup, g.group.priority_class) == (1 + 4 + 3, "gpu", "build")
    assert [(s.name, s.min_member) for s in g.group.sub_groups] == [("headgroup", 1), ("gpu", 4), ("cpu", 3)]


def test_rayjob_is_named_for_the_job_and_sized_by_its_cluster() -> None:
    rj = obj("RayJob", "rj", "j1", api_version="ray.io/v1")
    rc = obj(
        "RayCluster",
        "rj-abc",
        "r1",
        rj,
        api_version="ray.io/v1",
        spec={"workerGroupSpecs": [{"groupName": "w", "replicas": 2}]},
    )
    g = group(pod("rj-abc-head", rc, {"ray.io/group": "headgroup"}), rc, rj)
    assert g is not None and (g.group.name, g.group.min_member, g.pod_subgroup) == ("pg-rj-j1", 3, "headgroup")


def _dgd() -> dict[str, Any]:
    return obj(
        "DynamoGraphDeployment",
        "vllm",
        "g1",
        api_version="nvidia.com/v1alpha1",
        annotations={
            "kai.scheduler/topology": "topology-1",
            "kai.scheduler/topology-required-placement": "topology.kubernetes.io/zone",
        },
        spec={
            "services": {
                "Frontend": {"replicas": 1},
                "VllmPrefillWorker": {"replicas": 2},
                "VllmDecodeWorker": {"replicas": 1, "multinode": {"nodeCount": 2}},
            }
        },
    )


def test_dynamo_graph_is_one_gang_with_a_subgroup_per_service() -> None:
    dgd = _dgd()
    dcd = obj("DynamoComponentDeployment", "vllm-vllmprefillworker", "c1", dgd, api_version="nvidia.com/v1alpha1")
    dep = obj("Deployment", "vllm-vllmprefillworker", "d1", dcd, api_version="apps/v1")
    rs = obj("ReplicaSet", "vllm-vllmprefillworker-7d", "r1", dep, api_version="apps/v1")
    by_label = pod("p-0", rs, {"nvidia.com/dynamo-component": "VllmPrefillWorker"})
    by_owner = pod("p-1", rs)
    for p in (by_label, by_owner):
        g = group(p, rs, dep, dcd, dgd)
        assert g is not None
        assert (g.group.name, g.group.min_member, g.pod_subgroup, g.group.priority_class) == (
            "pg-vllm-g1",
            5,
            "vllmprefillworker",
            "inference",
        )
        assert g.group.constraint == TopologyConstraint("topology-1", "topology.kubernetes.io/zone", "")
        assert [(s.name, s.min_member) for s in g.group.sub_groups] == [
            ("frontend", 1),
            ("vllmdecodeworker", 2),
            ("vllmprefillworker", 2),
        ]


def test_dynamo_pod_of_no_service_is_an_error_naming_the_services() -> None:
    dgd = _dgd()
    dep = obj("Deployment", "other", "d1", dgd, api_version="apps/v1")
    with pytest.raises(GroupingError, match="Frontend, VllmDecodeWorker, VllmPrefillWorker"):
        group(pod("x", dep), dep, dgd)


def test_update_patch_after_scale_and_none_when_current() -> None:
    job = indexed_job("ix", "i1", 4, 4)
    g = group(pod("ix-0", job), job)
    assert g is not None
    current = podgroup_object(g)
    assert needs_update(current, g) is None
    scaled = indexed_job("ix", "i1", 6, 6)
    g2 = group(pod("ix-0", scaled), scaled)
    assert g2 is not None
    assert needs_update(current, g2) == {"spec": {"minMember": 6}}


def test_walk_reports_the_missing_owner() -> None:
    dep = obj("Deployment", "web", "d1", api_version="apps/v1")
    rs = obj("ReplicaSet", "web-5f", "r1", dep, api_version="apps/v1")
    chain = walk(pod("web-5f-a", rs), ObjectIndex([rs]).lookup)
    assert [o["kind"] for o in chain.owners] == ["ReplicaSet"]
    assert chain.missing is not None and chain.missing.describe() == "Deployment team/web"


# ------------------------------------------------------------------ the in-memory backend (simulate, replay)
def _node(gpu: int = 8) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "32", "memory": "64Gi", "nvidia.com/gpu": str(gpu)}},
    }


def _gpu_pod(name: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    p = pod(name, owner)
    p["spec"]["containers"] = [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]
    return p


def _simulate(objects: list[dict[str, Any]], **config: Any) -> tuple[dict[str, Any], Any]:
    from scheduler.backends.simulation import simulate
    from scheduler.framework.config import SchedulerConfig

    result = simulate(objects, SchedulerConfig(**config))
    return result.to_json(), result.backend


def test_simulate_joins_a_podgroup_someone_else_wrote_and_never_changes_it() -> None:
    job = indexed_job("ix", "i1", 2, 2)
    theirs = {
        "apiVersion": "scheduling.run.ai/v2alpha2",
        "kind": "PodGroup",
        "metadata": {"name": "pg-ix-i1", "namespace": NS},
        "spec": {"minMember": 1, "queue": "default-queue"},
    }
    out, backend = _simulate([_node(), job, theirs, _gpu_pod("ix-0", job), _gpu_pod("ix-1", job)])
    assert sorted(out["placements"]) == [f"{NS}/ix-0", f"{NS}/ix-1"]
    assert backend.objects[("PodGroup", NS, "pg-ix-i1")]["spec"] == {"minMember": 1, "queue": "default-queue"}
    assert backend.objects[("Pod", NS, "ix-0")]["metadata"]["annotations"]["pod-group-name"] == "pg-ix-i1"


def test_simulate_updates_its_own_podgroup_after_a_scale() -> None:
    job = indexed_job("ix", "i1", 3, 3)
    spec = group(_gpu_pod("ix-0", job), job)
    assert spec is not None
    ours = podgroup_object(spec)  # made when the Job had 3 ranks
    scaled = indexed_job("ix", "i1", 2, 2)
    out, backend = _simulate([_node(2), scaled, ours, _gpu_pod("ix-0", scaled), _gpu_pod("ix-1", scaled)])
    assert backend.objects[("PodGroup", NS, "pg-ix-i1")]["spec"]["minMember"] == 2
    assert len(out["placements"]) == 2


def test_grouping_off_keeps_gangs_of_one() -> None:
    job = indexed_job("ix", "i1", 2, 2)
    out, backend = _simulate([_node(1), job, _gpu_pod("ix-0", job), _gpu_pod("ix-1", job)], grouping=False)
    assert len(out["placements"]) == 1 and ("PodGroup", NS, "pg-ix-i1") not in backend.objects


def test_replay_holds_a_pod_the_daemons_grouper_held() -> None:
    p = _gpu_pod("held", obj("Job", "gone", "g1", api_version="batch/v1"))
    p["metadata"]["annotations"] = {"kai.scheduler/awaiting-pod-group": "pod held: waiting for its PodGroup"}
    out, _ = _simulate([_node(), p])  # its owner is not in the snapshot
    assert out["placements"] == {}
    assert out["unscheduled"][f"{NS}/held"] == {
        "reason": "AwaitingPodGroup",
        "message": "pod held: waiting for its PodGroup",
    }


def test_a_daemon_snapshot_carries_held_pods_into_replay() -> None:
    from scheduler.backends.memory import MemoryBackend
    from scheduler.debug.history import CycleEntry
    from scheduler.debug.snapshot import snapshot_document
    from scheduler.framework.config import SchedulerConfig
    from scheduler.framework.cycle import run_session

    owner = obj("Job", "j", "j1", api_version="batch/v1")
    backend = MemoryBackend([_node(), _gpu_pod("j-0", owner)])  # the owner is only in the cluster, not here
    backend.held[f"{NS}/j-0"] = ("AwaitingPodGroup", "pod j-0: waiting for its PodGroup pg-j-j1")
    snap = backend.snapshot()
    record = run_session(snap, SchedulerConfig(), now=1.0, cycle=1)
    assert record.decisions[f"{NS}/j-0"].reason == "AwaitingPodGroup"
    raw = {(k, f"{ns}/{name}" if ns else name): json.dumps(o).encode() for (k, ns, name), o in backend.objects.items()}
    doc = snapshot_document(CycleEntry(record, 1.0, (), {}, snapshot=snap, raw=raw), SchedulerConfig())
    out, _ = _simulate(doc["items"])
    assert out["placements"] == {}
    assert out["unscheduled"][f"{NS}/j-0"]["message"] == "pod j-0: waiting for its PodGroup pg-j-j1"


def test_dynamo_graph_through_grove_finds_the_service_from_the_podclique() -> None:
    dgd = _dgd()
    pcs = obj("PodCliqueSet", "vllm", "s1", dgd, api_version="grove.io/v1alpha1")
    clique = obj("PodClique", "vllm-0-vllmdecodeworker", "c1", pcs, api_version="grove.io/v1alpha1")
    g = group(pod("vllm-0-vllmdecodeworker-x", clique), clique, pcs, dgd)
    assert g is not None and (g.group.name, g.pod_subgroup, g.group.min_member) == ("pg-vllm-g1", "vllmdecodeworker", 5)


def test_the_daemons_grouper_holds_a_pod_no_pass_has_seen_yet() -> None:
    """A pod the watch brings in after the grouper's pass is held in the next snapshot (never a gang of
    one meanwhile); once annotated it is not. (Observing needs no API server: nothing is sent.)"""
    from scheduler.grouper.live import LiveGrouper
    from scheduler.kube.client import KubeClient

    grouper = LiveGrouper(KubeClient("https://127.0.0.1:9"), "kai-scheduler")
    try:
        job = obj("Job", "j", "j1", api_version="batch/v1")
        fresh = pod("j-0", job)
        grouper.observe("Pod", fresh, deleted=False)
        grouper.observe("Pod", pod("lone", None), deleted=False)  # no owner: a gang of one, never held
        assert grouper.waiting() == {
            f"{NS}/j-0": ("AwaitingPodGroup", "pod j-0: waiting for the grouper to read its owners")
        }
        joined = {**fresh, "metadata": {**fresh["metadata"], "annotations": {"pod-group-name": "pg-j-j1"}}}
        grouper.observe("Pod", joined, deleted=False)
        assert grouper.waiting() == {}
    finally:
        grouper.close()


def test_the_daemons_grouper_keeps_watched_owners_and_notices_what_changes_a_gang() -> None:
    """The watched workloads (owner_event): kept without pod specs or status, a status update is no change,
    a spec change or a deletion is; a relist drops what it lacks. (No API server: nothing is sent.)"""
    from scheduler.grouper.chain import Ref
    from scheduler.grouper.live import LiveGrouper, _Pass
    from scheduler.kube.client import KubeClient

    grouper = LiveGrouper(KubeClient("https://127.0.0.1:9"), "kai-scheduler")
    try:
        job = indexed_job("j", "j1", 3, 3)
        job["spec"]["template"] = {"spec": {"containers": [{"name": "c", "image": "x"}]}}
        job["status"] = {"active": 3}
        grouper.owner_event("LIST", "Job", [])
        grouper.owner_event("SYNC", "Job", [job])
        kept = grouper.owners[("Job", NS, "j")]
        assert kept["spec"]["template"] == {"spec": {}} and "status" not in kept and kept["apiVersion"] == "batch/v1"
        lookup = grouper._lookup(_Pass())
        assert lookup(Ref("batch/v1", "Job", "j", "j1", NS)) is kept  # from memory: no GET
        grouper._changed.clear()
        grouper.owner_event("MODIFIED", "Job", {**job, "status": {"active": 2}})
        assert not grouper._changed
        grouper.owner_event("MODIFIED", "Job", {**job, "spec": {**job["spec"], "parallelism": 2}})
        assert grouper._changed == {"j1"} and grouper.owners[("Job", NS, "j")]["spec"]["parallelism"] == 2
        grouper._changed.clear()
        grouper.owner_event("LIST", "Job", [])
        grouper.owner_event("SYNC", "Job", [])
        assert grouper._changed == grouper._gone == {"j1"} and not grouper.owners
    finally:
        grouper.close()


def grove_objects() -> tuple[dict[str, Any], dict[str, Any]]:
    """A PodCliqueSet of 2 replicas: a standalone frontend clique, and a scaling group `prefill` (a leader and
    workers, 3 replicas of which 2 are the guaranteed minimum); and its PodCliqueScalingGroup of replica 1."""
    spec = {
        "replicas": 2,
        "template": {
            "cliques": [
                {"name": "frontend", "spec": {"replicas": 2}},
                {"name": "leader", "spec": {"replicas": 1}},
                {"name": "worker", "spec": {"replicas": 3, "minAvailable": 2}},
            ],
            "podCliqueScalingGroups": [
                {"name": "prefill", "cliqueNames": ["leader", "worker"], "replicas": 3, "minAvailable": 2}
            ],
        },
    }
    pcs = obj("PodCliqueSet", "inf", "g1", api_version="grove.io/v1alpha1", spec=spec)
    pcsg = obj("PodCliqueScalingGroup", "inf-1-prefill", "sg1", pcs, api_version="grove.io/v1alpha1")
    return pcs, pcsg


def grove_pod(clique: str, owner: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    pclq = obj("PodClique", clique, f"pc-{clique}", owner, api_version="grove.io/v1alpha1")
    return pod(f"{clique}-x", pclq), pclq


def test_grove_podcliqueset_base_gang_holds_standalone_cliques_and_the_minimum_of_each_scaling_group() -> None:
    pcs, pcsg = grove_objects()
    front, front_clq = grove_pod("inf-1-frontend", pcs)
    worker, worker_clq = grove_pod("inf-1-prefill-1-worker", pcsg)
    a = group(front, front_clq, pcs)
    b = group(worker, worker_clq, pcsg, pcs)
    assert a is not None and b is not None
    assert (a.group.name, a.group.min_member, a.group.priority_class, a.owner.kind) == (
        "pg-inf-1-g1",
        8,
        "inference",
        "PodCliqueSet",
    )
    assert [(s.name, s.min_member) for s in a.group.sub_groups] == [
        ("inf-1-frontend", 2),
        ("inf-1-prefill-0-leader", 1),
        ("inf-1-prefill-0-worker", 2),
        ("inf-1-prefill-1-leader", 1),
        ("inf-1-prefill-1-worker", 2),
    ]
    assert (b.group.name, b.group.sub_groups, b.group.min_member) == (
        a.group.name,
        a.group.sub_groups,
        a.group.min_member,
    )
    assert (a.pod_subgroup, b.pod_subgroup) == ("inf-1-frontend", "inf-1-prefill-1-worker")


def test_grove_scaling_group_replica_above_its_minimum_is_a_gang_of_its_own() -> None:
    pcs, pcsg = grove_objects()
    leader, clq = grove_pod("inf-1-prefill-2-leader", pcsg)
    g = group(leader, clq, pcsg, pcs)
    assert g is not None
    assert (g.group.name, g.group.min_member, g.pod_subgroup) == ("pg-inf-1-prefill-0-g1", 3, "inf-1-prefill-2-leader")
    assert [(s.name, s.min_member) for s in g.group.sub_groups] == [
        ("inf-1-prefill-2-leader", 1),
        ("inf-1-prefill-2-worker", 2),
    ]


def test_grove_pod_outside_its_cliques_waits_with_the_reason() -> None:
    pcs, _ = grove_objects()
    with pytest.raises(GroupingError, match="not owned by one of its PodCliques"):
        group(pod("stray", pcs), pcs)
    p, clq = grove_pod("inf-0-other", pcs)
    with pytest.raises(GroupingError, match="no clique of its template"):
        group(p, clq, pcs)

"""LeaderWorkerSets grouped by the daemon on the real API server: one gang per replica group.

The LWS operator cannot run here, so a test-side controller (`LwsController`) writes what it and its pod
webhook write: the leader StatefulSet (owned by the LWS), each leader pod (owned by it, labelled with its group
index and worker index 0, annotated with the group size), each group's worker StatefulSet (owned by the leader
pod) and its workers (labelled with their worker index). It writes the pods itself rather than leaving them to
the StatefulSet controller, which would make them without the webhook's labels; so this module runs no
kube-controller-manager (its own module: test_grouper_daemon.py's is started per module). The LWS CRD is the
minimal one of tests/integration/crds: the Go module proxy does not serve sigs.k8s.io/lws."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.test_daemon import RACK, Daemons, Kube, daemon, kube, wait_for
from tests.integration.test_grouper_daemon import bound, create, owner_ref, podgroups, pods_of, template, workload_crds
from tests.upstream_crds import CrdSet

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (daemon, kube, workload_crds)  # requested by name below

LWS_API = "/apis/leaderworkerset.x-k8s.io/v1"
GROUP_INDEX, WORKER_INDEX = "leaderworkerset.sigs.k8s.io/group-index", "leaderworkerset.sigs.k8s.io/worker-index"
SIZE = "leaderworkerset.sigs.k8s.io/size"
SUBGROUP = "kai.scheduler/subgroup-name"


@dataclass(slots=True)
class LwsController:
    """What the LWS operator and its pod webhook make for one LeaderWorkerSet (see the module docstring)."""

    k: Kube
    lws: dict[str, Any]
    leaders: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.lws["metadata"]["name"])

    def _pod(self, name: str, owner: dict[str, Any], labels: dict[str, str], notes: dict[str, str]) -> dict[str, Any]:
        t = template(self.k, 1, labels)
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": notes, "ownerReferences": owner_ref(owner)},
            "spec": t["spec"],
        }
        return self.k.req("POST", f"/api/v1/namespaces/{self.k.ns}/pods", body=body)

    def _statefulset(self, name: str, owner: dict[str, Any], replicas: int) -> dict[str, Any]:
        sel = {"leaderworkerset.sigs.k8s.io/name": self.name, "lws-sts": name}
        return create(self.k, "/apis/apps/v1", "statefulsets", {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "ownerReferences": owner_ref(owner)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": sel}, "template": template(self.k, 1, sel)},
        })  # fmt: skip

    def leaders_for(self, replicas: int) -> None:
        sts = self._statefulset(self.name, self.lws, replicas)
        size = str(self.lws["spec"]["leaderWorkerTemplate"]["size"])
        for g in range(replicas):
            labels = {"leaderworkerset.sigs.k8s.io/name": self.name, GROUP_INDEX: str(g), WORKER_INDEX: "0"}
            self.leaders[g] = self._pod(f"{self.name}-{g}", sts, labels, {SIZE: size})

    def workers_for(self, g: int) -> None:
        size = int(self.lws["spec"]["leaderWorkerTemplate"]["size"])
        sts = self._statefulset(f"{self.name}-{g}", self.leaders[g], size - 1)
        for w in range(1, size):
            labels = {"leaderworkerset.sigs.k8s.io/name": self.name, GROUP_INDEX: str(g), WORKER_INDEX: str(w)}
            self._pod(f"{self.name}-{g}-{w}", sts, labels, {SIZE: str(size)})


def new_lws(
    k: Kube, name: str, replicas: int, size: int, annotations: dict[str, str] | None = None, **spec: Any
) -> LwsController:
    lwt: dict[str, Any] = {"size": size, **spec.pop("template", {})}
    # the schema requires a worker pod template with its containers (this controller makes the pods itself)
    worker = lwt.setdefault("workerTemplate", {})
    worker.setdefault("spec", {"containers": [{"name": "worker", "image": "registry.k8s.io/pause:3.10"}]})
    lws = create(k, LWS_API, "leaderworkersets", {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"replicas": replicas, "leaderWorkerTemplate": lwt, **spec},
    })  # fmt: skip
    return LwsController(k, lws)


def test_each_replica_group_is_one_gang(kube: Kube, daemon: Daemons, workload_crds: CrdSet) -> None:
    """Two groups of 3 (leader + 2 workers, 1 GPU each) and one 4-GPU node: one group starts whole, the other
    waits whole (no leader or worker of it starts alone), each its own PodGroup."""
    kube.node("lw-a", 4)
    daemon.start()
    ctl = new_lws(kube, "llm", 2, 3)
    ctl.leaders_for(2)
    for g in range(2):
        ctl.workers_for(g)
    uid = ctl.lws["metadata"]["uid"]
    names = {g: f"pg-llm-{uid}-group-{g}" for g in range(2)}

    def one_group_bound() -> str | None:
        pods = pods_of(kube, "llm-")
        on = {g: [n for n, p in pods.items() if p["metadata"]["labels"][GROUP_INDEX] == str(g)
                  and p["spec"].get("nodeName")] for g in range(2)}  # fmt: skip
        done = [g for g in range(2) if len(on[g]) == 3]
        return str(done[0]) if len(done) == 1 else None  # (a str: group 0 is falsy)

    placed = int(wait_for(one_group_bound, "one replica group bound whole", daemon))
    waiting = 1 - placed
    wait_for(lambda: kube.condition_reason(names[waiting]), "the other group's Unschedulable condition", daemon)
    daemon.wait_cycles(daemon.procs[-1], 2)
    assert not any(
        p["spec"].get("nodeName")
        for p in pods_of(kube, "llm-").values()
        if p["metadata"]["labels"][GROUP_INDEX] == str(waiting)
    ), "a member of the waiting group started alone"
    groups = podgroups(kube)
    for g, name in names.items():
        pg = groups[name]
        assert pg["spec"]["minMember"] == 3, pg["spec"]
        assert [(s["name"], s["minMember"]) for s in pg["spec"]["subGroups"]] == [("leader", 1), ("workers", 2)]
        (ref,) = pg["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"]) == ("LeaderWorkerSet", uid)
        for pod in pods_of(kube, f"llm-{g}").values():
            m = pod["metadata"]
            assert m["annotations"]["pod-group-name"] == name
            assert m["labels"][SUBGROUP] == ("leader" if m["labels"][WORKER_INDEX] == "0" else "workers")


def test_leader_ready_then_segments_each_in_a_rack(kube: Kube, daemon: Daemons, workload_crds: CrdSet) -> None:
    """startupPolicy LeaderReady with subGroupPolicy.subGroupSize 2 and the segment topology annotation
    required rack, size 5: the leader is a gang of one until it is placed; then (as the operator creates the
    workers only now) the PodGroup grows to the group (minMember 5; segment-0 = leader, w1, w2 and segment-1 =
    w3, w4) and each segment lands in one rack: two racks of 3 GPUs, 1 GPU a pod."""
    a, b = kube.node("ls-a", 3, rack="ra"), kube.node("ls-b", 3, rack="rb")
    topo = kube.topology([RACK])
    daemon.start()
    notes = {"kai.scheduler/segment-topology-required-placement": RACK}
    ctl = new_lws(kube, "seg", 1, 5, {"kai.scheduler/topology": topo}, startupPolicy="LeaderReady", template={
        "subGroupPolicy": {"subGroupSize": 2}, "workerTemplate": {"metadata": {"annotations": notes}}})  # fmt: skip
    ctl.leaders_for(1)
    name = f"pg-seg-{ctl.lws['metadata']['uid']}-group-0"
    wait_for(lambda: bound(kube, "seg-0", 1), "the leader bound alone", daemon)
    assert podgroups(kube)[name]["spec"]["minMember"] == 1
    ctl.workers_for(0)
    pods = wait_for(lambda: bound(kube, "seg-0", 5), "the group's 5 pods bound", daemon)
    pg = podgroups(kube)[name]
    assert pg["spec"]["minMember"] == 5
    assert [(s["name"], s["minMember"], s.get("parent")) for s in pg["spec"]["subGroups"]] == [
        ("segment-0", 3, None), ("segment-1", 2, None),
        ("leader", 1, "segment-0"), ("workers", 2, "segment-0")]  # fmt: skip
    assert pg["spec"]["subGroups"][0]["topologyConstraint"] == {"topology": topo, "requiredTopologyLevel": RACK}
    node = {n: p["spec"]["nodeName"] for n, p in pods.items()}
    assert node["seg-0"] == node["seg-0-1"] == node["seg-0-2"], node
    assert node["seg-0-3"] == node["seg-0-4"] != node["seg-0"], node
    assert set(node.values()) == {a, b}
    subs = {n: p["metadata"]["labels"][SUBGROUP] for n, p in pods.items()}
    assert subs == {"seg-0": "leader", "seg-0-1": "workers", "seg-0-2": "workers",
                    "seg-0-3": "segment-1", "seg-0-4": "segment-1"}  # fmt: skip

"""Feasibility parity with kube-scheduler's filters (issue 14): conversion of the pod constraints, and
each new plugin's rule on small clusters run through the real session."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.api.podspec import HostPort, LabelRequirement, LabelSelector
from scheduler.api.reasons import Reason
from scheduler.cache.cluster_state import ClusterState
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycle import run_session
from scheduler.framework.record import SessionRecord
from scheduler.framework.session import Session
from scheduler.kube.convert import pod_from_k8s
from scheduler.plugins.podindex import Namespaces, PodIndex

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
Obj = dict[str, Any]


def node(name: str, zone: str = "z1", gpu: int = 8, taints: list[Obj] | None = None, **labels: str) -> Obj:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": {ZONE: zone, **labels} if zone else dict(labels)},
        "spec": {"taints": taints or []},
        "status": {"allocatable": {"cpu": "32", "memory": "64Gi", "nvidia.com/gpu": str(gpu)}},
    }


def pod(
    name: str, ns: str = "ns", on: str = "", labels: dict[str, str] | None = None, gpu: int = 0, **spec: Any
) -> Obj:
    res = {"requests": {"nvidia.com/gpu": str(gpu)}} if gpu else {}
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {
            "schedulerName": "kai-scheduler" if not on else "default-scheduler",
            "nodeName": on,
            "containers": [{"name": "c", "resources": res, "ports": spec.pop("ports", [])}],
            **spec,
        },
        "status": {"phase": "Running" if on else "Pending"},
    }


def run(*objects: Obj) -> SessionRecord:
    state = ClusterState()
    for o in objects:
        state.apply_object(o)
    return run_session(state.snapshot(), SchedulerConfig(), now=0.0)


def anti(selector: Obj, key: str = HOST, **extra: Any) -> Obj:
    return {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": selector, "topologyKey": key, **extra}]
        }
    }


def affinity(selector: Obj | None, key: str = ZONE, **extra: Any) -> Obj:
    term: Obj = {"topologyKey": key, **extra}
    if selector is not None:
        term["labelSelector"] = selector
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def spread(key: str = ZONE, skew: int = 1, app: str = "a", **extra: Any) -> list[Obj]:
    return [
        {
            "maxSkew": skew,
            "topologyKey": key,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": app}},
            **extra,
        }
    ]


# --- conversion -----------------------------------------------------------------------------------
def test_match_and_mismatch_label_keys_fold_into_the_selector() -> None:
    p = pod_from_k8s(
        pod(
            "p",
            labels={"app": "x", "tenant": "t1"},
            affinity=anti(
                {"matchLabels": {"app": "x"}}, matchLabelKeys=["tenant"], mismatchLabelKeys=["app", "absent"]
            ),
        )
    )
    assert p.extras.affinity is not None
    sel = p.extras.affinity.anti_required[0].selector
    assert sel is not None
    assert set(sel.requirements) == {
        LabelRequirement("app", "In", ("x",)),
        LabelRequirement("tenant", "In", ("t1",)),
        LabelRequirement("app", "NotIn", ("x",)),
    }


def test_spread_defaults_ports_preferences_claims_and_dra() -> None:
    spec = {
        "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": ZONE, "labelSelector": {}}],
        "initContainers": [
            {"name": "side", "restartPolicy": "Always", "ports": [{"hostPort": 53, "protocol": "UDP"}]},
            {"name": "init", "ports": [{"hostPort": 54}]},
        ],
        "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}, {"containerPort": 81}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "tmp", "ephemeral": {}}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 5,
                        "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                    }
                ]
            }
        },
    }
    p = pod_from_k8s(pod("p", **spec))
    c = p.extras.spread[0]
    assert (c.hard, c.node_affinity_policy, c.node_taints_policy, c.max_skew) == (True, "Honor", "Ignore", 2)
    assert c.selector == LabelSelector()  # {} matches every pod
    assert p.extras.host_ports == (HostPort(53, "UDP"), HostPort(8080, "TCP", "10.0.0.1"))
    assert p.extras.preferred_nodes[0].weight == 5
    assert (p.extras.claims, p.extras.ephemeral_claims) == (("data",), ("p-tmp",))
    assert not p.problems
    dra = pod_from_k8s(pod("d", resourceClaims=[{"name": "g", "resourceClaimTemplateName": "t"}]))
    assert dra.problems[0][0] == Reason.UNSUPPORTED_RESOURCE_CLAIMS


def test_host_port_conflicts() -> None:
    assert HostPort(80).conflicts(HostPort(80, host_ip="10.0.0.1"))  # wildcard overlaps any address
    assert not HostPort(80, host_ip="10.0.0.2").conflicts(HostPort(80, host_ip="10.0.0.1"))
    assert not HostPort(80, "UDP").conflicts(HostPort(80))
    assert HostPort(80, host_ip="0.0.0.0").conflicts(HostPort(80, host_ip="10.0.0.1"))


# --- the pod index ----------------------------------------------------------------------------------
def test_counters_follow_placements_and_their_undo() -> None:
    state = ClusterState()
    for o in (
        node("n1"),
        node("n2", "z2"),
        pod("a", on="n1", labels={"app": "x"}),
        pod("b", on="n2", labels={"app": "y"}),
    ):
        state.apply_object(o)
    session = Session(state.snapshot(), SchedulerConfig(), now=0.0)
    index = PodIndex(session)
    sel = LabelSelector((LabelRequirement("app", "In", ("x",)),))
    c = index.counter(sel, Namespaces(frozenset({"ns"})))
    assert c.by_domain(ZONE, index.labels) == {"z1": 1}
    new = pod_from_k8s(pod("c", labels={"app": "x"}))
    index.add([new], 1)
    assert c.by_domain(ZONE, index.labels) == {"z1": 1, "z2": 1}
    other_ns = index.counter(sel, Namespaces(frozenset({"elsewhere"})))
    assert other_ns.per_node == {}
    index.remove([new])
    assert c.by_domain(ZONE, index.labels) == {"z1": 1}


# --- inter-pod affinity -------------------------------------------------------------------------------
def test_first_pod_of_a_self_affine_group_may_go_anywhere_but_not_without_the_key() -> None:
    sel = {"matchLabels": {"app": "a"}}
    rec = run(node("n1", zone=""), node("n2", "z2"), pod("p", labels={"app": "a"}, affinity=affinity(sel)))
    assert rec.placements() == {"ns/p": "n2"}  # n1 lacks the topology key
    # a pod that does not match its own term waits, with the term named
    rec = run(node("n2", "z2"), pod("q", labels={"app": "b"}, affinity=affinity(sel)))
    d = rec.decisions["ns/q"]
    assert d.reason == Reason.POD_AFFINITY_UNSATISFIABLE and "app=a per topology.kubernetes.io/zone" in d.message
    # a nil labelSelector matches no pod, not even the pod itself
    rec = run(node("n2", "z2"), pod("r", labels={"app": "a"}, affinity=affinity(None)))
    assert rec.decisions["ns/r"].reason == Reason.POD_AFFINITY_UNSATISFIABLE


def test_symmetric_anti_affinity_of_a_pod_placed_earlier_in_the_cycle() -> None:
    """`a-first` is placed first (name order), its anti-affinity then keeps `b-matching` off its node."""
    rec = run(
        node("n1"),
        node("n2"),
        pod("a-first", gpu=1, affinity=anti({"matchLabels": {"app": "noisy"}})),
        pod("b-matching", gpu=1, labels={"app": "noisy"}),
    )
    places = rec.placements()
    assert places["ns/a-first"] != places["ns/b-matching"]


def test_namespace_selector_on_existing_pods_anti_affinity() -> None:
    ns_obj = {"kind": "Namespace", "metadata": {"name": "prod", "labels": {"env": "prod"}}}
    guard = pod("guard", ns="infra", on="n1", affinity=anti({}, namespaceSelector={"matchLabels": {"env": "prod"}}))
    rec = run(ns_obj, node("n1"), node("n2"), guard, pod("p", ns="prod", gpu=1), pod("d", ns="dev", gpu=1))
    assert rec.placements()["prod/p"] == "n2"  # the empty selector matches every pod of a selected namespace
    assert rec.placements()["dev/d"] == "n1"  # dev is not selected


# --- topology spread -----------------------------------------------------------------------------------
def test_spread_node_affinity_policy_decides_which_domains_count() -> None:
    running = [pod("r1", on="n1", labels={"app": "a"}), pod("r2", on="n1", labels={"app": "a"})]
    nodes = [node("n1", "z1", pool="x"), node("n2", "z2", pool="y")]
    sel = {"nodeSelector": {"pool": "x"}}
    # Honor (default): only z1 counts, so the skew is 0 there and the pod fits
    assert run(*nodes, *running, pod("p", labels={"app": "a"}, topologySpreadConstraints=spread(), **sel)).placements()
    # Ignore: z2 counts with 0 pods, z1 would hold 3: skew 3 > 1
    rec = run(
        *nodes,
        *running,
        pod("p", labels={"app": "a"}, **sel, topologySpreadConstraints=spread(nodeAffinityPolicy="Ignore")),
    )
    assert rec.decisions["ns/p"].reason == Reason.TOPOLOGY_SPREAD_UNSATISFIABLE


def test_spread_taints_policy_and_missing_key() -> None:
    taint = [{"key": "gpu", "value": "busy", "effect": "NoSchedule"}]
    running = [pod("r1", on="n1", labels={"app": "a"})]
    nodes = [node("n1", "z1"), node("n2", "z2", taints=taint)]
    # Ignore (default): tainted z2 counts with 0, so z1 (holding 1) cannot take a second: waits
    rec = run(*nodes, *running, pod("p", labels={"app": "a"}, topologySpreadConstraints=spread()))
    assert rec.decisions["ns/p"].reason == Reason.TOPOLOGY_SPREAD_UNSATISFIABLE
    assert "the least domain 0" in rec.decisions["ns/p"].message
    rec = run(
        *nodes, *running, pod("p", labels={"app": "a"}, topologySpreadConstraints=spread(nodeTaintsPolicy="Honor"))
    )
    assert rec.placements() == {"ns/p": "n1"}
    rec = run(node("n3", zone=""), pod("p", labels={"app": "a"}, topologySpreadConstraints=spread()))
    assert "missing required label topology.kubernetes.io/zone" in rec.decisions["ns/p"].message


def test_spread_of_a_gang_across_zones_and_terminating_pods_do_not_count() -> None:
    members = [
        {
            **pod(f"g-{i}", labels={"app": "a"}, gpu=1, topologySpreadConstraints=spread()),
            "metadata": {
                "name": f"g-{i}",
                "namespace": "ns",
                "labels": {"app": "a"},
                "annotations": {"pod-group-name": "g"},
            },
        }
        for i in range(6)
    ]
    pg = {"kind": "PodGroup", "metadata": {"name": "g", "namespace": "ns"}, "spec": {"minMember": 6}}
    leaving = pod("old", on="n1", labels={"app": "a"})
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    rec = run(node("n1", "z1"), node("n2", "z2"), node("n3", "z3"), pg, leaving, *members)
    per_zone: dict[str, int] = {}
    for _, n in rec.placements().items():
        per_zone[n] = per_zone.get(n, 0) + 1
    assert per_zone == {"n1": 2, "n2": 2, "n3": 2}


# --- volumes ----------------------------------------------------------------------------------------
def _pv(name: str, host: str, size: str = "10Gi", cls: str = "local", **spec: Any) -> Obj:
    return {
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "storageClassName": cls,
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": HOST, "operator": "In", "values": [host]}]}]
                }
            },
            **spec,
        },
        "status": {"phase": "Available"},
    }


def _pvc(
    name: str, size: str = "5Gi", cls: str = "local", modes: tuple[str, ...] = ("ReadWriteOnce",), volume: str = ""
) -> Obj:
    meta: Obj = {"name": name, "namespace": "ns"}
    spec: Obj = {"storageClassName": cls, "accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if volume:  # bound, as the volume controller leaves it
        spec["volumeName"] = volume
        meta["annotations"] = {"pv.kubernetes.io/bind-completed": "yes"}
    return {"kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


WFFC_LOCAL = {
    "kind": "StorageClass",
    "metadata": {"name": "local"},
    "provisioner": "kubernetes.io/no-provisioner",
    "volumeBindingMode": "WaitForFirstConsumer",
}


def _claiming(name: str, claim: str) -> Obj:
    return pod(name, volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": claim}}])


@pytest.mark.parametrize(
    ("pv", "claim", "where"),
    [
        (_pv("small", "n2", "1Gi"), _pvc("c"), None),  # too small
        (_pv("rwx", "n2"), _pvc("c", modes=("ReadWriteMany",)), None),  # access modes not offered
        (_pv("ok", "n2"), _pvc("c"), "n2"),
        (
            {
                **_pv("pre", "n2", "1Gi"),
                "spec": {**_pv("pre", "n2")["spec"], "claimRef": {"namespace": "ns", "name": "other"}},
            },
            _pvc("c"),
            None,
        ),  # reserved for another claim
    ],
)
def test_wait_for_first_consumer_volume_matching(pv: Obj, claim: Obj, where: str | None) -> None:
    rec = run(node("n1"), node("n2"), WFFC_LOCAL, pv, claim, _claiming("p", "c"))
    assert rec.placements().get("ns/p") == where
    if where is None:
        assert rec.decisions["ns/p"].reason == Reason.VOLUME_NODE_CONFLICT
    else:
        assert rec.commits[0].claims == (("ns/c", pv["metadata"]["name"], where),)


def test_allowed_topologies_restrict_provisioning_and_rollback_frees_the_volume() -> None:
    sc = {
        "kind": "StorageClass",
        "metadata": {"name": "zonal"},
        "provisioner": "csi.example.com",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowedTopologies": [{"matchLabelExpressions": [{"key": ZONE, "values": ["z2"]}]}],
    }
    rec = run(node("n1", "z1"), node("n2", "z2"), sc, _pvc("c", cls="zonal"), _claiming("p", "c"))
    assert rec.placements() == {"ns/p": "n2"}
    assert rec.commits[0].claims == (("ns/c", "", "n2"),)  # provision on n2
    # a gang whose second member cannot fit gives its first member's volume back for the next pod
    pg = {"kind": "PodGroup", "metadata": {"name": "g", "namespace": "ns"}, "spec": {"minMember": 2}}
    m0 = _claiming("g-0", "c0")
    m0["metadata"]["annotations"] = {"pod-group-name": "g"}
    m1 = pod("g-1", gpu=9)
    m1["metadata"]["annotations"] = {"pod-group-name": "g"}
    rec = run(node("n1"), WFFC_LOCAL, _pv("only", "n1"), _pvc("c0"), _pvc("c1"), pg, m0, m1, _claiming("z", "c1"))
    assert not rec.decisions["ns/g"].placed
    assert rec.placements() == {"ns/z": "n1"}
    assert rec.commits[0].claims == (("ns/c1", "only", "n1"),)


def test_a_named_volume_without_a_completed_bind_is_still_unbound() -> None:
    claim = _pvc("c", volume="v")
    del claim["metadata"]["annotations"]
    rec = run(node("n1"), WFFC_LOCAL, _pv("v", "n1"), claim, _claiming("p", "c"))
    assert rec.decisions["ns/p"].reason == Reason.VOLUME_CLAIM_UNBOUND


def test_csi_attach_limit_counts_volumes_of_running_pods() -> None:
    csinode = {
        "kind": "CSINode",
        "metadata": {"name": "n1"},
        "spec": {"drivers": [{"name": "csi.example.com", "allocatable": {"count": 1}}]},
    }
    pv = {
        "kind": "PersistentVolume",
        "metadata": {"name": "v1"},
        "spec": {
            "storageClassName": "fast",
            "capacity": {"storage": "5Gi"},
            "csi": {"driver": "csi.example.com", "volumeHandle": "h1"},
            "claimRef": {"namespace": "ns", "name": "used"},
        },
        "status": {"phase": "Bound"},
    }
    pv2 = {
        **pv,
        "metadata": {"name": "v2"},
        "spec": {
            **pv["spec"],
            "csi": {"driver": "csi.example.com", "volumeHandle": "h2"},
            "claimRef": {"namespace": "ns", "name": "new"},
        },
    }
    done = {"name": "used", "namespace": "ns", "annotations": {"pv.kubernetes.io/bind-completed": "yes"}}
    used = {
        **_pvc("used", cls="fast"),
        "metadata": done,
        "spec": {**_pvc("used", cls="fast")["spec"], "volumeName": "v1"},
    }
    new = {
        **_pvc("new", cls="fast"),
        "metadata": {**done, "name": "new"},
        "spec": {**_pvc("new", cls="fast")["spec"], "volumeName": "v2"},
    }
    runner = pod("runner", on="n1", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "used"}}])
    rec = run(
        node("n1"), node("n2"), csinode, pv, pv2, used, new, runner, _claiming("p", "new"), _claiming("q", "used")
    )
    assert rec.placements()["ns/p"] == "n2"  # n1 already attaches its one volume
    assert rec.placements()["ns/q"] == "n1"  # the same volume again costs no attachment

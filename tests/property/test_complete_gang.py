"""Complete gang placement against an exhaustive oracle.

Small random clusters (up to 6 nodes in racks, taints, labels) and one gang of up to 6 members with random
tolerations, node selectors and requests, with or without a required rack. Brute force tries every
assignment of members to nodes (its own feasibility checks, not the engine's). Whenever it finds one
inside a single domain, `simulate` must place the gang; whatever `simulate` places must be valid.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.backends.simulation import simulate
from scheduler.framework.config import SchedulerConfig

GPU = "nvidia.com/gpu"
RACK = "topology.kubernetes.io/rack"
TAINT = "dedicated"
POOLS = ("a", "b")

SETTINGS = settings(
    max_examples=int(os.environ.get("KAISCHED_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    n_nodes = draw(st.integers(1, 6))
    nodes = []
    for i in range(n_nodes):
        nodes.append(
            {
                "name": f"n{i}",
                "rack": f"r{draw(st.integers(0, 1))}",
                "pool": draw(st.sampled_from(POOLS)),
                "tainted": draw(st.booleans()),
                "cpu": draw(st.integers(1, 8)),
                "gpu": draw(st.integers(0, 4)),
            }
        )
    n_members = draw(st.integers(1, 6))
    members = []
    for j in range(n_members):
        members.append(
            {
                "name": f"m{j}",
                "cpu": draw(st.integers(0, 4)),
                "gpu": draw(st.integers(0, 2)),
                "tolerates": draw(st.booleans()),
                "pool": draw(st.sampled_from((None, *POOLS))),
            }
        )
    return {"nodes": nodes, "members": members, "rack_required": draw(st.booleans())}


def objects_of(case: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "kai.scheduler/v1alpha1",
            "kind": "Topology",
            "metadata": {"name": "topo"},
            "spec": {"levels": [{"nodeLabel": RACK}]},
        }
    ]
    for n in case["nodes"]:
        spec: dict[str, Any] = {}
        if n["tainted"]:
            spec["taints"] = [{"key": TAINT, "value": "x", "effect": "NoSchedule"}]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": n["name"], "labels": {RACK: n["rack"], "pool": n["pool"]}},
                "spec": spec,
                "status": {"allocatable": {"cpu": str(n["cpu"]), "memory": "64Gi", GPU: str(n["gpu"]), "pods": "110"}},
            }
        )
    meta: dict[str, Any] = {"name": "g", "namespace": "t"}
    if case["rack_required"]:
        meta["annotations"] = {"kai.scheduler/topology": "topo", "kai.scheduler/topology-required-placement": RACK}
    out.append(
        {
            "apiVersion": "scheduling.run.ai/v2alpha2",
            "kind": "PodGroup",
            "metadata": meta,
            "spec": {"minMember": len(case["members"])},
        }
    )
    for m in case["members"]:
        spec = {
            "schedulerName": "kai-scheduler",
            "containers": [
                {"name": "c", "image": "x", "resources": {"requests": {"cpu": str(m["cpu"]), GPU: str(m["gpu"])}}}
            ],
        }
        if m["tolerates"]:
            spec["tolerations"] = [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}]
        if m["pool"]:
            spec["nodeSelector"] = {"pool": m["pool"]}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": m["name"], "namespace": "t", "annotations": {"pod-group-name": "g"}},
                "spec": spec,
            }
        )
    return out


def eligible(m: dict[str, Any], n: dict[str, Any]) -> bool:
    if n["tainted"] and not m["tolerates"]:
        return False
    return m["pool"] is None or m["pool"] == n["pool"]


def valid(case: dict[str, Any], assignment: dict[str, str]) -> bool:
    nodes = {n["name"]: n for n in case["nodes"]}
    used = {name: [0, 0] for name in nodes}
    for m in case["members"]:
        node = assignment.get(m["name"])
        if node is None or not eligible(m, nodes[node]):
            return False
        used[node][0] += m["cpu"]
        used[node][1] += m["gpu"]
    if any(u[0] > nodes[k]["cpu"] or u[1] > nodes[k]["gpu"] for k, u in used.items()):
        return False
    return not case["rack_required"] or len({nodes[v]["rack"] for v in assignment.values()}) == 1


def brute_force(case: dict[str, Any]) -> dict[str, str] | None:
    names = [n["name"] for n in case["nodes"]]
    members = [m["name"] for m in case["members"]]
    for choice in itertools.product(names, repeat=len(members)):
        assignment = dict(zip(members, choice, strict=True))
        if valid(case, assignment):
            return assignment
    return None


@SETTINGS
@given(case=cases())
def test_placed_whenever_a_placement_exists_and_always_valid(case: dict[str, Any]) -> None:
    result = simulate(objects_of(case), SchedulerConfig(), max_cycles=1).to_json()
    placed = {k.split("/", 1)[1]: v for k, v in result["placements"].items()}
    oracle = brute_force(case)
    if placed:
        assert valid(case, placed), f"invalid placement {placed} for {case}"
    if oracle is not None:
        assert placed, f"brute force places the gang ({oracle}) but simulate did not: {result['unscheduled']} {case}"
    else:
        assert not placed

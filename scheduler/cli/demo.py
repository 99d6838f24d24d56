"""`kaisched demo`: an embedded cluster and the motivating workloads, scheduled and explained.

2 zones x 4 racks x 4 nodes x 8 GPUs; two teams' queues; a disaggregated inference deployment (router,
prefill and decode workers as one gang, preferred zone); training gangs with required rack placement;
one gang that cannot fit, to show how the scheduler says why."""

from __future__ import annotations

from typing import Any

from scheduler.api.resources import GPU, format_quantity
from scheduler.backends.simulation import SimulationResult, simulate
from scheduler.cli.table import table
from scheduler.framework.config import SchedulerConfig
from scheduler.kube.paths import POD_GROUPS, QUEUES, TOPOLOGIES

ZONE = "topology.kubernetes.io/zone"
RACK = "topology.kubernetes.io/rack"


def _node(zone: str, rack: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"{rack}-n{i}", "labels": {ZONE: zone, RACK: rack}},
        "status": {"allocatable": {"cpu": "64", "memory": "512Gi", GPU: "8", "pods": "110"}},
    }


def _pod(name: str, group: str, queue: str, gpus: int, cpu: str, sub: str = "") -> dict[str, Any]:
    labels = {"kai.scheduler/queue": queue}
    if sub:
        labels["kai.scheduler/subgroup-name"] = sub
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "demo", "labels": labels, "annotations": {"pod-group-name": group}},
        "spec": {
            "schedulerName": "kai-scheduler",
            "containers": [{"name": "main", "resources": {"requests": {"cpu": cpu, "memory": "16Gi", GPU: str(gpus)}}}],
        },
    }


def _podgroup(name: str, queue: str, min_member: int, annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": POD_GROUPS.api_version,
        "kind": "PodGroup",
        "metadata": {"name": name, "namespace": "demo", "annotations": annotations},
        "spec": {"queue": queue, **({"minMember": min_member} if min_member else {}), **spec},
    }


def _queue(name: str, parent: str, gpu_quota: int, weight: float) -> dict[str, Any]:
    spec: dict[str, Any] = {"resources": {"gpu": {"quota": gpu_quota, "limit": -1, "overQuotaWeight": weight}}}
    if parent:
        spec["parentQueue"] = parent
    return {"apiVersion": QUEUES.api_version, "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def demo_objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for z in ("zone-a", "zone-b"):
        for r in range(1, 5):
            for i in range(1, 5):
                objs.append(_node(z, f"{z}-rack{r}", i))
    objs.append(
        {
            "apiVersion": TOPOLOGIES.api_version,
            "kind": "Topology",
            "metadata": {"name": "demo-topology"},
            "spec": {"levels": [{"nodeLabel": ZONE}, {"nodeLabel": RACK}, {"nodeLabel": "kubernetes.io/hostname"}]},
        }
    )
    objs += [
        _queue("ai-platform", "", -1, 1),
        _queue("team-inference", "ai-platform", 64, 2),
        _queue("team-training", "ai-platform", 64, 1),
    ]
    topo = {"kai.scheduler/topology": "demo-topology"}
    # the motivating case: router + prefill + decode start together, in one zone if possible
    objs.append(
        _podgroup(
            "llm-serving",
            "team-inference",
            0,
            {**topo, "kai.scheduler/topology-preferred-placement": ZONE},
            subGroups=[
                {"name": "router", "minMember": 1},
                {"name": "prefill", "minMember": 4},
                {"name": "decode", "minMember": 8},
            ],
        )
    )
    objs.append(_pod("llm-router-0", "llm-serving", "team-inference", 0, "4", "router"))
    objs += [_pod(f"llm-prefill-{i}", "llm-serving", "team-inference", 4, "16", "prefill") for i in range(4)]
    objs += [_pod(f"llm-decode-{i}", "llm-serving", "team-inference", 2, "8", "decode") for i in range(8)]
    # training: each gang must sit in one rack (fast interconnect)
    for j in range(6):
        name = f"train-{j}"
        objs.append(_podgroup(name, "team-training", 4, {**topo, "kai.scheduler/topology-required-placement": RACK}))
        objs += [_pod(f"{name}-w{i}", name, "team-training", 8, "32") for i in range(4)]
    # a second inference replica and a giant training gang compete for what is left
    objs.append(
        _podgroup("llm-serving-2", "team-inference", 12, {**topo, "kai.scheduler/topology-required-placement": ZONE})
    )
    objs += [_pod(f"llm2-worker-{i}", "llm-serving-2", "team-inference", 4, "16") for i in range(12)]
    objs.append(
        _podgroup("train-giant", "team-training", 40, {**topo, "kai.scheduler/topology-required-placement": ZONE})
    )
    objs += [_pod(f"giant-w{i}", "train-giant", "team-training", 4, "16") for i in range(40)]
    return objs


def render(result: SimulationResult, objects: list[dict[str, Any]]) -> str:
    labels = {o["metadata"]["name"]: o["metadata"]["labels"] for o in objects if o["kind"] == "Node"}
    gangs: dict[str, dict[tuple[str, str], int]] = {}
    for pod, node in result.placements.items():
        name = pod.split("/", 1)[1]
        owner = next(
            (
                o["metadata"]["annotations"]["pod-group-name"]
                for o in objects
                if o["kind"] == "Pod" and o["metadata"]["name"] == name
            ),
            name,
        )
        where = (labels[node][ZONE], labels[node][RACK])
        gangs.setdefault(owner, {})[where] = gangs.setdefault(owner, {}).get(where, 0) + 1
    out = [
        "kaisched demo: 2 zones x 4 racks x 4 nodes x 8 GPUs (256 GPUs), two teams, "
        f"{result.cycles} scheduling cycle(s)",
        "",
        "WHERE EACH GANG LANDED",
    ]
    rows = []
    for gang in sorted(gangs):
        spots = gangs[gang]
        zones = sorted({z for z, _ in spots})
        detail = ", ".join(f"{r}: {n}" for (_, r), n in sorted(spots.items()))
        rows.append([gang, str(sum(spots.values())), "/".join(zones), detail])
    out.append(table(["GANG", "PODS", "ZONE", "PODS PER RACK"], rows))
    last = result.records[0] if result.records else None
    if last is not None:
        out += ["", "QUEUE FAIR SHARES (GPUs, at the first cycle)"]
        qrows = []
        for name, q in sorted(last.queues.items()):
            qrows.append(
                [
                    name,
                    q.parent or "-",
                    format_quantity(GPU, q.deserved.get(GPU)),
                    format_quantity(GPU, q.fair_share.get(GPU)),
                    format_quantity(GPU, q.requested.get(GPU)),
                ]
            )
        out.append(table(["QUEUE", "PARENT", "DESERVED", "FAIR SHARE", "REQUESTED"], qrows))
    data = result.to_json()
    out += ["", "WAITING, AND WHY"]
    if data["unscheduled"]:
        for gang, why in data["unscheduled"].items():
            out.append(f"{gang}: {why['reason']}\n  {why['message']}")
    else:
        out.append("(nothing waits)")
    return "\n".join(out)


def run_demo() -> str:
    objects = demo_objects()
    result = simulate(objects, SchedulerConfig())
    return render(result, objects)

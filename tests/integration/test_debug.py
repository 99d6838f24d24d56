"""The debug API of `kaisched run` on the real API server: every RPC through a real gRPC channel, explain on
crafted cases, bad requests, `kaisched ctl`, snapshot -> `kaisched replay` giving the daemon's decisions,
and the OpenTelemetry console exporter producing cycle spans.

One daemon serves the whole scenario (the daemon-subprocess pattern of test_daemon.py, reused from there)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from scheduler.debug._pb import debug_pb2 as pb
from scheduler.debug._pb import debug_pb2_grpc as pb_grpc
from tests.integration import test_daemon
from tests.integration.test_daemon import GPU, RACK, REPO, ZONE, Daemons, Kube, wait_for
from tests.kubecluster import free_port

pytestmark = pytest.mark.integration

# the fixtures of test_daemon.py, reused as they are
daemon = test_daemon.daemon
kube = test_daemon.kube


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli.main", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def decided(stub: Any, ns: str, name: str, reason: str) -> pb.ExplainPodGroupResponse | None:
    try:
        r: pb.ExplainPodGroupResponse = stub.ExplainPodGroup(pb.ExplainPodGroupRequest(namespace=ns, name=name))
    except grpc.RpcError:
        return None
    return r if r.reason == reason and r.state == "Waiting" else None


def test_debug_api_on_the_daemon(kube: Kube, daemon: Daemons, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns, tag = kube.ns, kube.tag
    topo = kube.topology([ZONE, RACK])
    a1n1 = kube.node("a1-n1", 4, "zone-a", "a1")
    kube.node("a1-n2", 4, "zone-a", "a1")
    kube.node("a2-n1", 4, "zone-a", "a2")
    kube.node("b1-n1", 4, "zone-b", "b1")
    q1 = kube.queue("q1", 1)
    capped = kube.queue("capped", 1, quota=2, limit=2)
    kube.pod("foreign", 4, scheduler="default-scheduler", node_name=a1n1, select=False)

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # spans go to the daemon's log
    port = free_port()
    d = daemon.start("--debug-port", str(port), "--debug-history", "2000")
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.DebugStub(channel)
    try:
        # -- health and reflection
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="kai.scheduler.debug.v1.Debug"), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"kai.scheduler.debug.v1.Debug", "grpc.health.v1.Health"} <= services

        # -- a gang that fits (no GPUs): its cycle's snapshot is kept for replay
        kube.podgroup("fits", 2, queue=q1)
        fits = kube.gang("fits", 2, gpu=0)
        wait_for(lambda: kube.all_bound(fits), "gang fits bound", daemon)

        # -- crafted waits: required zone short of GPUs, over the queue limit, an unknown Topology
        req_zone = {"kai.scheduler/topology": topo, "kai.scheduler/topology-required-placement": ZONE}
        kube.podgroup("short", 3, annotations=req_zone, queue=q1)
        kube.gang("short", 3, gpu=4)
        kube.podgroup("limited", 3, queue=capped)
        kube.gang("limited", 3, gpu=1)
        lost_ann = {"kai.scheduler/topology": f"nope-{tag}", "kai.scheduler/topology-required-placement": ZONE}
        kube.podgroup("lost", 1, annotations=lost_ann, queue=q1)
        kube.gang("lost", 1, gpu=1)

        short = wait_for(lambda: decided(stub, ns, "short", "TopologyRequiredUnsatisfiable"), "short waits", daemon)
        last = short.attempts[-1]
        assert last.level == ZONE and last.domain == kube.zone("zone-a") and dict(last.short) == {GPU: 4}
        assert short.suggestions[0].startswith("4 nvidia.com/gpu more free in"), short.suggestions
        assert kube.zone("zone-a") in short.suggestions[0] or "any zone" in short.suggestions[0]
        assert short.queue_position.queue.name == q1

        limited = wait_for(lambda: decided(stub, ns, "limited", "OverLimit"), "limited waits", daemon)
        assert any(f"queue {capped} limits nvidia.com/gpu to 2" in s for s in limited.suggestions), limited
        lost = wait_for(lambda: decided(stub, ns, "lost", "UnknownTopology"), "lost waits", daemon)
        assert topo in lost.suggestions[0] and f"nope-{tag}" in lost.message

        # -- explain, bad requests
        with pytest.raises(grpc.RpcError) as err:
            stub.ExplainPodGroup(pb.ExplainPodGroupRequest(namespace=ns, name="ghost"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and f"{ns}/ghost" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.ExplainPodGroup(pb.ExplainPodGroupRequest(name="short"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # -- queues
        queues = {q.name: q for q in stub.ListQueues(pb.ListQueuesRequest()).queues}
        gpu = {r.resource: r for r in queues[capped].resources}[GPU]
        assert (gpu.quota, gpu.limit) == (2, 2) and q1 in queues

        # -- pod groups with filters
        groups = {g.name: g for g in stub.ListPodGroups(pb.ListPodGroupsRequest(namespace=ns)).pod_groups}
        assert groups["fits"].state == "Running" and groups["fits"].members_placed == 2
        assert groups["short"].reason == "TopologyRequiredUnsatisfiable" and groups["short"].members_required == 3
        waiting = stub.ListPodGroups(pb.ListPodGroupsRequest(namespace=ns, queue=q1, state="Waiting")).pod_groups
        assert sorted(g.name for g in waiting) == ["lost", "short"]
        with pytest.raises(grpc.RpcError) as err:
            stub.ListPodGroups(pb.ListPodGroupsRequest(state="Asleep"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # -- topology: capacity, allocated, free per domain
        (t,) = stub.GetTopology(pb.GetTopologyRequest(name=topo)).topologies
        zones = {z.name: z for z in t.root.children}
        za = zones[kube.zone("zone-a")]
        assert (dict(za.capacity)[GPU], dict(za.allocated)[GPU], dict(za.free)[GPU]) == (12, 4, 8)
        assert {r.name for r in za.children} == {f"a1-{tag}", f"a2-{tag}"}
        with pytest.raises(grpc.RpcError) as err:
            stub.GetTopology(pb.GetTopologyRequest(name=f"nope-{tag}"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        # -- cycles
        cycles = stub.ListCycles(pb.ListCyclesRequest(include_decisions=True)).cycles
        assert [p.name for p in cycles[0].phases] == ["snapshot", "allocate", "commit", "status"]
        placing = next(c for c in cycles if any(x.job == f"{ns}/fits" and x.placed for x in c.decisions))
        assert placing.pods_bound >= 2

        # -- simulate: a hypothetical gang, nothing changes in the cluster
        what_if = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"what-if-{i}", "namespace": ns},
                "spec": {
                    "schedulerName": "kai-scheduler",
                    "nodeSelector": {"test-id": ns},
                    "containers": [{"name": "c", "image": "x", "resources": {"limits": {GPU: "2"}}}],
                },
            }
            for i in range(2)
        ]
        sim = stub.Simulate(pb.SimulateRequest(objects=[json.dumps(o) for o in what_if]))
        assert {f"{ns}/what-if-0", f"{ns}/what-if-1"} <= set(sim.placements)
        assert f"{ns}/what-if-0" not in kube.pods()
        with pytest.raises(grpc.RpcError) as err:
            stub.Simulate(pb.SimulateRequest(objects=["kind: ["]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # -- watch: decisions as cycles make them
        stream = stub.WatchDecisions(pb.WatchDecisionsRequest(namespace=ns, waiting_only=True))
        got: list[pb.Decision] = []

        def read() -> None:
            for ev in stream:
                got.append(ev.decision)
                stream.cancel()
                return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(15)
        assert got and got[0].job.startswith(f"{ns}/") and not got[0].placed

        # -- snapshot of the placing cycle -> replay: the same decisions
        snap_file = tmp_path / "placing.json"
        out = cli("ctl", "--address", address, "snapshot", "--cycle", str(placing.cycle), "-o", str(snap_file))
        assert out.returncode == 0, out.stderr
        replayed = json.loads(cli("replay", str(snap_file), "--cycles", "1").stdout)
        assert replayed["placements"] == {p: n for x in placing.decisions for p, n in sorted(x.pods.items())}
        assert f"{ns}/fits-0" in replayed["placements"]
        assert replayed["unscheduled"] == {
            x.job: {"reason": x.reason, "message": x.message} for x in placing.decisions if not x.placed
        }

        # -- and of the latest cycle: every waiting gang waits for the same reason, with the same message
        latest = stub.GetSnapshot(pb.GetSnapshotRequest())
        (tmp_path / "latest.json").write_text(latest.snapshot_json)
        replayed = json.loads(cli("replay", str(tmp_path / "latest.json"), "--cycles", "1").stdout)
        cycle = next(
            c for c in stub.ListCycles(pb.ListCyclesRequest(include_decisions=True)).cycles if c.cycle == latest.cycle
        )
        assert replayed["placements"] == {p: n for x in cycle.decisions for p, n in sorted(x.pods.items())}
        assert replayed["unscheduled"] == {
            x.job: {"reason": x.reason, "message": x.message} for x in cycle.decisions if not x.placed
        }
        assert {f"{ns}/short", f"{ns}/limited", f"{ns}/lost"} <= set(replayed["unscheduled"])

        # -- kaisched ctl: tables and JSON
        out = cli("ctl", "--address", address, "explain", f"{ns}/short")
        assert out.returncode == 0 and "TopologyRequiredUnsatisfiable" in out.stdout and "would fit with" in out.stdout
        out = cli("ctl", "--address", address, "podgroups", "-n", ns, "-o", "json")
        assert {g["name"] for g in json.loads(out.stdout)["pod_groups"]} == {"fits", "short", "limited", "lost"}
        for sub in (["queues"], ["topology", topo], ["cycles", "--limit", "3"]):
            out = cli("ctl", "--address", address, *sub)
            assert out.returncode == 0 and out.stdout.strip(), (sub, out.stderr)
        out = cli("ctl", "--address", address, "explain", f"{ns}/ghost")
        assert out.returncode == 1 and "NOT_FOUND" in out.stderr

        # -- OpenTelemetry: the console exporter printed cycle traces with phase spans
        def traced() -> bool:
            text = d.log.read_text(errors="replace")
            return '"name": "kaisched.cycle"' in text and '"name": "action.allocate"' in text

        wait_for(traced, "cycle spans in the daemon's output", daemon)
        assert "kaisched_bind_duration_seconds_count" in d.get("/metrics")[1]
    finally:
        channel.close()

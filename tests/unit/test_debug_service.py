"""The debug service in-process over a real gRPC channel, on cycles run by the in-memory backend.

These cover every RPC's shape, explain's crafted cases and bad requests quickly; the daemon on a real API
server is covered by tests/integration/test_debug.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler.backends.memory import MemoryBackend
from scheduler.backends.simulation import run_cycle
from scheduler.debug._pb import debug_pb2 as pb
from scheduler.debug._pb import debug_pb2_grpc as pb_grpc
from scheduler.debug.history import CycleEntry, CycleHistory
from scheduler.debug.server import ServerOptions, start_server
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycle import run_session

REPO = Path(__file__).resolve().parents[2]
ZONE, RACK, GPU = "topology.kubernetes.io/zone", "topology.kubernetes.io/rack", "nvidia.com/gpu"


def node(name: str, zone: str, rack: str, gpu: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {ZONE: zone, RACK: rack, "kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi", GPU: str(gpu), "pods": "110"}},
    }


def pod(
    name: str, gpu: int, pg: str = "", queue: str = "", node_name: str = "", sched: str = "kai-scheduler"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "team", "labels": {}}
    if pg:
        meta["annotations"] = {"pod-group-name": pg}
    if queue:
        meta["labels"]["kai.scheduler/queue"] = queue
    spec: dict[str, Any] = {
        "schedulerName": sched,
        "containers": [{"name": "c", "image": "x", "resources": {"requests": {GPU: str(gpu)}} if gpu else {}}],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Running" if node_name else "Pending"},
    }


def podgroup(name: str, min_member: int, queue: str = "", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.run.ai/v2alpha2",
        "kind": "PodGroup",
        "metadata": {"name": name, "namespace": "team", "annotations": annotations},
        "spec": {"minMember": min_member, **({"queue": queue} if queue else {})},
    }


def queue(name: str, quota: int = 0, limit: int = -1) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.run.ai/v2",
        "kind": "Queue",
        "metadata": {"name": name},
        "spec": {"resources": {"gpu": {"quota": quota, "limit": limit, "overQuotaWeight": 1}}},
    }


def cluster() -> list[dict[str, Any]]:
    """Zone a: racks a1 (2 nodes), a2 (1 node); zone b: rack b1 (1 node); 4 GPUs each. A foreign pod fills a1-n1."""
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "kai.scheduler/v1alpha1",
            "kind": "Topology",
            "metadata": {"name": "dc"},
            "spec": {"levels": [{"nodeLabel": ZONE}, {"nodeLabel": RACK}]},
        },
        node("a1-n1", "zone-a", "a1"),
        node("a1-n2", "zone-a", "a1"),
        node("a2-n1", "zone-a", "a2"),
        node("b1-n1", "zone-b", "b1"),
        queue("q1"),
        queue("capped", quota=2, limit=2),
        pod("foreign", 4, node_name="a1-n1", sched="default-scheduler"),
        # placed: 2 pods of 1 GPU, anywhere
        podgroup("fits", 2, "q1"),
        pod("fits-0", 1, "fits"),
        pod("fits-1", 1, "fits"),
        # required zone, 3 x 4 GPUs = 12: zone a has 12 allocatable but 4 of it is taken
        podgroup(
            "short", 3, "q1", **{"kai.scheduler/topology": "dc", "kai.scheduler/topology-required-placement": ZONE}
        ),
        *(pod(f"short-{i}", 4, "short") for i in range(3)),
        # queue limit of 2 GPUs
        podgroup("limited", 3, "capped"),
        *(pod(f"limited-{i}", 1, "limited") for i in range(3)),
        # a Topology that does not exist
        podgroup(
            "lost", 1, "q1", **{"kai.scheduler/topology": "nope", "kai.scheduler/topology-required-placement": ZONE}
        ),
        pod("lost-0", 1, "lost"),
    ]
    return objs


def raw_of(backend: MemoryBackend) -> dict[tuple[str, str], bytes]:
    """As the daemon keeps them: each object as JSON."""
    return {(k, f"{ns}/{name}" if ns else name): json.dumps(o).encode() for (k, ns, name), o in backend.objects.items()}


def run_cycles(backend: MemoryBackend, history: CycleHistory, config: SchedulerConfig, n: int) -> None:
    for cycle in range(1, n + 1):
        raw = raw_of(backend)
        snap = backend.snapshot()
        rec = run_cycle(backend, config, cycle, snap)
        summary = {"gangs_tried": len(rec.order), "gangs_placed": sum(1 for d in rec.decisions.values() if d.pods)}
        phases = (("snapshot", 0.001), ("allocate", 0.002), ("commit", 0.003), ("status", 0.0))
        history.add(CycleEntry(rec, float(cycle), phases, summary, snapshot=snap, raw=raw))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, CycleHistory, MemoryBackend, int]]:
    config = SchedulerConfig()
    backend = MemoryBackend(cluster())
    history = CycleHistory(10)
    run_cycles(backend, history, config, 3)
    server = start_server(history, config, ServerOptions(port=0, token="s3cret"))
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.DebugStub(channel)
    yield stub, history, backend, server.port
    channel.close()
    server.stop(0)


MD = [("authorization", "Bearer s3cret")]


def code_of(call: Any, *args: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, metadata=MD)
    return info.value.code(), info.value.details()


def test_token_required_but_not_for_health(served: Any) -> None:
    stub, _, _, port = served
    with pytest.raises(grpc.RpcError) as info:
        stub.ListQueues(pb.ListQueuesRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stub.ListQueues(pb.ListQueuesRequest(), metadata=[("authorization", "Bearer wrong")])
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="kai.scheduler.debug.v1.Debug")
        )
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_queues(served: Any) -> None:
    stub = served[0]
    resp = stub.ListQueues(pb.ListQueuesRequest(), metadata=MD)
    by = {q.name: q for q in resp.queues}
    assert {"q1", "capped", "default-queue"} <= set(by)
    gpu = {r.resource: r for r in by["capped"].resources}[GPU]
    assert (gpu.quota, gpu.limit) == (2, 2)


def test_podgroups_and_filters(served: Any) -> None:
    stub = served[0]
    resp = stub.ListPodGroups(pb.ListPodGroupsRequest(namespace="team"), metadata=MD)
    by = {g.name: g for g in resp.pod_groups}
    assert by["fits"].state == "Running" and by["fits"].members_placed == 2
    assert by["short"].state == "Waiting" and by["short"].reason == "TopologyRequiredUnsatisfiable"
    assert by["limited"].reason == "OverLimit"
    waiting = stub.ListPodGroups(pb.ListPodGroupsRequest(state="Waiting", queue="q1"), metadata=MD)
    assert sorted(g.name for g in waiting.pod_groups) == ["lost", "short"]
    code, detail = code_of(stub.ListPodGroups, pb.ListPodGroupsRequest(state="Sleeping"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Waiting" in detail


def test_explain_required_zone_short_by_gpus(served: Any) -> None:
    stub = served[0]
    r = stub.ExplainPodGroup(pb.ExplainPodGroupRequest(namespace="team", name="short"), metadata=MD)
    assert r.state == "Waiting" and r.reason == "TopologyRequiredUnsatisfiable"
    assert r.waiting_cycles == 3
    last = r.attempts[-1]
    assert last.level == ZONE and last.domain == "zone-a" and dict(last.short) == {GPU: 6}
    assert r.suggestions[0] == "6 nvidia.com/gpu more free in zone zone-a"
    assert r.queue_position.queue.name == "q1" and r.queue_position.position >= 1


def test_explain_over_limit(served: Any) -> None:
    stub = served[0]
    r = stub.ExplainPodGroup(pb.ExplainPodGroupRequest(namespace="team", name="limited"), metadata=MD)
    assert r.reason == "OverLimit"
    assert any("queue capped limits nvidia.com/gpu to 2" in s for s in r.suggestions), r.suggestions
    assert r.queue_position.queue.name == "capped"


def test_explain_unknown_topology(served: Any) -> None:
    stub = served[0]
    r = stub.ExplainPodGroup(pb.ExplainPodGroupRequest(namespace="team", name="lost"), metadata=MD)
    assert r.reason == "UnknownTopology"
    assert "Topologies in the cluster: dc" in r.suggestions[0]


def test_explain_bad_requests(served: Any) -> None:
    stub = served[0]
    code, detail = code_of(stub.ExplainPodGroup, pb.ExplainPodGroupRequest(namespace="team", name="ghost"))
    assert code == grpc.StatusCode.NOT_FOUND and "team/ghost" in detail
    code, detail = code_of(stub.ExplainPodGroup, pb.ExplainPodGroupRequest(name="short"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "namespace" in detail


def test_topology(served: Any) -> None:
    stub = served[0]
    r = stub.GetTopology(pb.GetTopologyRequest(name="dc"), metadata=MD)
    (t,) = r.topologies
    zones = {d.name: d for d in t.root.children}
    assert dict(zones["zone-a"].capacity)[GPU] == 12
    assert dict(zones["zone-a"].free)[GPU] == 6  # 4 foreign + the 2 of "fits"
    assert dict(zones["zone-a"].allocated)[GPU] == 6
    racks = {d.name: d for d in zones["zone-a"].children}
    assert set(racks) == {"a1", "a2"} and racks["a1"].nodes == 2
    code, detail = code_of(stub.GetTopology, pb.GetTopologyRequest(name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "dc" in detail


def test_cycles(served: Any) -> None:
    stub = served[0]
    r = stub.ListCycles(pb.ListCyclesRequest(limit=2, include_decisions=True), metadata=MD)
    assert [c.cycle for c in r.cycles] == [3, 2]
    assert [p.name for p in r.cycles[0].phases] == ["snapshot", "allocate", "commit", "status"]
    assert any(d.job == "team/short" and not d.placed for d in r.cycles[0].decisions)
    code, _ = code_of(stub.ListCycles, pb.ListCyclesRequest(limit=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_simulate_changes_nothing(served: Any) -> None:
    stub, history, backend, _ = served
    before = dict(backend.objects)
    extra = [podgroup("what-if", 2, "q1"), pod("what-if-0", 1, "what-if"), pod("what-if-1", 1, "what-if")]
    r = stub.Simulate(pb.SimulateRequest(objects=[yaml.safe_dump_all(extra)]), metadata=MD)
    assert {"team/what-if-0", "team/what-if-1"} <= set(r.placements)
    assert r.base_cycle == 3
    assert dict(backend.objects) == before and history.latest() is not None and history.latest().cycle == 3
    code, detail = code_of(stub.Simulate, pb.SimulateRequest(objects=["kind: [unclosed"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "objects[0]" in detail
    code, detail = code_of(stub.Simulate, pb.SimulateRequest(objects=["{kind: Deployment, metadata: {name: x}}"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Deployment" in detail
    code, _ = code_of(stub.Simulate, pb.SimulateRequest(objects=[yaml.safe_dump(extra[0])], cycles=1000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_snapshot_replays_to_the_same_decisions(served: Any, tmp_path: Path) -> None:
    stub, history, _, _ = served
    r = stub.GetSnapshot(pb.GetSnapshotRequest(cycle=1), metadata=MD)
    assert r.cycle == 1
    doc = json.loads(r.snapshot_json)
    assert doc["kind"] == "List" and doc["kaisched"]["config"]["schedulerName"] == "kai-scheduler"
    path = tmp_path / "snap.json"
    path.write_text(r.snapshot_json)
    out = subprocess.run(
        [sys.executable, "-m", "scheduler.cli.main", "replay", str(path), "--cycles", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    replayed = json.loads(out.stdout)
    first = history.entries()[0].record
    assert replayed["placements"] == dict(sorted(first.placements().items()))
    assert replayed["unscheduled"] == {
        k: {"reason": str(d.reason), "message": d.message} for k, d in first.unplaced().items()
    }
    code, _ = code_of(stub.GetSnapshot, pb.GetSnapshotRequest(cycle=99))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(stub.GetSnapshot, pb.GetSnapshotRequest(cycle=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_streams_new_decisions(served: Any) -> None:
    stub, history, backend, _ = served
    stream = stub.WatchDecisions(pb.WatchDecisionsRequest(namespace="team", waiting_only=True), metadata=MD)
    import threading

    got: list[pb.Decision] = []

    def read() -> None:
        for ev in stream:
            got.append(ev.decision)
            if len(got) >= 3:
                stream.cancel()
                return

    t = threading.Thread(target=read)
    t.start()
    import time

    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        run_cycles_from(backend, history, history.latest().cycle + 1)  # type: ignore[union-attr]
        time.sleep(0.2)
    t.join(10)
    assert got and all(not d.placed for d in got)
    assert {d.job for d in got} <= {"team/short", "team/limited", "team/lost"}


def run_cycles_from(backend: MemoryBackend, history: CycleHistory, cycle: int) -> None:
    snap = backend.snapshot()
    record = run_session(snap, SchedulerConfig(), now=float(cycle), cycle=cycle)
    history.add(CycleEntry(record, float(cycle), (), {}, snapshot=snap, raw=raw_of(backend)))


def test_refuses_open_address_without_protection() -> None:
    with pytest.raises(ValueError, match="without TLS or a token"):
        start_server(CycleHistory(), SchedulerConfig(), ServerOptions(address="0.0.0.0", port=0))
    with pytest.raises(ValueError, match="certificate and a key"):
        start_server(CycleHistory(), SchedulerConfig(), ServerOptions(port=0, tls_cert=b"x"))


def _self_signed(tmp_path: Path) -> tuple[bytes, bytes]:
    key, crt = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return crt.read_bytes(), key.read_bytes()


def test_tls_serves_only_tls_clients(served: Any, tmp_path: Path) -> None:
    _, history, _, _ = served
    cert, key = _self_signed(tmp_path)
    server = start_server(history, SchedulerConfig(), ServerOptions(port=0, tls_cert=cert, tls_key=key))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert)
        with grpc.secure_channel(f"127.0.0.1:{server.port}", creds) as ch:
            assert pb_grpc.DebugStub(ch).ListQueues(pb.ListQueuesRequest(), timeout=10).queues
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch, pytest.raises(grpc.RpcError) as info:
            pb_grpc.DebugStub(ch).ListQueues(pb.ListQueuesRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # a plaintext client gets no answer
    finally:
        server.stop(0)

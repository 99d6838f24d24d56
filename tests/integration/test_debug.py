"""The debug API of `kaisched run` on the real API server: every RPC through a real gRPC channel, explain on
crafted cases, bad requests, `kaisched ctl`, snapshot -> `kaisched replay` giving the daemon's decisions,
and the OpenTelemetry console exporter producing cycle spans; then the API's bounds under a hostile
caller (50 watchers, an alias bomb, oversized and slow Simulates, a huge name, an empty token file).

One daemon serves the whole scenario (the daemon-subprocess pattern of test_daemon.py, reused from there)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
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
        # binds run beside the loop: the cycles from the placing one on report them as the pipeline finishes
        assert sum(c.pods_bound for c in cycles if c.cycle >= placing.cycle) >= 2

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


# ----------------------------------------------------------------------------------- hostile callers
def alias_bomb() -> str:
    """417 bytes standing for 10**6 scalars (a "billion laughs" of six levels of ten)."""
    lines = ["kind: Pod", "metadata: {name: bomb, namespace: default}", "l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 6)]
    return "\n".join([*lines, "spec: *l5"]) + "\n"


def what_if(ns: str, n: int) -> str:
    """n pods of 1 GPU as a YAML stream (about 300 bytes each)."""
    return "".join(
        f"---\nkind: Pod\napiVersion: v1\nmetadata: {{name: what-if-{i}, namespace: {ns}}}\n"
        f"spec:\n  schedulerName: kai-scheduler\n  nodeSelector: {{test-id: {ns}}}\n"
        f"  containers: [{{name: c, image: x, resources: {{limits: {{{GPU}: '1'}}}}}}]\n"
        for i in range(n)
    )


def failure(fn: Any, *args: Any, **kw: Any) -> tuple[grpc.StatusCode, str, float]:
    start = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kw)
    return err.value.code(), err.value.details(), time.perf_counter() - start


def latencies(stub: Any, health: Any, n: int = 10) -> list[float]:
    """Seconds each health check and ListCycles took (both with a 1 s deadline)."""
    out = []
    for _ in range(n):
        for call in (
            lambda: health.Check(health_pb2.HealthCheckRequest(service="kai.scheduler.debug.v1.Debug"), timeout=1),
            lambda: stub.ListCycles(pb.ListCyclesRequest(limit=5), timeout=1),
        ):
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
    return out


def resident_bytes(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def cycle_gaps(stub: Any, since: float) -> list[float]:
    starts = sorted(c.start_unix for c in stub.ListCycles(pb.ListCyclesRequest()).cycles if c.start_unix >= since)
    return [b - a for a, b in itertools.pairwise(starts)]


def test_debug_api_bounds_on_the_daemon(kube: Kube, daemon: Daemons, tmp_path: Path) -> None:
    ns = kube.ns
    kube.node("lim-n1", 8)
    port = free_port()
    period = 0.2  # the test daemons' --schedule-period
    d = daemon.start("--debug-port", str(port), "--debug-history", "1000")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 8 << 20)])
    stub, health = pb_grpc.DebugStub(channel), health_pb2_grpc.HealthStub(channel)
    watchers: list[Any] = []
    try:
        wait_for(lambda: stub.ListCycles(pb.ListCyclesRequest(limit=1)).cycles, "a first cycle", daemon)
        idle = max(latencies(stub, health))

        # -- 50 watchers: 8 (the default --debug-max-streams) are served, the rest refused at once
        watchers = [stub.WatchDecisions(pb.WatchDecisionsRequest(namespace=ns)) for _ in range(50)]
        accepted, refused = [], []
        for w in watchers:
            try:
                w.initial_metadata()  # the server sends it once the stream holds its slot
                (refused if w.done() else accepted).append(w)
            except grpc.RpcError:
                refused.append(w)
        assert len(accepted) == 8, [w.details() for w in refused[:1]]
        for w in refused:
            assert w.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "8 WatchDecisions streams" in w.details() and "--debug-max-streams" in w.details()
        code, detail, took = failure(lambda: next(stub.WatchDecisions(pb.WatchDecisionsRequest(), timeout=5)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and took < 1
        loaded = latencies(stub, health)
        assert max(loaded) < 1, loaded
        # the open streams still deliver
        kube.podgroup("watched", 1)
        kube.gang("watched", 1, gpu=1)
        first = next(accepted[0])
        assert first.decision.job.startswith(f"{ns}/")

        # -- when the watchers go, their slots come back
        for w in watchers:
            w.cancel()

        def eight_again() -> list[Any] | None:
            again = [stub.WatchDecisions(pb.WatchDecisionsRequest()) for _ in range(8)]
            try:
                for w in again:
                    w.initial_metadata()
                return again if not any(w.done() for w in again) else None
            except grpc.RpcError:
                return None
            finally:
                for w in again:
                    w.cancel()

        wait_for(eight_again, "8 new streams accepted after the watchers closed", daemon, timeout=5)

        # -- Simulate: an alias bomb, a recursive anchor, a 3.9 MB request, too many objects
        code, detail, bomb_s = failure(stub.Simulate, pb.SimulateRequest(objects=[alias_bomb()]), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "--debug-simulate-max-nodes" in detail and bomb_s < 1
        code, detail, _ = failure(stub.Simulate, pb.SimulateRequest(objects=["&a [*a]"]), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "recursive YAML" in detail
        big = what_if(ns, 13_000)
        assert len(big) > 3_900_000
        code, detail, big_s = failure(stub.Simulate, pb.SimulateRequest(objects=[big]), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "1048576" in detail and big_s < 1
        many = [json.dumps({"kind": "Pod", "metadata": {"name": f"p{i}", "namespace": ns}}) for i in range(2001)]
        code, detail, _ = failure(stub.Simulate, pb.SimulateRequest(objects=many), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "more than 2000 objects" in detail

        # -- slow Simulates with a short deadline, back to back for 5 s: each stops promptly (the next is
        # refused while the last one winds down), health answers, and the daemon's cycles keep their period
        slow = what_if(ns, 2000)  # ~0.6 MB: well over 0.3 s to parse
        start, outcomes, overruns = time.time(), dict[grpc.StatusCode, int](), list[float]()
        while time.time() - start < 5:
            code, _, took = failure(stub.Simulate, pb.SimulateRequest(objects=[slow]), timeout=0.3)
            outcomes[code] = outcomes.get(code, 0) + 1
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                overruns.append(took - 0.3)
            assert max(latencies(stub, health, 1)) < 1
        # a call refused as busy would mean the one before had not stopped yet: stops take milliseconds
        stopped_in_time = outcomes.get(grpc.StatusCode.DEADLINE_EXCEEDED, 0)
        assert stopped_in_time >= 5 and stopped_in_time >= 0.8 * sum(outcomes.values()), outcomes
        assert set(outcomes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}, outcomes
        assert max(overruns) < 0.2, overruns
        gaps = cycle_gaps(stub, start)
        assert len(gaps) >= 5 / period * 0.7 and max(gaps) < period + 0.3, gaps
        # and the largest one allowed completes, in bounded time and memory, with the cycles on time
        rss = resident_bytes(d.popen.pid)
        start = time.time()
        sim = stub.Simulate(pb.SimulateRequest(objects=[slow]), timeout=30)
        full_s, grown = time.time() - start, resident_bytes(d.popen.pid) - rss
        assert len(sim.placements) == 7 and full_s < 10, full_s  # the node has 8 GPUs, "watched" holds one
        full_gaps = cycle_gaps(stub, start)
        assert max(full_gaps) < period + 0.3, full_gaps
        assert grown < 100 << 20, grown

        # -- a 1 MB name is refused without being echoed
        code, detail, _ = failure(stub.ExplainPodGroup, pb.ExplainPodGroupRequest(namespace=ns, name="x" * 1_000_000))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "253" in detail and len(detail) < 300
        print(
            f"health/ListCycles max {idle * 1000:.1f} ms idle, {max(loaded) * 1000:.1f} ms with 50 watchers; "
            f"alias bomb refused in {bomb_s * 1000:.1f} ms; 3.9 MB refused in {big_s * 1000:.1f} ms; "
            f"deadline overrun max {max(overruns) * 1000:.1f} ms; cycle gap max {max(gaps):.3f} s; {outcomes}; "
            f"{len(slow)} B Simulate {full_s:.2f} s, +{grown >> 20} MB RSS, cycle gap max {max(full_gaps):.3f} s"
        )
    finally:
        for w in watchers:
            w.cancel()
        channel.close()


def test_empty_token_file_refuses_to_start(kube: Kube, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("  \n")
    flags = ["--debug-port", str(free_port()), "--debug-token-file", str(token), "--http-port", str(free_port())]
    out = subprocess.run(
        [sys.executable, "-m", "scheduler.cli.main", "run", "--kubeconfig", str(kube.kubeconfig), *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "is empty: refusing to serve the debug API" in out.stderr and "Traceback" not in out.stderr

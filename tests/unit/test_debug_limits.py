"""The debug API's bounds: stream slots, Simulate's size, alias, object, time and concurrency limits,
names that are checked instead of echoed, and a server that stops even with health Watch streams open.

The server runs in-process over a real gRPC channel (as in test_debug_service.py) with small limits, so
each bound is reached in milliseconds; the daemon on a real API server is tests/integration/test_debug.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler.backends.memory import MemoryBackend
from scheduler.debug._pb import debug_pb2 as pb
from scheduler.debug._pb import debug_pb2_grpc as pb_grpc
from scheduler.debug.history import CycleHistory
from scheduler.debug.requests import Abort
from scheduler.debug.server import ServerOptions, start_server
from scheduler.debug.simulate import SimulateLimits, SimulateRunner
from scheduler.framework.config import SchedulerConfig
from tests.unit.test_debug_input import alias_bomb
from tests.unit.test_debug_service import cluster, pod, podgroup, run_cycles

# ------------------------------------------------------------------------------------------- inputs


def gangs(n_objects: int) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for g in range(n_objects // 5):
        objs.append(podgroup(f"g{g}", 4, "q1"))
        objs += [pod(f"g{g}-{i}", 1, f"g{g}") for i in range(4)]
    return objs


# -------------------------------------------------------------------------------------- the server

MD: list[tuple[str, str]] = []
LIMITS = SimulateLimits(max_bytes=200_000, max_objects=300, max_nodes=20_000, timeout_s=5.0, concurrency=1)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, Any, int]]:
    config = SchedulerConfig()
    backend = MemoryBackend(cluster())
    history = CycleHistory(10)
    run_cycles(backend, history, config, 3)
    server = start_server(history, config, ServerOptions(port=0, workers=2, max_streams=3, simulate=LIMITS))
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield pb_grpc.DebugStub(channel), health_pb2_grpc.HealthStub(channel), server.port
    channel.close()
    server.stop(0)


def code_of(call: Callable[..., Any], *args: Any, **kw: Any) -> tuple[grpc.StatusCode, str, float]:
    start = time.perf_counter()
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return info.value.code(), info.value.details(), time.perf_counter() - start


def answers_quickly(stub: Any, health: Any) -> None:
    for _ in range(5):
        start = time.perf_counter()
        ok = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
        assert ok.status == health_pb2.HealthCheckResponse.SERVING
        assert stub.ListCycles(pb.ListCyclesRequest(limit=1), timeout=1).cycles
        assert time.perf_counter() - start < 1


def test_streams_beyond_the_limit_are_refused_and_health_answers(served: Any) -> None:
    stub, health, _ = served
    open_ = [stub.WatchDecisions(pb.WatchDecisionsRequest()) for _ in range(3)]
    for call in open_:
        call.initial_metadata()  # sent once the stream holds its slot
    # far more streams than threads (2 + 3 + 1): each is refused at once, nothing queues
    refused = [stub.WatchDecisions(pb.WatchDecisionsRequest()) for _ in range(20)]
    for call in refused:
        assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "3 WatchDecisions streams" in call.details() and "--debug-max-streams" in call.details()
    answers_quickly(stub, health)
    for call in open_:
        call.cancel()
    # the slots come back as the cancelled streams end (promptly, but not within the cancel call itself)
    for call in open_streams(stub, 3, within=2):
        call.cancel()


def open_streams(stub: Any, n: int, within: float) -> list[Any]:
    """n accepted WatchDecisions streams, retrying refused ones for up to `within` seconds."""
    deadline = time.monotonic() + within
    accepted: list[Any] = []
    while len(accepted) < n:
        call = stub.WatchDecisions(pb.WatchDecisionsRequest())
        call.initial_metadata()
        if not call.done():
            accepted.append(call)
            continue
        assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, call.details()
        if time.monotonic() > deadline:
            for c in accepted:
                c.cancel()
            raise AssertionError(f"only {len(accepted)} of {n} streams accepted after {within}s: slots leaked")
        time.sleep(0.02)
    return accepted


def test_watch_namespace_is_checked(served: Any) -> None:
    stub = served[0]
    call = stub.WatchDecisions(pb.WatchDecisionsRequest(namespace="x" * 1_000_000))
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT and len(call.details()) < 300


def test_simulate_refuses_oversized_bombs_and_recursion_quickly(served: Any) -> None:
    stub = served[0]
    big = yaml.safe_dump_all(gangs(800))
    assert len(big) > LIMITS.max_bytes
    code, detail, took = code_of(stub.Simulate, pb.SimulateRequest(objects=[big]), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "200000" in detail and "--debug-simulate-max-bytes" in detail
    assert took < 1
    code, detail, took = code_of(stub.Simulate, pb.SimulateRequest(objects=[alias_bomb()]), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "20000" in detail and "--debug-simulate-max-nodes" in detail
    assert took < 1
    for text in ("&a [*a]", "kind: Pod\nmetadata: &m {name: x, labels: *m}\n"):
        code, detail, _ = code_of(stub.Simulate, pb.SimulateRequest(objects=[text]), timeout=5)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "recursive YAML" in detail, detail
    code, detail, _ = code_of(stub.Simulate, pb.SimulateRequest(objects=[json.dumps(o) for o in gangs(305)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "more than 300 objects" in detail


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ({"kind": "Pod", "metadata": {"name": "x", "namespace": "team"}, "spec": 5}, "Pod team/x is malformed"),
        ({"kind": "Pod", "metadata": 5}, "has no metadata.name"),
        ({"kind": "Pod", "metadata": {"name": "Bad_Name"}}, "not a valid Kubernetes name"),
        ({"kind": "Pod", "metadata": {"name": "x", "namespace": "n" * 64}}, "longer than 63"),
        ({"kind": ["Pod"], "metadata": {"name": "x"}}, "kind list cannot be simulated"),
        ({"kind": "Topology", "metadata": {"name": "t"}, "spec": {"levels": 5}}, "Topology t is malformed"),
    ],
)
def test_simulate_malformed_objects_are_invalid_argument(served: Any, obj: dict[str, Any], words: str) -> None:
    code, detail, _ = code_of(served[0].Simulate, pb.SimulateRequest(objects=[json.dumps(obj)]), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in detail, detail


def test_simulate_stops_at_the_deadline_and_frees_its_slot(served: Any) -> None:
    stub, health, _ = served
    # 295 YAML documents take longer to parse than the deadline allows; parsing checks between documents
    slow = yaml.safe_dump_all(gangs(295))
    code, _, took = code_of(stub.Simulate, pb.SimulateRequest(objects=[slow]), timeout=0.05)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and took < 0.5
    answers_quickly(stub, health)
    small = yaml.safe_dump_all([podgroup("w", 2, "q1"), pod("w-0", 1, "w"), pod("w-1", 1, "w")])
    deadline = time.monotonic() + 2
    while True:  # the stopped simulation gives its slot back at its next check
        try:
            r = stub.Simulate(pb.SimulateRequest(objects=[small]), timeout=5)
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
            time.sleep(0.02)
    assert {"team/w-0", "team/w-1"} <= set(r.placements)


def test_simulate_has_a_server_side_time_limit() -> None:
    config = SchedulerConfig()
    history = CycleHistory(10)
    run_cycles(MemoryBackend(cluster()), history, config, 1)
    limits = SimulateLimits(max_bytes=200_000, max_objects=300, max_nodes=50_000, timeout_s=0.05)
    server = start_server(history, config, ServerOptions(port=0, simulate=limits))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            slow = yaml.safe_dump_all(gangs(295))
            code, detail, took = code_of(pb_grpc.DebugStub(ch).Simulate, pb.SimulateRequest(objects=[slow]))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "--debug-simulate-timeout" in detail and took < 1
    finally:
        server.stop(0)


def test_health_watch_streams_hold_no_thread_and_do_not_hang_shutdown() -> None:
    server = start_server(CycleHistory(), SchedulerConfig(), ServerOptions(port=0, workers=1, max_streams=1))
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    health = health_pb2_grpc.HealthStub(channel)
    watches = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(40)]
    for w in watches:
        assert next(w).status == health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING
    for w in watches[::2]:
        w.cancel()
    stopper = threading.Thread(target=server.stop, args=(0.5,))
    stopper.start()
    stopper.join(10)
    alive = stopper.is_alive()
    channel.close()
    assert not alive, "DebugServer.stop hung with health Watch streams open"


class FakeContext:
    """What SimulateRunner asks of a grpc.ServicerContext."""

    def __init__(self, remaining: float | None = None) -> None:
        self.remaining, self.active, self.callbacks = remaining, True, list[Callable[[], None]]()

    def time_remaining(self) -> float | None:
        return self.remaining

    def is_active(self) -> bool:
        return self.active

    def add_callback(self, fn: Callable[[], None]) -> bool:
        if not self.active:
            return False  # as gRPC: the call has already ended
        self.callbacks.append(fn)
        return True

    def cancel(self) -> None:
        self.active = False
        for fn in self.callbacks:
            fn()


def test_runner_busy_cancel_and_slot_held_until_work_stops() -> None:
    runner = SimulateRunner(SimulateLimits(concurrency=1, timeout_s=10))
    started, stopped = threading.Event(), threading.Event()

    def work(check: Callable[[], None]) -> str:
        started.set()
        try:
            while True:
                check()
                time.sleep(0.01)
        finally:
            stopped.set()

    first = FakeContext()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            runner.run(first, work)  # type: ignore[arg-type]
        except Abort as err:
            outcome.append(err)

    t = threading.Thread(target=call)
    t.start()
    assert started.wait(2)
    with pytest.raises(Abort) as info:
        runner.run(FakeContext(), lambda check: "x")  # type: ignore[arg-type]
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--debug-max-simulations" in info.value.message
    first.cancel()
    t.join(2)
    assert outcome and isinstance(outcome[0], Abort) and outcome[0].code == grpc.StatusCode.CANCELLED
    assert stopped.wait(1)
    assert when_free(runner, FakeContext(), lambda check: "ok") == "ok"  # the slot is back once work stopped
    # a caller's deadline shorter than the server's limit: answered at the deadline, the work stops after
    stopped.clear()
    start = time.perf_counter()
    with pytest.raises(Abort) as info:
        runner.run(FakeContext(remaining=0.05), work)  # type: ignore[arg-type]
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and "deadline" in info.value.message
    assert time.perf_counter() - start < 0.5 and stopped.wait(1)
    # work whose own check fired first (raising Stopped) is a deadline too
    with pytest.raises(Abort) as info:
        when_free(runner, FakeContext(remaining=0.0), lambda check: check())
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    runner.close()
    with pytest.raises(Abort) as info:
        runner.run(FakeContext(), lambda check: "late")  # type: ignore[arg-type]
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def when_free(runner: SimulateRunner, context: FakeContext, work: Callable[[Callable[[], None]], Any]) -> Any:
    """runner.run, retried while the previous simulation still holds the slot (up to 1 s)."""
    deadline = time.monotonic() + 1
    while True:
        try:
            return runner.run(context, work)  # type: ignore[arg-type]
        except Abort as err:
            if err.code != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


# ------------------------------------------------------------------------------------------- names


def test_explain_and_topology_check_names_without_echoing_them(served: Any) -> None:
    stub = served[0]
    huge = "x" * 1_000_000
    code, detail, _ = code_of(stub.ExplainPodGroup, pb.ExplainPodGroupRequest(namespace="team", name=huge))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "253" in detail and len(detail) < 300, detail
    assert "1000000 characters" in detail
    code, detail, _ = code_of(stub.ExplainPodGroup, pb.ExplainPodGroupRequest(namespace=huge, name="short"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "63" in detail and len(detail) < 300
    code, detail, _ = code_of(stub.ExplainPodGroup, pb.ExplainPodGroupRequest(namespace="Team", name="short"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "DNS-1123 label" in detail
    code, detail, _ = code_of(stub.GetTopology, pb.GetTopologyRequest(name="é" * 500_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(detail.encode()) < 400
    code, detail, _ = code_of(stub.ListPodGroups, pb.ListPodGroupsRequest(state=huge))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(detail) < 300
    code, _, _ = code_of(stub.ListPodGroups, pb.ListPodGroupsRequest(queue="q/1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # valid names still work
    assert stub.ExplainPodGroup(pb.ExplainPodGroupRequest(namespace="team", name="short")).reason

"""The gRPC debug service (kai.scheduler.debug.v1.Debug) with health checking, reflection and options for
TLS and a bearer token. Every answer is read from the cycle history: the service never touches the cluster.

No caller can starve the others. The server's threads are split three ways: at most `max_streams`
WatchDecisions streams hold one each (one more is refused at once with RESOURCE_EXHAUSTED), Simulate
holds at most `SimulateLimits.concurrency` (scheduler.debug.simulate), and `workers` more are always left
for health checks and the other unary calls, which answer in milliseconds.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scheduler.debug._pb import debug_pb2 as pb
from scheduler.debug._pb import debug_pb2_grpc as pb_grpc
from scheduler.debug.history import CycleEntry, CycleHistory
from scheduler.debug.options import DEFAULT_MAX_STREAMS, ServerOptions, SimulateLimits
from scheduler.debug.requests import Abort, check_name, clip, echo
from scheduler.debug.simulate import (
    MAX_CYCLES,
    Check,
    SimulateRunner,
    check_size,
    parse_objects,
    run_simulation,
)
from scheduler.debug.snapshot import snapshot_document
from scheduler.debug.views import (
    STATES,
    cycle_message,
    decision_message,
    explain,
    pod_group_messages,
    queue_messages,
    topology_messages,
)
from scheduler.framework.config import SchedulerConfig

log = logging.getLogger("kaisched.debug")

SERVICE = pb.DESCRIPTOR.services_by_name["Debug"].full_name


class DebugService:
    """The servicer: registered with the generated `add_DebugServicer_to_server`."""

    def __init__(
        self,
        history: CycleHistory,
        config: SchedulerConfig,
        poll_s: float = 0.5,
        max_streams: int = DEFAULT_MAX_STREAMS,
        simulate: SimulateLimits | None = None,
    ) -> None:
        self.history = history
        self.config = config
        self.poll_s = poll_s
        self.max_streams = max_streams
        self._streams = threading.BoundedSemaphore(max_streams)
        self.simulations = SimulateRunner(simulate or SimulateLimits())

    # --- helpers ------------------------------------------------------------------------------
    def _base(self, cycle: int = 0) -> CycleEntry:
        if cycle < 0:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"cycle must be >= 0 (0 = latest), got {cycle}")
        entry = self.history.with_snapshot(cycle)
        if entry is None or entry.snapshot is None:
            if cycle and any(e.cycle == cycle for e in self.history.entries()):
                raise Abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"cycle {cycle} is retained but no longer holds its snapshot; only the newest cycle and the "
                    "newest cycle that placed pods keep theirs",
                )
            if cycle:
                raise Abort(grpc.StatusCode.NOT_FOUND, f"cycle {cycle} is not among the retained cycles")
            raise Abort(grpc.StatusCode.UNAVAILABLE, "no scheduling cycle has run yet (not synced, or not leader)")
        return entry

    @staticmethod
    def _run(context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Abort as err:
            context.abort(err.code, clip(err.message))
        except Exception as err:
            log.exception("debug API call failed")
            context.abort(grpc.StatusCode.INTERNAL, clip(f"internal error: {type(err).__name__}: {err}"))

    # --- RPCs ---------------------------------------------------------------------------------
    def GetSnapshot(self, request: pb.GetSnapshotRequest, context: grpc.ServicerContext) -> pb.GetSnapshotResponse:
        def go() -> pb.GetSnapshotResponse:
            entry = self._base(request.cycle)
            doc = snapshot_document(entry, self.config)
            return pb.GetSnapshotResponse(
                cycle=entry.cycle, objects=len(doc["items"]), snapshot_json=json.dumps(doc, sort_keys=True)
            )

        out: pb.GetSnapshotResponse = self._run(context, go)
        return out

    def ListQueues(self, request: pb.ListQueuesRequest, context: grpc.ServicerContext) -> pb.ListQueuesResponse:
        def go() -> pb.ListQueuesResponse:
            entry = self._base()
            assert entry.snapshot is not None
            return pb.ListQueuesResponse(
                cycle=entry.cycle, queues=queue_messages(entry.snapshot, entry.record, self.config)
            )

        out: pb.ListQueuesResponse = self._run(context, go)
        return out

    def ListPodGroups(
        self, request: pb.ListPodGroupsRequest, context: grpc.ServicerContext
    ) -> pb.ListPodGroupsResponse:
        def go() -> pb.ListPodGroupsResponse:
            if request.state and request.state not in STATES:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"state must be one of {', '.join(STATES)} (or empty for all), got {echo(request.state)}",
                )
            check_name(request.namespace, "namespace", namespace=True)
            check_name(request.queue, "queue")
            entry = self._base()
            assert entry.snapshot is not None
            groups = [
                g
                for g in pod_group_messages(self.history.entries(), entry.snapshot, self.config)
                if (not request.namespace or g.namespace == request.namespace)
                and (not request.queue or g.queue == request.queue)
                and (not request.state or g.state == request.state)
            ]
            return pb.ListPodGroupsResponse(cycle=entry.cycle, pod_groups=groups)

        out: pb.ListPodGroupsResponse = self._run(context, go)
        return out

    def ExplainPodGroup(
        self, request: pb.ExplainPodGroupRequest, context: grpc.ServicerContext
    ) -> pb.ExplainPodGroupResponse:
        def go() -> pb.ExplainPodGroupResponse:
            if not request.namespace or not request.name:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "namespace and name are required (a PodGroup, or a pod without one); "
                    f"got namespace={echo(request.namespace)} name={echo(request.name)}",
                )
            check_name(request.namespace, "namespace", namespace=True)
            check_name(request.name, "name")
            entry = self._base()
            key = f"{request.namespace}/{request.name}"
            found = explain(self.history.entries(), key, entry.snapshot, self.config)
            if found is None:
                raise Abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"{key}: no PodGroup or pending pod of that name in the scheduler's cache, and no decision "
                    f"about it in the last {len(self.history.entries())} cycles",
                )
            return found

        out: pb.ExplainPodGroupResponse = self._run(context, go)
        return out

    def GetTopology(self, request: pb.GetTopologyRequest, context: grpc.ServicerContext) -> pb.GetTopologyResponse:
        def go() -> pb.GetTopologyResponse:
            check_name(request.name, "Topology name")
            entry = self._base()
            snap = entry.snapshot
            assert snap is not None
            if request.name and request.name not in snap.topologies:
                known = ", ".join(sorted(snap.topologies)) or "none"
                raise Abort(grpc.StatusCode.NOT_FOUND, f"Topology {request.name!r} does not exist (known: {known})")
            names = [request.name] if request.name else sorted(snap.topologies)
            return pb.GetTopologyResponse(cycle=entry.cycle, topologies=topology_messages(snap, self.config, names))

        out: pb.GetTopologyResponse = self._run(context, go)
        return out

    def ListCycles(self, request: pb.ListCyclesRequest, context: grpc.ServicerContext) -> pb.ListCyclesResponse:
        def go() -> pb.ListCyclesResponse:
            if request.limit < 0:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit must be >= 0 (0 = all), got {request.limit}")
            entries = self.history.entries()
            if request.limit:
                entries = entries[-request.limit :]
            return pb.ListCyclesResponse(
                cycles=[cycle_message(e, request.include_decisions) for e in reversed(entries)]
            )

        out: pb.ListCyclesResponse = self._run(context, go)
        return out

    def Simulate(self, request: pb.SimulateRequest, context: grpc.ServicerContext) -> pb.SimulateResponse:
        def go() -> pb.SimulateResponse:
            cycles = request.cycles or 1
            if not 1 <= cycles <= MAX_CYCLES:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"cycles must be 1..{MAX_CYCLES}, got {request.cycles}")
            limits = self.simulations.limits
            check_size(request.ByteSize(), limits)
            if not request.objects:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "objects is empty: give the PodGroups and pods to try")
            entry = self._base()

            def work(check: Check) -> pb.SimulateResponse:
                extra = parse_objects(request.objects, limits, check)
                check()
                base = snapshot_document(entry, self.config)["items"]
                result = run_simulation(base, extra, self.config, cycles, check)
                unscheduled = result.records[-1].unplaced() if result.records else {}
                return pb.SimulateResponse(
                    placements=dict(sorted(result.placements.items())),
                    unscheduled=[decision_message(d, c) for c, d in _numbered(result.cycles, unscheduled)],
                    cycles=result.cycles,
                    base_cycle=entry.cycle,
                )

            return self.simulations.run(context, work)

        out: pb.SimulateResponse = self._run(context, go)
        return out

    def WatchDecisions(
        self, request: pb.WatchDecisionsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchDecisionsResponse]:
        try:
            check_name(request.namespace, "namespace", namespace=True)
        except Abort as err:
            context.abort(err.code, err.message)
        if not self._streams.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.max_streams} WatchDecisions streams are open, the limit (kaisched run --debug-max-streams); "
                "close one or try again later",
            )
        try:
            context.send_initial_metadata(())  # accepted: a client can tell a refused stream from a quiet one
            yield from self._watch(request, context)
        finally:
            self._streams.release()

    def _watch(
        self, request: pb.WatchDecisionsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchDecisionsResponse]:
        q = self.history.subscribe()

        def wake() -> None:  # the call ended (cancelled, deadline, shutdown): stop waiting at once
            with contextlib.suppress(queue.Full):
                q.put_nowait(None)

        context.add_callback(wake)
        last = self.history.latest()
        prev = {k: (d.placed, d.reason, d.message) for k, d in last.record.decisions.items()} if last else {}
        try:
            while context.is_active():
                try:
                    entry = q.get(timeout=self.poll_s)
                except queue.Empty:
                    continue
                if entry is None:
                    return
                for key in entry.record.order + sorted(set(entry.record.decisions) - set(entry.record.order)):
                    d = entry.record.decisions[key]
                    sig = (d.placed, d.reason, d.message)
                    changed = prev.get(key) != sig or bool(d.pods)
                    prev[key] = sig
                    if request.namespace and not key.startswith(request.namespace + "/"):
                        continue
                    if request.waiting_only and d.placed:
                        continue
                    if request.changes_only and not changed:
                        continue
                    yield pb.WatchDecisionsResponse(decision=decision_message(d, entry.cycle))
        finally:
            self.history.unsubscribe(q)


def _numbered(cycles: int, decisions: dict[str, Any]) -> list[tuple[int, Any]]:
    return [(cycles, d) for _, d in sorted(decisions.items())]


# ------------------------------------------------------------------------------------------- the server
def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


class _TokenAuth(grpc.ServerInterceptor):
    """Bearer token on every method except health checks (probes carry no credentials)."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return handler
        given = next((str(v) for k, v in handler_call_details.invocation_metadata if k == "authorization"), "")
        if hmac.compare_digest(given.encode(), self.expected):
            return handler

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (metadata authorization)")

        kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }
        make = kinds[(handler.request_streaming, handler.response_streaming)]
        return make(
            deny, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


@dataclass(slots=True)
class DebugServer:
    server: grpc.Server
    port: int
    history: CycleHistory
    health: health.HealthServicer
    service: DebugService

    def stop(self, grace: float = 1.0) -> None:
        # No health.enter_graceful_shutdown(): it sends NOT_SERVING to every health Watch stream while holding
        # the servicer's lock, and a Watch that closes meanwhile takes that lock on the thread that would
        # complete the send, so shutdown hangs for good (grpcio-health-checking 1.x). Stopping the server
        # ends those streams anyway, and health Watch holds no worker thread (the servicer is non-blocking).
        self.history.close()
        self.service.simulations.close()
        self.server.stop(grace).wait(grace + 1)


def start_server(history: CycleHistory, config: SchedulerConfig, opts: ServerOptions) -> DebugServer:
    """Start serving; raises ValueError for unsafe or incomplete options, RuntimeError if the port is taken."""
    if bool(opts.tls_cert) != bool(opts.tls_key):
        raise ValueError("TLS needs both a certificate and a key")
    if opts.tls_client_ca and not opts.tls_cert:
        raise ValueError("a client CA needs a server certificate and key too")
    if not is_loopback(opts.address) and not (opts.token or opts.tls_cert):
        raise ValueError(
            f"the debug API would listen on {opts.address} without TLS or a token: set a token and/or TLS, "
            "or listen on 127.0.0.1"
        )
    interceptors: list[grpc.ServerInterceptor] = [_TokenAuth(opts.token)] if opts.token else []
    server = grpc.server(
        ThreadPoolExecutor(max_workers=opts.threads, thread_name_prefix="debug"),
        interceptors=interceptors,
        options=[("grpc.max_receive_message_length", opts.max_message_bytes)],
    )
    service = DebugService(history, config, max_streams=opts.max_streams, simulate=opts.simulate)
    add: Callable[[DebugService, grpc.Server], None] = pb_grpc.add_DebugServicer_to_server
    add(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    host = f"[{opts.address}]" if ":" in opts.address and not opts.address.startswith("[") else opts.address
    target = f"{host}:{opts.port}"
    if opts.tls_cert:
        creds = grpc.ssl_server_credentials(
            [(opts.tls_key, opts.tls_cert)],
            root_certificates=opts.tls_client_ca or None,
            require_client_auth=bool(opts.tls_client_ca),
        )
        port = server.add_secure_port(target, creds)
    else:
        port = server.add_insecure_port(target)
    if not port:
        raise RuntimeError(f"cannot listen on {target}")
    server.start()
    log.info(
        "debug API on %s:%d (tls=%s, token=%s, streams<=%d, simulations<=%d)",
        opts.address,
        port,
        bool(opts.tls_cert),
        bool(opts.token),
        opts.max_streams,
        opts.simulate.concurrency,
    )
    return DebugServer(server, port, history, health_servicer, service)

"""The debug API's Simulate, with a bounded cost.

A caller may send anything, so every step has a bound it cannot talk its way past:
- size: the request's bytes (checked before any parsing), the YAML nodes its documents hold with every
  alias expanded (an alias bomb or a recursive anchor is refused while composing, before a single object
  is built: scheduler.kube.loader), and the number of objects;
- time: the caller's deadline or the server's own limit per call, whichever is sooner, checked between
  documents, between objects and between simulated cycles. A cycle is pure Python and cannot be
  interrupted, but its work is bounded by the object limits and the placement search budget;
- concurrency: a pool of its own, at most `concurrency` simulations at once; one more is refused at
  once (RESOURCE_EXHAUSTED) rather than queued behind them.

The gRPC worker that took the call waits for the simulation, and answers DEADLINE_EXCEEDED at the
deadline even while a cycle is still running; that simulation stops at its next check and keeps its slot
until then, so no more than `concurrency` ever run. The daemon's scheduling thread shares the
interpreter (the GIL) with them: a running simulation takes CPU from a cycle, which is why the work per
call is bounded rather than merely moved to another thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from scheduler.backends.memory import MemoryBackend
from scheduler.backends.simulation import SimulationResult, run_cycles
from scheduler.debug.options import SimulateLimits
from scheduler.debug.requests import Abort, echo, name_problem
from scheduler.framework.config import SchedulerConfig
from scheduler.kube.loader import LoadError, TooLarge, flatten, load_documents

log = logging.getLogger("kaisched.debug")

KINDS = ("Pod", "PodGroup", "Queue", "Node", "Topology", "PriorityClass")
MAX_CYCLES = 100
T = TypeVar("T")
Check = Callable[[], None]  # raises Stopped when the call's time is up or its caller went away


class Stopped(Exception):
    """The call's deadline passed or it was cancelled: the simulation gave up at a check."""


# ------------------------------------------------------------------------------------------ the input
def check_size(byte_size: int, limits: SimulateLimits) -> None:
    if byte_size > limits.max_bytes:
        raise Abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is {byte_size} bytes; Simulate takes at most {limits.max_bytes} "
            "(kaisched run --debug-simulate-max-bytes)",
        )


def _invalid(message: str) -> Abort:
    return Abort(grpc.StatusCode.INVALID_ARGUMENT, message)


def _check_object(obj: Mapping[str, Any], where: str) -> None:
    kind = obj.get("kind")
    if kind not in KINDS:
        shown = echo(kind) if isinstance(kind, str) else type(kind).__name__
        raise _invalid(f"{where}: kind {shown} cannot be simulated; use {', '.join(KINDS)}")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not name or not isinstance(name, str):
        raise _invalid(f"{where}: a {kind} has no metadata.name")
    problem = name_problem(name, f"{where}: {kind} name")
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    if problem is None and namespace is not None:
        if not isinstance(namespace, str):
            problem = f"{where}: {kind} {name}: metadata.namespace is not a string"
        else:
            problem = name_problem(namespace, f"{where}: {kind} {name}: namespace", label=True)
    if problem is not None:
        raise _invalid(problem)


def parse_objects(texts: Sequence[str], limits: SimulateLimits, check: Check) -> list[dict[str, Any]]:
    """The Kubernetes objects of the request's documents, within the node and object limits."""
    out: list[dict[str, Any]] = []
    used = 0
    for i, text in enumerate(texts):
        check()
        where = f"objects[{i}]"
        try:
            docs, nodes = load_documents(text, where, limits.max_nodes - used, check=check, limit=limits.max_nodes)
            objects = flatten(docs, where)
        except LoadError as err:
            flag = " (kaisched run --debug-simulate-max-nodes)" if isinstance(err, TooLarge) else ""
            raise _invalid(f"{err}{flag}") from None
        used += nodes
        for obj in objects:
            _check_object(obj, where)
        out.extend(objects)
        if len(out) > limits.max_objects:
            raise _invalid(
                f"the request holds more than {limits.max_objects} objects, the limit "
                "(kaisched run --debug-simulate-max-objects)"
            )
    if not out:
        raise _invalid("objects is empty: give the PodGroups and pods to try")
    return out


# ------------------------------------------------------------------------------------------ the run
def run_simulation(
    base: Iterable[Mapping[str, Any]],
    extra: Sequence[Mapping[str, Any]],
    config: SchedulerConfig,
    cycles: int,
    check: Check,
) -> SimulationResult:
    """`kaisched simulate` on base + extra, with `check` before each object is added and before each
    cycle. An object the cache cannot convert is the caller's error."""
    backend = MemoryBackend(base, config.scheduler_name)
    for obj in extra:
        check()
        try:
            backend.upsert(obj)
        except (AttributeError, KeyError, TypeError, ValueError) as err:  # a field of the wrong shape
            log.debug("Simulate: an object does not convert", exc_info=True)
            meta, ns = obj["metadata"], obj["metadata"].get("namespace")
            what = f"{obj['kind']} {ns + '/' if ns else ''}{meta['name']}"
            raise _invalid(f"{what} is malformed: {type(err).__name__}: {err}") from err
    return run_cycles(backend, config, cycles, check)


# ------------------------------------------------------------------------------------------ the pool
class SimulateRunner:
    """At most `limits.concurrency` simulations at once, each stopped at its deadline or cancellation."""

    def __init__(self, limits: SimulateLimits) -> None:
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.concurrency, thread_name_prefix="debug-simulate")
        self._slots = threading.BoundedSemaphore(limits.concurrency)
        self._lock = threading.Lock()
        self._running: set[threading.Event] = set()

    def run(self, context: grpc.ServicerContext, work: Callable[[Check], T]) -> T:
        """work(check) on the pool; raises Abort for busy (RESOURCE_EXHAUSTED), deadline, cancellation."""
        if not self._slots.acquire(blocking=False):
            n = self.limits.concurrency
            raise Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{n} Simulate call{'s are' if n > 1 else ' is'} already running, the limit "
                "(kaisched run --debug-max-simulations); try again when it ends",
            )
        remaining = context.time_remaining()
        by_caller = remaining is not None and remaining < self.limits.timeout_s
        timeout = max(0.0, remaining) if remaining is not None and by_caller else self.limits.timeout_s
        deadline = time.monotonic() + timeout
        stop = threading.Event()

        def check() -> None:
            if stop.is_set() or time.monotonic() > deadline:
                raise Stopped

        done = threading.Event()

        def cancelled() -> None:
            stop.set()
            done.set()

        if not context.add_callback(cancelled):
            cancelled()  # the call already ended: the work stops at its first check
        try:
            with self._lock:
                self._running.add(stop)
            future: Future[T] = self._pool.submit(work, check)
        except RuntimeError:  # the pool was shut down: the server is stopping
            self._finished(stop)
            raise Abort(grpc.StatusCode.UNAVAILABLE, "the debug API is shutting down") from None
        future.add_done_callback(lambda _: self._finished(stop))
        future.add_done_callback(lambda _: done.set())
        done.wait(timeout)
        if future.done() and not future.cancelled() and not isinstance(future.exception(), Stopped):
            return future.result()
        stop.set()
        left = context.time_remaining()
        if not context.is_active() and time.monotonic() < deadline and not (left is not None and left <= 0):
            raise Abort(grpc.StatusCode.CANCELLED, "the caller cancelled the call")
        if by_caller:
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the call's deadline ({timeout:.3g}s) passed; stopped")
        raise Abort(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"Simulate ran for {timeout:g}s, the server's limit per call (kaisched run --debug-simulate-timeout); "
            "stopped: send fewer objects or cycles",
        )

    def _finished(self, stop: threading.Event) -> None:
        with self._lock:
            if stop not in self._running:
                return
            self._running.discard(stop)
        self._slots.release()

    def close(self) -> None:
        """Stop every running simulation at its next check; accept no more."""
        with self._lock:
            running = list(self._running)
        for stop in running:
            stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

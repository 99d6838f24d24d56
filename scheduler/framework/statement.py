"""Statement: one transaction over the session's node table.

Every operation takes effect at once (node free vectors, domain aggregates, sorted indexes, and queue
usage through the plugins' on_allocate / on_deallocate handlers), so the next trial sees it: a trial
eviction frees capacity that a later placement in the same statement can use. Each operation logs its
undo; `rollback(mark)` undoes back to a `checkpoint()`, `discard()` undoes everything, `commit()` makes
it permanent and hands the result to the binder through the session record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scheduler.api.pod import Pod
from scheduler.framework.nodes import NodeTable, SparseReq
from scheduler.framework.record import GangCommit

if TYPE_CHECKING:
    from scheduler.framework.session import Session

ALLOCATE, EVICT, PIPELINE, RESERVE = "allocate", "evict", "pipeline", "reserve"


@dataclass(frozen=True, slots=True)
class Op:
    kind: str  # ALLOCATE | EVICT | PIPELINE | RESERVE (room held for pods that will exist: no bind)
    node: int
    req: SparseReq  # per pod
    pods: tuple[Pod, ...]
    reason: str = ""  # evictions: why
    released: SparseReq = ()  # pipeline: what it took from the node's releasing capacity (all pods)


@dataclass(slots=True)
class Statement:
    session: Session
    job: str  # the job the statement is for; its commit is filed under it
    has_pod_group: bool
    ops: list[Op] = field(default_factory=list)
    touched: dict[int, int] = field(default_factory=dict)  # node -> open operations on it
    closed: bool = False
    # take-back statements place onto what their victims release too (those placements are pipelined)
    pipelining: bool = False
    # consolidation re-places its victims: their room is held in the session, but nothing binds (the pods
    # their controllers re-create are placed by a later cycle)
    reserving: bool = False
    table: NodeTable = field(init=False)

    def __post_init__(self) -> None:
        self.table = self.session.table

    # --- transaction ------------------------------------------------------------------------
    def checkpoint(self) -> int:
        return len(self.ops)

    def rollback(self, mark: int) -> None:
        while len(self.ops) > mark:
            self._undo(self.ops.pop())

    def discard(self) -> None:
        self.rollback(0)
        self.closed = True

    def commit(self) -> GangCommit:
        """Make every operation permanent; the record's commits get this statement's result."""
        evictions: list[tuple[str, str]] = []
        binds: list[tuple[str, str]] = []
        pipelined: list[tuple[str, str]] = []
        names = self.table.names
        placed: list[Pod] = []
        gone: list[Pod] = []
        for op in self.ops:
            node = names[op.node]
            (gone if op.kind == EVICT else placed if op.kind != RESERVE else []).extend(op.pods)
            if op.kind == EVICT:
                evictions.extend((p.key, op.reason) for p in op.pods)
                self.session.gone.update(p.key for p in op.pods)
            elif op.kind != RESERVE:
                (binds if op.kind == ALLOCATE else pipelined).extend((p.key, node) for p in op.pods)
        result = GangCommit(self.job, self.has_pod_group, tuple(binds), tuple(evictions), tuple(pipelined))
        self.session.committed(self.job, placed, gone)
        self.ops.clear()
        self.touched.clear()
        self.closed = True
        self.table.generation += 1
        if result.binds or result.evictions or result.pipelined:
            self.session.record.commits.append(result)
        return result

    # --- capacity ---------------------------------------------------------------------------
    def fit_count(self, node: int, req: SparseReq, want: int, pipelined: bool = False) -> int:
        """How many pods of `req` (up to `want`) the node takes now: from idle capacity, or for a
        pipelined placement also from what victims are still releasing."""
        table = self.table
        free = table.free[node]
        rel = None if pipelined or self.pipelining or not table.releasing else table.releasing.get(node)
        best = want
        for i, v in req:
            if v <= 0:
                continue
            k = (free[i] - (rel[i] if rel is not None else 0)) // v
            if k < best:
                if k <= 0:
                    return 0
                best = k
        return best

    def is_touched(self, node: int) -> bool:
        return node in self.touched

    # --- operations -------------------------------------------------------------------------
    def allocate(self, pod: Pod, node: int) -> None:
        self.allocate_many((pod,), node, self._req(pod))

    def allocate_many(self, pods: Sequence[Pod], node: int, req: SparseReq) -> None:
        """Place pods that share one request (one pod class) on one node, from its idle capacity (a
        pipelining statement takes what the node's victims release first)."""
        pods = tuple(pods)
        if self.reserving:
            self._push(Op(RESERVE, node, req, pods))
            self.table.apply(node, req, len(pods))
            self.session.allocated(pods, node)
            return
        if self.pipelining and node in self.table.releasing:
            self._pipeline(pods, node, req)
            return
        self._push(Op(ALLOCATE, node, req, pods))
        self.table.apply(node, req, len(pods))
        self.session.allocated(pods, node)

    def pipeline(self, pod: Pod, node: int) -> None:
        """Place a pod on capacity that evicted victims are still releasing (bound once they are gone)."""
        self._pipeline((pod,), node, self._req(pod))

    def _pipeline(self, pods: tuple[Pod, ...], node: int, req: SparseReq) -> None:
        rel = self.table.releasing.get(node)
        taken: list[tuple[int, int]] = []
        if rel is not None:
            for i, v in req:
                t = min(v * len(pods), rel[i])
                if t > 0:
                    rel[i] -= t
                    taken.append((i, t))
        self._push(Op(PIPELINE, node, req, pods, released=tuple(taken)))
        self.table.apply(node, req, len(pods))
        self.session.allocated(pods, node)

    def evict(self, pod: Pod, reason: str) -> None:
        """A running pod leaves: its request becomes releasing capacity on its node."""
        self.evict_many((pod,), reason)

    def evict_many(self, pods: Sequence[Pod], reason: str) -> None:
        """Running pods of one job leave, in order: each run of pods on one node with one request is one
        operation (one update of the node's aggregates and indexes, as a gang's pods share a node)."""
        table = self.table
        i, n = 0, len(pods)
        while i < n:
            pod = pods[i]
            node = table.by_name.get(pod.node_name)
            if node is None:
                raise ValueError(f"cannot evict {pod.key}: node {pod.node_name!r} is not in this session")
            j = i + 1
            while j < n and pods[j].node_name == pod.node_name and pods[j].request == pod.request:
                j += 1
            run = tuple(pods[i:j])
            req = table.sparse_known(pod.request)
            self._push(Op(EVICT, node, req, run, reason=reason))
            rel = table.releasing.setdefault(node, [0] * len(table.dims))
            k = len(run)
            for d, v in req:
                rel[d] += v * k
            table.apply(node, req, -k)
            self.session.deallocated(run, node)
            i = j
        if n:
            table.capacity_grew()

    # --- internals --------------------------------------------------------------------------
    def _req(self, pod: Pod) -> SparseReq:
        req = self.table.sparse(pod.request)
        if req is None:
            raise ValueError(f"pod {pod.key} requests a resource no node offers")
        return req

    def _push(self, op: Op) -> None:
        if self.closed:
            raise RuntimeError(f"statement for {self.job} is already committed or discarded")
        self.ops.append(op)
        self.touched[op.node] = self.touched.get(op.node, 0) + 1

    def _undo(self, op: Op) -> None:
        n = self.touched[op.node] - 1
        if n:
            self.touched[op.node] = n
        else:
            del self.touched[op.node]
        table = self.table
        if op.kind == EVICT:
            rel = table.releasing[op.node]
            k = len(op.pods)
            for i, v in op.req:
                rel[i] -= v * k
            if not any(rel):
                del table.releasing[op.node]
            table.apply(op.node, op.req, k)
            self.session.allocated(op.pods, op.node)
            return
        if op.kind == PIPELINE and op.released:
            rel = table.releasing[op.node]
            for i, t in op.released:
                rel[i] += t
        table.apply(op.node, op.req, -len(op.pods))
        self.session.deallocated(op.pods, op.node)

    def placed_count(self, since: int = 0) -> int:
        return sum(len(op.pods) for op in self.ops[since:] if op.kind != EVICT)

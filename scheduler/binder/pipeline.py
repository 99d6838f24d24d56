"""The bind pipeline: gang commits run beside the scheduling loop, never inside a cycle.

The scheduling thread queues each gang's commit (after assuming its placement in the cache) and takes the
results back at its next drain; worker threads run the commits, at most `in_flight` gangs at once,
highest gang priority first (then first queued), so a high-priority gang decided later is bound before
the low-priority backlog. A commit that waits (for victims to terminate, for claims to bind) holds one
worker, never the loop. Workers touch only the API server: the cache keeps its one writer.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("kaisched.binder")

G = TypeVar("G")
R = TypeVar("R")


@dataclass(order=True, slots=True)
class _Queued(Generic[G]):
    order: tuple[int, int]  # (-priority, sequence): the heap pops the highest priority, then the oldest
    job: str = field(compare=False)
    commit: G = field(compare=False)


class BindPipeline(Generic[G, R]):
    """A priority queue of gang commits and the workers that run them; `busy()` is every gang queued or
    running, so the loop never queues a gang twice."""

    def __init__(self, run: Callable[[G], R], in_flight: int = 32) -> None:
        self._run = run
        self._in_flight = in_flight
        self._cond = threading.Condition()
        self._heap: list[_Queued[G]] = []
        self._busy: set[str] = set()
        self._done: list[tuple[str, G, R]] = []
        self._seq = 0
        self._closed = False
        self._workers: list[threading.Thread] = []

    def submit(self, job: str, commit: G, priority: int) -> bool:
        """Queue one gang's commit; False (nothing queued) when that gang is queued or running already."""
        with self._cond:
            if self._closed or job in self._busy:
                return False
            self._busy.add(job)
            self._seq += 1
            heapq.heappush(self._heap, _Queued((-priority, self._seq), job, commit))
            if len(self._workers) < self._in_flight:
                t = threading.Thread(target=self._work, name=f"gang-{len(self._workers)}", daemon=True)
                self._workers.append(t)
                t.start()
            self._cond.notify()
            return True

    def busy(self) -> frozenset[str]:
        with self._cond:
            return frozenset(self._busy)

    def take(self) -> list[tuple[G, R]]:
        """The commits finished since the last call, with their results, in the order they finished."""
        with self._cond:
            done, self._done = self._done, []
            for job, _, _ in done:
                self._busy.discard(job)
            return [(commit, result) for _, commit, result in done]

    def abandon(self) -> list[G]:
        """Stop: no queued commit starts any more (returned, for the caller to release their placements);
        running ones finish on their own (a deposed leader's writes are refused by the fence)."""
        with self._cond:
            self._closed = True
            dropped = [q.commit for q in sorted(self._heap)]
            for q in self._heap:
                self._busy.discard(q.job)
            self._heap.clear()
            self._cond.notify_all()
            return dropped

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if not self._heap:
                    return
                q = heapq.heappop(self._heap)
            try:
                result = self._run(q.commit)
            except Exception:  # the runner reports its own failures as results: this is a bug
                log.exception("commit of %s failed unexpectedly", q.job)
                with self._cond:
                    self._busy.discard(q.job)
                continue
            with self._cond:
                self._done.append((q.job, q.commit, result))

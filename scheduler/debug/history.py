"""The last N cycles, as the debug API serves them: records, timings, and the snapshot they were made on.

Written by the scheduling thread (one `add` per cycle), read by gRPC threads: entries are immutable once
added, and the lock only guards the deque and the subscriber list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.record import SessionRecord

# (kind, ns/name) -> the Kubernetes object as JSON: one bytes object, not a tree of dicts and strings, costs
# a fifth of the memory for every object the daemon watches (bench/ingest.py daemon)
RawObjects = Mapping[tuple[str, str], bytes]


@dataclass(slots=True)
class CycleEntry:
    record: SessionRecord
    start_unix: float
    phases: tuple[tuple[str, float], ...]
    summary: Mapping[str, int | float]
    # kept for the newest entry and for the newest entry that placed something (snapshot and replay)
    snapshot: Snapshot | None = None
    raw: RawObjects | None = None
    assumed: Mapping[str, str] = field(default_factory=dict)  # pod key -> node bound but not yet watched

    @property
    def cycle(self) -> int:
        return self.record.cycle

    @property
    def placed_any(self) -> bool:
        return any(d.pods for d in self.record.decisions.values())


class CycleHistory:
    def __init__(self, limit: int = 50, subscriber_buffer: int = 64) -> None:
        self.limit = max(1, limit)
        self._entries: deque[CycleEntry] = deque()
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[CycleEntry | None]] = []
        self._buffer = subscriber_buffer

    def add(self, entry: CycleEntry) -> None:
        with self._lock:
            self._entries.append(entry)
            while len(self._entries) > self.limit:
                self._entries.popleft()
            last_placing = next((e for e in reversed(self._entries) if e.placed_any), None)
            for e in self._entries:
                if e is not entry and e is not last_placing:
                    e.snapshot, e.raw = None, None
            subscribers = list(self._subscribers)
        for q in subscribers:
            # a slow watcher loses cycles rather than holding the scheduler back
            with contextlib.suppress(queue.Full):
                q.put_nowait(entry)

    def entries(self) -> list[CycleEntry]:
        """Oldest first."""
        with self._lock:
            return list(self._entries)

    def latest(self) -> CycleEntry | None:
        with self._lock:
            return self._entries[-1] if self._entries else None

    def with_snapshot(self, cycle: int = 0) -> CycleEntry | None:
        """The newest entry (or the given cycle's) that still holds its snapshot, as a copy that keeps it:
        `add` drops older entries' snapshots, which would pull it from under a call still reading it."""
        with self._lock:
            for e in reversed(self._entries):
                if e.snapshot is not None and (cycle == 0 or e.cycle == cycle):
                    return dataclasses.replace(e)
        return None

    def subscribe(self) -> queue.Queue[CycleEntry | None]:
        q: queue.Queue[CycleEntry | None] = queue.Queue(self._buffer)
        with self._lock:
            self._subscribers.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[CycleEntry | None]) -> None:
        with self._lock:
            if q in self._subscribers:
                self._subscribers.remove(q)

    def close(self) -> None:
        """Wake every watcher so streams end (server shutdown)."""
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), []
        for q in subscribers:
            with contextlib.suppress(queue.Full):
                q.put_nowait(None)

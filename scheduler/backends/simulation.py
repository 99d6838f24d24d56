"""The session loop on the in-memory backend, the one every offline run shares: `kaisched simulate`,
`replay`, `demo`, the debug API's `Simulate`, and the tests.

A cycle is the daemon's (backends/base.py) without the I/O: snapshot, run_session, commit the record's
gang commits into the MemoryBackend; cycles run until one places nothing (or the limit)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.backends.base import BindError
from scheduler.backends.memory import MemoryBackend
from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycle import run_session
from scheduler.framework.record import SessionRecord

DEFAULT_MAX_CYCLES = 100


@dataclass(slots=True)
class SimulationResult:
    placements: dict[str, str] = field(default_factory=dict)
    records: list[SessionRecord] = field(default_factory=list)
    backend: MemoryBackend | None = None

    @property
    def cycles(self) -> int:
        return len(self.records)

    def to_json(self) -> dict[str, Any]:
        last = self.records[-1] if self.records else None
        unscheduled = (
            {k: {"reason": str(d.reason), "message": d.message} for k, d in last.unplaced().items()} if last else {}
        )
        return {
            "placements": dict(sorted(self.placements.items())),
            "unscheduled": unscheduled,
            "cycles": self.cycles,
        }


def run_cycle(
    backend: MemoryBackend, config: SchedulerConfig, cycle: int, snapshot: Snapshot | None = None
) -> SessionRecord:
    """One cycle at simulated time `cycle` x the schedule period, on `snapshot` (default: the backend's
    now). Raises BindError if the backend refuses a commit: in memory that is a bug, never a race."""
    snap = snapshot if snapshot is not None else backend.snapshot()
    record = run_session(snap, config, now=cycle * config.schedule_period_seconds, cycle=cycle)
    outcome = backend.commit(record.commits)
    if outcome.errors:
        raise BindError("; ".join(why for _, why in sorted(outcome.errors.items())))
    return record


def simulate(
    objects: Iterable[Mapping[str, Any]], config: SchedulerConfig, max_cycles: int | None = None
) -> SimulationResult:
    return run_cycles(MemoryBackend(objects, config.scheduler_name), config, max_cycles)


def run_cycles(
    backend: MemoryBackend,
    config: SchedulerConfig,
    max_cycles: int | None = None,
    check: Callable[[], None] | None = None,
) -> SimulationResult:
    """Cycles on `backend` until one places nothing (or the limit); `check` runs before each cycle and may
    raise to stop (the debug API's Simulate stops so at its deadline)."""
    result = SimulationResult(backend=backend)
    limit = max_cycles if max_cycles is not None else DEFAULT_MAX_CYCLES
    for cycle in range(1, limit + 1):
        if check is not None:
            check()
        record = run_cycle(backend, config, cycle)
        result.records.append(record)
        placed = record.placements()
        result.placements.update(placed)
        if not placed:
            break
    return result

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
    evictions: dict[str, tuple[str, str]] = field(default_factory=dict)  # pod -> (action, for gang)

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
            "evictions": {pod: {"action": a, "for": f} for pod, (a, f) in sorted(self.evictions.items())},
        }


def run_cycle(
    backend: MemoryBackend,
    config: SchedulerConfig,
    cycle: int,
    snapshot: Snapshot | None = None,
    now: float | None = None,
) -> SessionRecord:
    """One cycle at simulated time `now` (default: `cycle` x the schedule period), on `snapshot` (default:
    the backend's now). Raises BindError if the backend refuses a commit: in memory that is a bug."""
    snap = snapshot if snapshot is not None else backend.snapshot()
    at = now if now is not None else cycle * config.schedule_period_seconds
    record = run_session(snap, config, now=at, cycle=cycle)
    backend.now = at
    outcome = backend.commit(record.commits)
    if outcome.errors:
        raise BindError("; ".join(why for _, why in sorted(outcome.errors.items())))
    backend.mark_stale(record.stale)
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
    """Cycles on `backend` until one changes nothing (places or evicts nothing) and no timer is pending,
    or the limit; `check` runs before each cycle and may raise to stop (the debug API's Simulate stops so
    at its deadline). The clock starts at the input's latest timestamp and advances one schedule period
    per cycle; a cycle that changed nothing but named a later time at which something may (a stale gang's
    grace period, a victim's min runtime) makes the next cycle run at that time."""
    result = SimulationResult(backend=backend)
    if config.grouping:
        backend.group(config)
    limit = max_cycles if max_cycles is not None else DEFAULT_MAX_CYCLES
    now = backend.latest_time() or 0.0
    for cycle in range(1, limit + 1):
        if check is not None:
            check()
        record = run_cycle(backend, config, cycle, now=now)
        result.records.append(record)
        evicted = record.evictions()
        for pod in evicted:  # an evicted pod is bound no more (a re-created one may be placed again)
            result.placements.pop(pod, None)
        result.evictions.update(evicted)
        placed = record.placements()
        result.placements.update(placed)
        if placed or evicted:
            now += config.schedule_period_seconds
        elif record.wake is not None:
            now = record.wake
        else:
            break
    return result

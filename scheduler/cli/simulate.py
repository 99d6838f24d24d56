"""The session loop on the in-memory backend: `kaisched simulate`, `replay` and the demo share it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.actions.allocate import allocate
from scheduler.backends.memory import MemoryBackend
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.gcpause import paused_gc
from scheduler.framework.record import SessionRecord
from scheduler.framework.session import Session

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


def run_cycle(backend: MemoryBackend, config: SchedulerConfig, cycle: int) -> SessionRecord:
    with paused_gc():
        session = Session(backend.state.snapshot(), config, now=cycle * config.schedule_period_seconds, cycle=cycle)
        allocate(session)
    for key in session.record.order:
        decision = session.record.decisions[key]
        if decision.placed and decision.pods:
            backend.bind_gang(key, list(decision.pods))
    return session.record


def simulate(
    objects: Iterable[Mapping[str, Any]], config: SchedulerConfig, max_cycles: int | None = None
) -> SimulationResult:
    backend = MemoryBackend(objects, config.scheduler_name)
    result = SimulationResult(backend=backend)
    limit = max_cycles if max_cycles is not None else DEFAULT_MAX_CYCLES
    for cycle in range(1, limit + 1):
        record = run_cycle(backend, config, cycle)
        result.records.append(record)
        placed = record.placements()
        result.placements.update(placed)
        if not placed:
            break
    return result

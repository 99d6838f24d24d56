"""CycleInfo: one finished daemon cycle as its observers (debug history, telemetry) receive it.

Here, beside the record it carries, so the observers depend on the framework and not on the daemon."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.record import SessionRecord


@dataclass(frozen=True, slots=True)
class CycleInfo:
    """One finished cycle, handed to observers on the scheduling thread."""

    record: SessionRecord
    snapshot: Snapshot
    start_unix: float  # wall clock when the cycle began
    phases: tuple[tuple[str, float], ...]  # (phase, seconds) in order: snapshot, allocate, commit, status
    summary: dict[str, int | float]
    bind_failures: dict[str, str]
    started: float = 0.0  # time.monotonic() when the cycle began (binds assumed after it are this cycle's)

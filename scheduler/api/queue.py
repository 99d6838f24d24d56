"""Queue (cluster-scoped, hierarchical) with per-resource quota, limit and over-quota weight."""

from __future__ import annotations

from dataclasses import dataclass

UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class QueueResource:
    """In our canonical units (cpu millicores, memory bytes, gpu devices); -1 quota/limit = unlimited."""

    quota: int = 0
    limit: int = UNLIMITED
    over_quota_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    parent: str  # "" for a top-level queue
    priority: int = 100
    resources: tuple[tuple[str, QueueResource], ...] = ()  # keyed by resource name (cpu, memory, nvidia.com/gpu)
    creation: str = ""
    display_name: str = ""
    problems: tuple[str, ...] = ()
    # seconds a victim must have run before preempt (same queue) or reclaim (other queues) may take it;
    # None: inherit from the parent queue (else 0); -1: never
    preempt_min_runtime: float | None = None
    reclaim_min_runtime: float | None = None

    def resource(self, name: str) -> QueueResource:
        for k, v in self.resources:
            if k == name:
                return v
        return QueueResource()

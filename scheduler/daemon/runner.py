"""The daemon's cycle: drain watch events (and finished commits), snapshot, recover, run the session, queue the
commits (they run beside the loop), write status, log one line.

The Daemon knows the cluster only as a `ClusterBackend` (backends/base.py), and writes status through a
`StatusSink`; both are injected (cli/run.py wires the Kubernetes ones)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scheduler.backends.base import ClusterBackend, CommitOutcome
from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycle import run_session
from scheduler.framework.cycleinfo import CycleInfo
from scheduler.framework.record import SessionRecord
from scheduler.telemetry.metrics import Metrics

log = logging.getLogger("kaisched")

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
DRAIN_S = 0.05  # how often the watch is applied between cycles
# the pods a backlog's first cycle places before its commits go to the binder (deciding takes ~50 us a pod:
# a 5,000-pod backlog's first binds start ~0.4 s sooner); every slice's cycle builds its session again
# (~6 us a pending pod), so the slices after it grow
CYCLE_POD_BUDGET = 500
SLICE_GROWTH = 4


@dataclass(slots=True)
class Backoff:
    """Per-gang exponential backoff after a failed bind, so one bad gang never starves the rest."""

    failures: dict[str, int] = field(default_factory=dict)
    until: dict[str, float] = field(default_factory=dict)

    def fail(self, key: str, now: float) -> float:
        n = self.failures.get(key, 0) + 1
        self.failures[key] = n
        delay: float = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (n - 1))
        self.until[key] = now + delay
        return delay

    def success(self, key: str) -> None:
        self.failures.pop(key, None)
        self.until.pop(key, None)

    def forget(self, keep: set[str]) -> None:
        """Drop gangs that no longer exist (a long-running daemon must not grow without bound)."""
        for key in [k for k in self.failures if k not in keep]:
            self.success(key)

    def holding(self, now: float) -> dict[str, str]:
        return {
            k: f"the last bind failed {self.failures[k]} time(s); retrying in {t - now:.1f}s"
            for k, t in sorted(self.until.items())
            if t > now
        }


class StatusSink(Protocol):
    """Where a cycle's record goes: PodGroup and Queue status, events (daemon/status.StatusWriter)."""

    def write(
        self,
        snapshot: Snapshot,
        record: SessionRecord,
        failed_binds: Mapping[str, str],
        bound: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None: ...


class Daemon:
    def __init__(
        self,
        backend: ClusterBackend,
        status: StatusSink,
        config: SchedulerConfig,
        metrics: Metrics,
        json_logs: bool = False,
        pod_budget: int | None = None,
    ) -> None:
        self.backend, self.status, self.config, self.metrics = backend, status, config, metrics
        self.json_logs = json_logs
        # pods the first cycle of a backlog places before it hands them to the binder and the next cycle
        # starts at once (`kaisched run --cycle-pod-budget`): binds begin before a large backlog is decided
        # whole. Each next slice may place SLICE_GROWTH times as many, so a backlog of any size is decided
        # in a few cycles (each builds its session again) while the binder works on the slices before it.
        self.pod_budget = pod_budget
        self._slice = pod_budget  # this cycle's budget
        self.cycle_no = 0
        self.idle_events = 0  # watch events applied between cycles (counted in the next cycle's line)
        self.backoff = Backoff()
        self.last_record: SessionRecord | None = None
        self.observers: list[Callable[[CycleInfo], None]] = []  # called after each cycle; must be quick

    def _holding(self, snap: Snapshot) -> dict[str, str]:
        self.backoff.forget(set(snap.pod_groups) | set(snap.pending))
        return self.backoff.holding(time.monotonic())

    def _absorb(self, finished: CommitOutcome, into: CommitOutcome) -> dict[str, str]:
        """Count finished commits, back off the gangs that failed; returns gang -> why, for status."""
        into.merge(finished)
        self.metrics.inc("kaisched_gangs_rolled_back_total", len(finished.rolled_back))
        self.metrics.inc("kaisched_pods_evicted_total", sum(len(v) for v in finished.evicted.values()))
        failed: dict[str, str] = {}
        for job, error in sorted(finished.errors.items()):
            delay = self.backoff.fail(job, time.monotonic())
            failed[job] = f"{error}; backing off {delay:.0f}s"
            self.metrics.inc("kaisched_bind_failures_total")
        for job in finished.bound:
            self.backoff.success(job)
        return failed

    def cycle(self) -> SessionRecord:
        self.cycle_no += 1
        t0 = time.perf_counter()
        started = time.monotonic()
        events = self.backend.drain() + self.idle_events
        self.idle_events = 0
        outcome = CommitOutcome()
        failed = self._absorb(self.backend.finished(), outcome)  # backoff holds a failed gang from this session
        if self.config.grouping:  # PodGroups for workloads' new pods, before the snapshot that schedules them
            self.backend.group(self.config)
        snap = self.backend.snapshot()
        recovered = self.backend.recover(snap)
        if recovered:  # a previous run died mid-commit: its gangs are whole or pending again now
            for line in recovered:
                log.warning("recovery: %s", line)
            self.metrics.inc("kaisched_commits_recovered_total", len(recovered))
            snap = self.backend.snapshot()
        t1 = time.perf_counter()
        now = time.time()
        record = run_session(
            snap, self.config, now, cycle=self.cycle_no, hold=self._holding(snap), pod_budget=self._slice
        )
        if self._slice is not None:
            self._slice = self._slice * SLICE_GROWTH if record.deferred else self.pod_budget
        t2 = time.perf_counter()
        commits = [c for c in record.commits if c.binds or c.pipelined or c.evictions]
        self.backend.submit(commits)  # beside the loop: outcomes come back in this or a later cycle
        failed.update(self._absorb(self.backend.finished(), outcome))
        bound = sum(len(b) for b in outcome.bound.values())
        t3 = time.perf_counter()
        self.status.write(snap, record, failed, outcome.bound)
        t4 = time.perf_counter()
        self.last_record = record
        waiting = Counter(str(d.reason) for d in record.decisions.values() if not d.placed)
        self.metrics.inc("kaisched_cycles_total")
        self.metrics.inc("kaisched_pods_bound_total", bound)
        self.metrics.observe("kaisched_cycle_duration_seconds", t4 - t0)
        self.metrics.set_gauges("kaisched_gangs_waiting", {(("reason", r),): float(n) for r, n in waiting.items()})
        self.metrics.set_gauges(
            "kaisched_queue_fair_share",
            {
                (("queue", q), ("resource", r)): float(v)
                for q, s in record.queues.items()
                for r, v in s.fair_share.items
            },
        )
        self.metrics.set_gauges(
            "kaisched_queue_allocated",
            {(("queue", q), ("resource", r)): float(v) for q, s in record.queues.items() for r, v in s.allocated.items},
        )
        summary = {
            "cycle": self.cycle_no,
            "events": events,
            "gangs_tried": len(record.order),
            "gangs_placed": sum(1 for d in record.decisions.values() if d.placed and d.pods),
            "gangs_waiting": sum(waiting.values()),
            "gangs_deferred": len(record.deferred),
            "gangs_committing": len(commits),
            "pods_bound": bound,
            "bind_failures": len(failed),
            "snapshot_ms": round((t1 - t0) * 1000, 1),
            "allocate_ms": round((t2 - t1) * 1000, 1),
            "commit_ms": round((t3 - t2) * 1000, 1),
            "status_ms": round((t4 - t3) * 1000, 1),
        }
        if summary["gangs_tried"] or summary["gangs_waiting"] or events or bound or failed:
            if self.json_logs:
                log.info(json.dumps({"msg": "cycle", **summary}))
            else:
                log.info(" ".join(f"{k}={v}" for k, v in summary.items()))
        if self.observers:
            phases = (("snapshot", t1 - t0), ("allocate", t2 - t1), ("commit", t3 - t2), ("status", t4 - t3))
            info = CycleInfo(record, snap, now - (t1 - t0), phases, summary, failed, started)
            for observe in self.observers:
                try:
                    observe(info)
                except Exception:  # observing must never stop scheduling
                    log.exception("cycle observer failed")
        return record

    def run(self, stop: threading.Event, leader: threading.Event | None = None) -> None:
        """A cycle every period; between cycles the watch is applied every `DRAIN_S`, so commits waiting
        for victims in the bind pipeline see them leave without waiting for the next cycle."""
        period = self.config.schedule_period_seconds
        while not stop.is_set():
            start = time.monotonic()
            record = None
            if leader is None or leader.is_set():
                try:
                    record = self.cycle()
                except Exception:
                    log.exception("cycle %d failed; continuing", self.cycle_no)
            if record is not None and record.deferred:  # the backlog's next slice: decided now, not a period on
                self.idle_events += self.backend.drain()
                continue
            while not stop.is_set():
                self.idle_events += self.backend.drain()
                left = period - (time.monotonic() - start)
                if left <= 0:
                    break
                stop.wait(min(DRAIN_S, left))

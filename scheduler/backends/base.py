"""ClusterBackend: everything the daemon and the simulation loop need from a cluster, and nothing more.

A cycle is: `drain()` the changes seen since the last cycle into the cache, take a `snapshot()`,
`recover(snapshot)` whatever a previous run left half committed, run the session on the snapshot
(framework.cycle.run_session), then `commit(record.commits)` (simulation: wait for the outcome) or
`submit(record.commits)` and collect `finished()` (the daemon: commits run beside the loop, their
outcomes come back in a later cycle). The core never sees the backend.

Two implementations: `memory.MemoryBackend` (simulate, replay, the demo, the debug API's Simulate, tests)
applies a commit directly, since nothing in memory can fail half way; `kubernetes.KubeBackend` commits
through `binder.GangCommitter`, which adds what a real API server needs (intent records, a server-side
dry run, rollback, crash recovery)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from scheduler.binder.commit import CommitOutcome
from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.record import GangCommit
from scheduler.framework.session import BUILTIN_PRIORITIES
from scheduler.grouper.rules import GrouperConfig

__all__ = ["BindError", "ClusterBackend", "CommitOutcome", "grouper_config"]


class BindError(Exception):
    """A commit the backend refused (the simulation loop raises it: in memory a refused bind is a bug)."""


class ClusterBackend(Protocol):
    def drain(self) -> int:
        """Apply the cluster changes seen since the last call to the cache; returns how many."""
        ...

    def group(self, config: SchedulerConfig) -> None:
        """Give pods of workloads (Job, Deployment, JobSet, ...) their PodGroups, as KAI's pod grouper does
        (grouper/); pods still waiting for theirs are `held` in the next snapshot."""
        ...

    def snapshot(self) -> Snapshot:
        """The cache as of now, for one session."""
        ...

    def recover(self, snapshot: Snapshot) -> list[str]:
        """Finish or undo what a previous run left half committed; one line per gang it touched."""
        ...

    def commit(self, commits: Sequence[GangCommit]) -> CommitOutcome:
        """Apply each gang's commit all-or-nothing, in order: its evictions first, then its binds, and wait.
        A gang that fails is in `errors` (with nothing of it left bound); the others are in `bound`."""
        ...

    def submit(self, commits: Sequence[GangCommit]) -> None:
        """Hold each gang's placement in the cache at once and commit it as `commit` does, without waiting
        (the daemon: commits run beside the loop); outcomes come back through `finished`."""
        ...

    def finished(self) -> CommitOutcome:
        """The outcomes of submitted commits that ended since the last call."""
        ...


def grouper_config(config: SchedulerConfig, priority_classes: Iterable[str]) -> GrouperConfig:
    """The grouper's settings from the scheduler's. A priority class a workload names is used only if it
    exists (KAI checks it) among `priority_classes` or the built-in ones; when the cluster (or input)
    has no PriorityClass at all, names are not checked."""
    classes = frozenset(priority_classes)
    known = classes | frozenset(BUILTIN_PRIORITIES) if classes else None
    return GrouperConfig(config.default_queue, dict(config.grouping_priority_classes), known)

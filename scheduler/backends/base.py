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

from collections.abc import Sequence
from typing import Protocol

from scheduler.binder.commit import CommitOutcome
from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.record import GangCommit

__all__ = ["BindError", "ClusterBackend", "CommitOutcome"]


class BindError(Exception):
    """A commit the backend refused (the simulation loop raises it: in memory a refused bind is a bug)."""


class ClusterBackend(Protocol):
    def drain(self) -> int:
        """Apply the cluster changes seen since the last call to the cache; returns how many."""
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

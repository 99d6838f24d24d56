"""What the simulation loop needs from a cluster: bind a gang, all members or none.

The in-memory backend implements it directly (its binds cannot fail half way). The Kubernetes backend
commits through `binder.GangCommitter` instead, which adds what a real API server needs: intent records,
a server-side dry run, rollback and crash recovery; the daemon's runner calls that."""

from __future__ import annotations

from typing import Protocol

from scheduler.cache.cluster_state import ClusterState


class BindError(Exception):
    pass


class ClusterBackend(Protocol):
    state: ClusterState

    def bind_gang(self, gang: str, bindings: list[tuple[str, str]]) -> None:
        """Bind every (pod key, node) of one gang, or none of them (raise BindError)."""
        ...

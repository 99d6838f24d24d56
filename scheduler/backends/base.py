"""The one thing the core's driver needs from a cluster: bind a gang, all members or none."""

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

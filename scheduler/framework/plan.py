"""Plan: tentative placements over the session's node table, with marks to roll back trials.

Nothing in the table changes until `Statement.commit`; a trial that fails costs only its own log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.api.pod import Pod
from scheduler.framework.nodes import NodeTable, SparseReq


@dataclass(slots=True)
class Plan:
    table: NodeTable
    delta: dict[int, list[int]] = field(default_factory=dict)
    log: list[tuple[int, SparseReq, tuple[Pod, ...]]] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.log)

    def rollback(self, mark: int) -> None:
        while len(self.log) > mark:
            node, req, pods = self.log.pop()
            d = self.delta[node]
            for i, v in req:
                d[i] -= v * len(pods)

    def fit_count(self, node: int, req: SparseReq, want: int) -> int:
        free = self.table.free[node]
        d = self.delta.get(node)
        best = want
        for i, v in req:
            if v <= 0:
                continue
            avail = free[i] - (d[i] if d is not None else 0)
            k = avail // v
            if k < best:
                if k <= 0:
                    return 0
                best = k
        return best

    def add(self, node: int, req: SparseReq, pods: tuple[Pod, ...]) -> None:
        d = self.delta.get(node)
        if d is None:
            d = self.delta[node] = [0] * len(self.table.dims)
        for i, v in req:
            d[i] += v * len(pods)
        self.log.append((node, req, pods))

    def assignments(self, since: int = 0) -> list[tuple[Pod, int]]:
        return [(pod, node) for node, _, pods in self.log[since:] for pod in pods]

    def commit(self) -> list[tuple[Pod, str]]:
        """Apply to the table (aggregates included) and return (pod, node name) in placement order."""
        out: list[tuple[Pod, str]] = []
        for node, req, pods in self.log:
            self.table.apply(node, req, len(pods))
            name = self.table.names[node]
            out.extend((pod, name) for pod in pods)
        self.log.clear()
        self.delta.clear()
        return out

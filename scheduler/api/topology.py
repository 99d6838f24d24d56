"""Topology: named list of node label keys, widest level first."""

from __future__ import annotations

from dataclasses import dataclass

HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    levels: tuple[str, ...]
    problems: tuple[str, ...] = ()

    def index_of(self, level: str) -> int:
        return self.levels.index(level)


@dataclass(frozen=True, slots=True)
class PriorityClass:
    name: str
    value: int
    global_default: bool = False
    preemption_policy: str = "PreemptLowerPriority"

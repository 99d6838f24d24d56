"""A node as the scheduler needs it: capacity, labels, taints, schedulability."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.api.labels import value_of
from scheduler.api.resources import Resources


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str  # NoSchedule | PreferNoSchedule | NoExecute


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: tuple[tuple[str, str], ...]
    allocatable: Resources
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True
    creation: str = ""

    def label(self, key: str) -> str | None:
        return value_of(self.labels, key)

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

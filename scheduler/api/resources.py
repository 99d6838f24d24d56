"""One type for every quantity the scheduler reasons about.

Units are fixed at the edge (kube/quantity.py): ``cpu`` in millicores, ``memory`` and every other
byte-like resource in bytes, ``pods``, ``nvidia.com/gpu`` and any extended resource in whole units.
Values are integers so that arithmetic is exact and replay is bit-for-bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

CPU = "cpu"
MEMORY = "memory"
PODS = "pods"
GPU = "nvidia.com/gpu"


@dataclass(frozen=True, slots=True)
class Resources:
    """An immutable bag of named integer quantities; absent names are zero."""

    items: tuple[tuple[str, int], ...] = field(default=())
    _hash: int = field(init=False, compare=False, repr=False, default=0)

    def __post_init__(self) -> None:
        # requests are dictionary keys on the hot path (pod classes): hash once
        object.__setattr__(self, "_hash", hash(self.items))

    def __hash__(self) -> int:
        return self._hash

    @staticmethod
    def of(values: Mapping[str, int] | Iterable[tuple[str, int]]) -> Resources:
        pairs = values.items() if isinstance(values, Mapping) else values
        merged: dict[str, int] = {}
        for name, value in pairs:
            merged[name] = merged.get(name, 0) + int(value)
        return Resources(tuple(sorted((k, v) for k, v in merged.items() if v != 0)))

    def get(self, name: str) -> int:
        for key, value in self.items:
            if key == name:
                return value
        return 0

    def names(self) -> Iterator[str]:
        return (k for k, _ in self.items)

    def as_dict(self) -> dict[str, int]:
        return dict(self.items)

    def __add__(self, other: Resources) -> Resources:
        if not other.items:
            return self
        if not self.items:
            return other
        return self._merged(other.items, 1)

    def __sub__(self, other: Resources) -> Resources:
        return self._merged(other.items, -1) if other.items else self

    def _merged(self, other: tuple[tuple[str, int], ...], sign: int) -> Resources:
        """self + sign * other, without Resources.of's general input handling: the cache adds and
        subtracts a pod's request on every pod event."""
        mine = self.items
        if len(mine) == len(other):  # the usual case: the same names (a node's pods ask alike)
            same: list[tuple[str, int]] = []
            for (k, v), (name, w) in zip(mine, other, strict=True):
                if k != name:
                    break
                if v + sign * w:
                    same.append((k, v + sign * w))
            else:
                return Resources(tuple(same))
        merged = dict(mine)
        for k, v in other:
            merged[k] = merged.get(k, 0) + sign * v
        return Resources(tuple(sorted([kv for kv in merged.items() if kv[1] != 0])))

    def scaled(self, factor: int) -> Resources:
        return Resources.of((k, v * factor) for k, v in self.items)

    def max_with(self, other: Resources) -> Resources:
        """Per-resource maximum (init containers against the sum of app containers)."""
        merged = dict(self.items)
        for k, v in other.items:
            merged[k] = max(merged.get(k, 0), v)
        return Resources.of(merged)

    def fits_in(self, other: Resources) -> bool:
        return all(v <= other.get(k) for k, v in self.items)

    def shortfall(self, available: Resources) -> Resources:
        """What ``available`` lacks to hold ``self`` (only positive parts)."""
        return Resources.of((k, v - available.get(k)) for k, v in self.items if v > available.get(k))

    def is_zero(self) -> bool:
        return not self.items

    def __str__(self) -> str:
        return ", ".join(f"{format_quantity(k, v)} {k}" for k, v in self.items) or "nothing"


def format_quantity(name: str, value: int) -> str:
    """Human form of a value in our canonical units (for messages, not for parsing)."""
    if name == CPU:
        return f"{value}m" if value % 1000 else str(value // 1000)
    if name == MEMORY or name.startswith("hugepages-") or name == "ephemeral-storage":
        units = (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))
        for unit, size in units:
            if value % size == 0 and value >= size:
                return f"{value // size}{unit}"
        for unit, size in units:  # not a whole number of any unit: two decimals of the largest that fits
            if value >= size:
                return f"{value / size:.2f}{unit}"
        return str(value)
    return str(value)

"""The daemon's metrics store and their Prometheus text exposition (no client library: a handful of series).

The store is shared: `daemon/` writes it, `/metrics` renders it, OpenTelemetry (telemetry/otel.py) reads it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    n: int = 0

    def observe(self, v: float) -> None:
        for i, b in enumerate(BUCKETS):
            if v <= b:
                self.counts[i] += 1
        self.total += v
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, float] = {}
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.histograms: dict[str, Histogram] = {}

    def inc(self, name: str, by: float = 1.0) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0.0) + by

    def set_gauges(self, name: str, values: dict[tuple[tuple[str, str], ...], float]) -> None:
        with self.lock:
            for key in [k for k in self.gauges if k[0] == name]:
                del self.gauges[key]
            for labels, v in values.items():
                self.gauges[(name, labels)] = v

    def observe(self, name: str, v: float) -> None:
        with self.lock:
            self.histograms.setdefault(name, Histogram()).observe(v)

    def render(self) -> str:
        out: list[str] = []
        with self.lock:
            for name, v in sorted(self.counters.items()):
                out += [f"# TYPE {name} counter", f"{name} {v:g}"]
            seen: set[str] = set()
            for (name, labels), v in sorted(self.gauges.items()):
                if name not in seen:
                    out.append(f"# TYPE {name} gauge")
                    seen.add(name)
                lab = ",".join(f'{k}="{val}"' for k, val in labels)
                out.append(f"{name}{{{lab}}} {v:g}")
            for name, h in sorted(self.histograms.items()):
                out.append(f"# TYPE {name} histogram")
                for b, c in zip(BUCKETS, h.counts, strict=True):
                    out.append(f'{name}_bucket{{le="{b:g}"}} {c}')
                out += [f'{name}_bucket{{le="+Inf"}} {h.n}', f"{name}_sum {h.total:g}", f"{name}_count {h.n}"]
        return "\n".join(out) + "\n"

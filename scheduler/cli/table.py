"""Readable tables for people; JSON is for scripts."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.backends.simulation import SimulationResult


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def render_result(result: SimulationResult) -> str:
    data = result.to_json()
    out = [f"cycles: {data['cycles']}", "", "PLACED"]
    rows = [[pod, node] for pod, node in data["placements"].items()]
    out.append(table(["POD", "NODE"], rows) if rows else "(none)")
    out += ["", "WAITING"]
    rows = [[k, v["reason"], v["message"]] for k, v in data["unscheduled"].items()]
    out.append(table(["GANG", "REASON", "MESSAGE"], rows) if rows else "(none)")
    return "\n".join(out)

"""Timestamps and durations as the API writes them, as plain seconds (the core compares numbers only)."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_timestamp(text: object) -> float | None:
    """RFC 3339 (`2024-01-01T00:00:00Z`, with or without fraction or offset) to epoch seconds."""
    if not isinstance(text, str) or not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def format_timestamp(seconds: float, precise: bool = False) -> str:
    """`precise`: with microseconds, for a time read back to count a period from (whole seconds would
    move it up to a second earlier)."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime(fmt)


def parse_duration(value: object) -> float | None:
    """A Go duration (`90s`, `5m`, `1h30m`) or a number of seconds; -1 stays -1 (never). None: malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 or value == -1 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text in ("-1", "-1s"):
        return -1.0
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None

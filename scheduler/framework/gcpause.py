"""Pause the cyclic garbage collector for one scheduling cycle.

A cycle allocates many small objects while the cache holds hundreds of thousands of long-lived ones; the
collector's full passes then scan the whole heap again and again (measured: half a second of a 10,000-node
cycle). Nothing a cycle builds is cyclic garbage that must go early, so collection waits until it ends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

"""Queue-fair order: the one loop allocate and take-back walk gangs in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scheduler.framework.jobs import Job
from scheduler.framework.session import Session


def queue_fair(session: Session, by_queue: dict[str, list[Job]], memo: dict[Any, Any]) -> Iterator[Job]:
    """Jobs one at a time: the queue first in queue order (re-read each time, as placements move it), in
    it the first by job order. `memo` (a failure memo) is cleared whenever a statement has committed."""
    for jobs in by_queue.values():
        jobs.sort(key=session.job_order_key, reverse=True)  # pop() from the end takes the first
    generation = session.table.generation
    queue_key = session.queue_order_fn()
    while by_queue:
        if session.table.generation != generation:
            memo.clear()
            generation = session.table.generation
        name = min(by_queue, key=queue_key)
        jobs = by_queue[name]
        job = jobs.pop()
        if not jobs:
            del by_queue[name]
        yield job

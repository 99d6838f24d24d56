"""Fencing: no write once the lease may have expired.

The leader elector marks every successful renewal with the monotonic time the renew request was *sent*;
a write is allowed only until that time plus the renew deadline (shorter than the lease, as client-go's
renewDeadline is), so a replica that was paused, partitioned or slow stops writing before another one
can have taken the lease over. Monotonic time keeps running while a process is stopped (SIGSTOP), so a
leader that wakes up finds its fence closed before it sends anything."""

from __future__ import annotations

import threading
import time

from scheduler.kube.client import ApiError


class FencedError(ApiError):
    """A write refused locally: this replica may no longer hold the lease. Nothing was sent."""

    def __init__(self, what: str, age: float, deadline: float) -> None:
        super().__init__(
            0, "Fenced", {"message": f"{what} not sent: lease last renewed {age:.1f}s ago (> {deadline:.1f}s)"}
        )
        self.what = what


class Fence:
    def __init__(self, renew_deadline: float) -> None:
        self.renew_deadline = renew_deadline
        self._renewed_at: float | None = None  # monotonic time the last successful renewal was sent
        self._lock = threading.Lock()
        self.refused = 0  # writes refused, for metrics and tests

    def renewed(self, sent_at: float) -> None:
        with self._lock:
            if self._renewed_at is None or sent_at > self._renewed_at:
                self._renewed_at = sent_at

    def revoke(self) -> None:
        with self._lock:
            self._renewed_at = None

    def open(self) -> bool:
        with self._lock:
            at = self._renewed_at
        return at is not None and time.monotonic() - at < self.renew_deadline

    def check(self, what: str) -> None:
        """Raise FencedError unless the lease is surely still ours."""
        with self._lock:
            at = self._renewed_at
        age = float("inf") if at is None else time.monotonic() - at
        if age >= self.renew_deadline:
            self.refused += 1
            raise FencedError(what, age, self.renew_deadline)

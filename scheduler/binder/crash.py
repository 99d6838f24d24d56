"""Crash points for fault tests: `KAISCHED_CRASH_AT=<name>` makes the process die at once (as SIGKILL
would) when it reaches that point, so a test can stop the daemon between any two writes of a rollback, an
eviction plan or a gang's claim writes and check that whoever recovers loses nothing. Unset (always,
outside tests), a crash point does nothing."""

from __future__ import annotations

import os

ENV = "KAISCHED_CRASH_AT"
ROLLBACK_POINTS = (
    "rollback:before-delete",
    "rollback:after-delete",
    "rollback:after-recreate",
    "rollback:before-clear",
)
# an eviction plan: recorded (nothing evicted yet); the first of several victims evicted; every victim evicted
# and the preemptor not yet bound
EVICT_POINTS = ("evict:after-plan", "evict:after-first", "evict:before-binds")
# a gang's WaitForFirstConsumer claims: the first of several written; all written, not yet bound by the volume
# controller; all bound and no pod bound yet
CLAIM_POINTS = ("claims:after-first", "claims:after-writes", "claims:before-binds")
POINTS = ROLLBACK_POINTS + EVICT_POINTS + CLAIM_POINTS


def crashpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os._exit(137)

"""Crash points for fault tests: `KAISCHED_CRASH_AT=<name>` makes the process die at once (as SIGKILL
would) when it reaches that point, so a test can stop the daemon between any two writes of a rollback and
check that whoever recovers loses nothing. Unset (always, outside tests), a crash point does nothing."""

from __future__ import annotations

import os

ENV = "KAISCHED_CRASH_AT"
POINTS = ("rollback:before-delete", "rollback:after-delete", "rollback:after-recreate", "rollback:before-clear")


def crashpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os._exit(137)

"""Priority: inside a queue, higher-priority jobs go first; among victims, lower-priority ones first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin

if TYPE_CHECKING:
    from scheduler.framework.jobs import Job
    from scheduler.framework.session import Session


@plugin("priority")
class Priority(Plugin):
    name = "priority"

    def job_order(self, session: Session, job: Job) -> tuple[Any, ...]:
        return (-job.priority,)

    def victim_order(self, session: Session, victim: Job) -> tuple[Any, ...]:
        return (victim.priority,)

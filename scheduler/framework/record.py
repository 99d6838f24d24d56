"""SessionRecord: what one cycle decided and why. Events, conditions and the debug API read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.api.reasons import Reason
from scheduler.api.resources import Resources


@dataclass(frozen=True, slots=True)
class LevelAttempt:
    """The closest domain tried at one topology level, and what it lacked."""

    level: str  # a node label, or "cluster"
    domain: str  # "" when no domain at this level had eligible nodes
    short: Resources  # aggregate shortfall against the gang's request (empty when fragmented)
    placed: int  # pods of the gang the domain could take (when it passed the aggregate check)
    needed: int


@dataclass(frozen=True, slots=True)
class GangDecision:
    job: str  # <ns>/<podgroup> or <ns>/<pod> for a gang of one
    queue: str
    placed: bool
    reason: Reason | None = None
    message: str = ""
    attempts: tuple[LevelAttempt, ...] = ()
    domain: str = ""  # where it landed
    pods: tuple[tuple[str, str], ...] = ()  # (pod key, node) placed this cycle


@dataclass(frozen=True, slots=True)
class QueueShare:
    name: str
    parent: str
    fair_share: Resources
    allocated: Resources
    requested: Resources
    deserved: Resources


@dataclass(slots=True)
class SessionRecord:
    cycle: int
    now: float
    decisions: dict[str, GangDecision] = field(default_factory=dict)
    queues: dict[str, QueueShare] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # jobs in the order they were tried

    def placements(self) -> dict[str, str]:
        return {pod: node for d in self.decisions.values() for pod, node in d.pods}

    def unplaced(self) -> dict[str, GangDecision]:
        return {k: d for k, d in sorted(self.decisions.items()) if not d.placed}

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
class JobFacts:
    """Derived facts about one job, written once by the session; sinks read them, never recompute."""

    priority: int  # as the session resolved it: PriorityClass, KAI's builtin classes, pod, default
    preemptible: bool  # spec.preemptibility / the kai.scheduler/preemptibility label, else priority < 100
    queue: str


@dataclass(frozen=True, slots=True)
class GangCommit:
    """One committed statement's result for one gang, in the order the binder must apply it: evict the
    victims first, then bind (pipelined binds wait for their victims to release)."""

    job: str
    has_pod_group: bool
    binds: tuple[tuple[str, str], ...]  # (pod key, node)
    evictions: tuple[tuple[str, str], ...] = ()  # (pod key, reason)
    pipelined: tuple[tuple[str, str], ...] = ()  # (pod key, node) placed on room victims still release
    # WaitForFirstConsumer claims its pods bind, before any of them binds: (claim key, volume, node); an
    # empty volume means "provision on node" (the claim's volume.kubernetes.io/selected-node annotation)
    claims: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class QueueShare:
    name: str
    parent: str
    fair_share: Resources
    allocated: Resources
    requested: Resources
    deserved: Resources
    under_fair_share: bool = False  # at the session's start: no resource used beyond its share, some left


@dataclass(slots=True)
class SessionRecord:
    cycle: int
    now: float
    decisions: dict[str, GangDecision] = field(default_factory=dict)
    queues: dict[str, QueueShare] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # jobs in the order they were tried
    jobs: dict[str, JobFacts] = field(default_factory=dict)  # every job the session built, by key
    commits: list[GangCommit] = field(default_factory=list)  # what the binder applies, in order
    actions: tuple[str, ...] = ()  # the actions that ran, in order
    # PodGroups whose stale-gang mark changes: the time it was first seen below minMember, None to clear
    stale: dict[str, float | None] = field(default_factory=dict)
    # the earliest later time at which a decision could change with nothing else changing (a stale gang's
    # grace period or a victim's min runtime ends): a simulation that is otherwise done jumps there
    wake: float | None = None
    # jobs allocate left untried because the cycle placed its pod budget (the daemon's slice): the actions
    # after it did not run, and the next cycle starts at once
    deferred: tuple[str, ...] = ()

    def wake_at(self, t: float) -> None:
        if t > self.now and (self.wake is None or t < self.wake):
            self.wake = t

    def evictions(self) -> dict[str, tuple[str, str]]:
        """pod key -> (action, the gang it made room for; "" for a stale gang's own eviction)."""
        out: dict[str, tuple[str, str]] = {}
        for c in self.commits:
            for pod, reason in c.evictions:
                out[pod] = (reason, "" if reason == "stalegang" else c.job)
        return out

    def placements(self) -> dict[str, str]:
        return {pod: node for d in self.decisions.values() for pod, node in d.pods}

    def unplaced(self) -> dict[str, GangDecision]:
        return {k: d for k, d in sorted(self.decisions.items()) if not d.placed}

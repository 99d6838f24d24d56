"""PodGroup (gang) with optional subgroups and topology constraint, as in KAI's v2alpha2."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.api.labels import value_of


@dataclass(frozen=True, slots=True)
class TopologyConstraint:
    topology: str = ""
    required_level: str = ""
    preferred_level: str = ""

    def is_empty(self) -> bool:
        return not (self.topology or self.required_level or self.preferred_level)


@dataclass(frozen=True, slots=True)
class SubGroup:
    name: str
    min_member: int | None
    parent: str  # "" = child of the PodGroup itself
    constraint: TopologyConstraint
    min_sub_group: int | None = None


@dataclass(frozen=True, slots=True)
class PodGroup:
    namespace: str
    name: str
    min_member: int | None
    queue: str
    priority_class: str
    preemptibility: str
    constraint: TopologyConstraint
    sub_groups: tuple[SubGroup, ...] = ()
    min_sub_group: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    creation: str = ""
    uid: str = ""
    problems: tuple[str, ...] = ()  # conversion problems (malformed fields)
    # when the scheduler first saw it running below minMember (annotation STALE_SINCE_ANNOTATION)
    stale_since: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def annotation(self, key: str) -> str | None:
        return value_of(self.annotations, key)

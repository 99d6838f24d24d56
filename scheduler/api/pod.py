"""A pod reduced to what placement needs; constraints kept as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.api.labels import names_topology, value_of
from scheduler.api.podspec import NO_EXTRAS, PodExtras
from scheduler.api.resources import Resources


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str  # "" with operator Exists matches every key
    operator: str  # Equal | Exists
    value: str
    effect: str  # "" matches every effect


@dataclass(frozen=True, slots=True)
class NodeSelectorRequirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """All expressions and fields must match; terms of a selector are ORed."""

    match_expressions: tuple[NodeSelectorRequirement, ...] = ()
    match_fields: tuple[NodeSelectorRequirement, ...] = ()


@dataclass(frozen=True, slots=True)
class PodConstraints:
    """The static (resource-free) part of feasibility: equal constraints give equal node sets."""

    node_selector: tuple[tuple[str, str], ...] = ()
    required_terms: tuple[NodeSelectorTerm, ...] = ()  # empty: no required node affinity
    tolerations: tuple[Toleration, ...] = ()
    _hash: int = field(init=False, compare=False, repr=False, default=0)

    def __post_init__(self) -> None:
        # constraints key the per-cycle feasibility memo: hash once
        object.__setattr__(self, "_hash", hash((self.node_selector, self.required_terms, self.tolerations)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    uid: str
    scheduler_name: str
    node_name: str  # "" while pending
    phase: str
    request: Resources  # includes pods=1
    constraints: PodConstraints = field(default_factory=PodConstraints)
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    priority_class: str = ""
    priority: int | None = None
    creation: str = ""
    owner_kind: str = ""
    deleting: bool = False
    # problems found while converting (malformed quantities, unsupported constraints): (code, message)
    problems: tuple[tuple[str, str], ...] = ()
    task_priority: int = 0  # label kai.scheduler/task-priority: order inside a gang, higher first
    pod_group: str = ""  # annotation pod-group-name ("" = a gang of one)
    group_key: str = field(init=False, default="")  # "<ns>/<pod_group>", or "" for a gang of one
    # "<ns>/<name>": made once (take-back and stale-gang eviction ask it of every running pod)
    key: str = field(init=False, default="", compare=False, repr=False)
    # an annotation could name a topology (they share this prefix): every running gang's pods are asked
    topology_annotated: bool = field(init=False, default=False, compare=False, repr=False)
    start_time: float | None = None  # status.startTime (epoch seconds): how long a victim has run
    extras: PodExtras = NO_EXTRAS  # pod (anti-)affinity, spread, host ports, preferences, volumes

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_key", f"{self.namespace}/{self.pod_group}" if self.pod_group else "")
        object.__setattr__(self, "key", f"{self.namespace}/{self.name}")
        object.__setattr__(self, "topology_annotated", names_topology(self.annotations))

    @property
    def controlled(self) -> bool:
        """It has a controller owner (ReplicaSet, Job, ...): an evicted pod is re-created by it."""
        return bool(self.owner_kind)

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def bound(self) -> bool:
        return bool(self.node_name)

    def label(self, key: str) -> str | None:
        return value_of(self.labels, key)

    def annotation(self, key: str) -> str | None:
        return value_of(self.annotations, key)

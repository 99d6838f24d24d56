"""The relational part of a pod's spec: label selectors, inter-pod (anti-)affinity, topology spread,
host ports, preferred node affinity and volumes. Plain data, compared and hashed as values, so pods
with equal constraints share one pod class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler.api.pod import NodeSelectorTerm

METADATA_NAME_LABEL = "kubernetes.io/metadata.name"  # the API server sets it on every Namespace


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return set_match(self.operator, self.values, labels.get(self.key))


def set_match(op: str, values: tuple[str, ...], value: str | None) -> bool:
    """A set-based requirement on one value (None: the label or field is absent); In, NotIn, Exists and
    DoesNotExist, as label selectors and node selectors share them. Other operators match nothing."""
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    return False


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """metav1.LabelSelector: every requirement must hold; an empty selector matches everything."""

    requirements: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def pivot(self) -> tuple[str, str] | None:
        """One (key, value) every matching object carries, for indexing; None when there is none."""
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                return (r.key, r.values[0])
        return None

    def describe(self) -> str:
        parts = []
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                parts.append(f"{r.key}={r.values[0]}")
            elif r.operator in ("Exists", "DoesNotExist"):
                parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
            else:
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
        return ",".join(parts) or "<all>"


@dataclass(frozen=True, slots=True)
class PodAffinityTerm:
    """One (anti-)affinity term. `selector` None matches no pod (a nil labelSelector). Namespaces: the
    listed ones plus those `namespace_selector` matches; neither given means the pod's own namespace."""

    selector: LabelSelector | None
    topology_key: str
    namespaces: tuple[str, ...] = ()
    namespace_selector: LabelSelector | None = None

    def describe(self) -> str:
        sel = self.selector.describe() if self.selector is not None else "<none>"
        return f"{sel} per {self.topology_key}"


@dataclass(frozen=True, slots=True)
class WeightedPodAffinityTerm:
    weight: int
    term: PodAffinityTerm


@dataclass(frozen=True, slots=True)
class PodAffinity:
    required: tuple[PodAffinityTerm, ...] = ()
    preferred: tuple[WeightedPodAffinityTerm, ...] = ()
    anti_required: tuple[PodAffinityTerm, ...] = ()
    anti_preferred: tuple[WeightedPodAffinityTerm, ...] = ()


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    max_skew: int
    topology_key: str
    when_unsatisfiable: str  # DoNotSchedule | ScheduleAnyway
    selector: LabelSelector | None  # None: matches no pod
    min_domains: int | None = None
    node_affinity_policy: str = "Honor"  # Honor | Ignore
    node_taints_policy: str = "Ignore"  # Honor | Ignore

    @property
    def hard(self) -> bool:
        return self.when_unsatisfiable != "ScheduleAnyway"

    def describe(self) -> str:
        sel = self.selector.describe() if self.selector is not None else "<none>"
        extra = f", minDomains {self.min_domains}" if self.min_domains is not None else ""
        return f"{self.when_unsatisfiable} maxSkew {self.max_skew} of {sel} per {self.topology_key}{extra}"


@dataclass(frozen=True, slots=True)
class HostPort:
    port: int
    protocol: str = "TCP"
    host_ip: str = ""  # "" and 0.0.0.0 mean every address

    def conflicts(self, other: HostPort) -> bool:
        if self.port != other.port or self.protocol != other.protocol:
            return False
        wild = ("", "0.0.0.0")
        return self.host_ip in wild or other.host_ip in wild or self.host_ip == other.host_ip

    def describe(self) -> str:
        where = f"{self.host_ip}:" if self.host_ip not in ("", "0.0.0.0") else ""
        return f"{where}{self.port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class PreferredNodeTerm:
    weight: int
    term: NodeSelectorTerm


@dataclass(frozen=True, slots=True)
class PodExtras:
    """Everything beyond resources and static node constraints; the default is the empty set."""

    affinity: PodAffinity | None = None
    spread: tuple[SpreadConstraint, ...] = ()
    host_ports: tuple[HostPort, ...] = ()
    preferred_nodes: tuple[PreferredNodeTerm, ...] = ()
    claims: tuple[str, ...] = ()  # PersistentVolumeClaim names (the pod's namespace), sorted
    ephemeral_claims: tuple[str, ...] = ()  # generic ephemeral volumes: claim <pod>-<volume>
    _hash: int = field(init=False, compare=False, repr=False, default=0)

    def __post_init__(self) -> None:
        # extras key the pod classes of every gang each cycle: hash once
        fields = (self.affinity, self.spread, self.host_ports, self.preferred_nodes, self.claims, self.ephemeral_claims)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    def is_empty(self) -> bool:
        return self == NO_EXTRAS


NO_EXTRAS = PodExtras()

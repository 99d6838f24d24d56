"""The one typed configuration object, loaded from YAML with defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

NODE_ORDERS = ("binpack", "spread")
DEFAULT_ACTIONS = ("allocate", "consolidate", "reclaim", "preempt", "stalegangeviction")
# every plugin a session runs, by registered name; hooks are combined in this order (see framework/plugin.py)
DEFAULT_PLUGINS = (
    "predicates",
    "nodeports",
    "interpodaffinity",
    "podtopologyspread",
    "volumes",
    "proportion",
    "priority",
    "nodepreference",
    "nodeorder",
)


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    scheduler_name: str = "kai-scheduler"
    schedule_period_seconds: float = 1.0
    node_order: str = "binpack"  # binpack | spread
    default_queue: str = "default-queue"
    default_parent_queue: str = "default-parent-queue"
    # create default-parent-queue -> default-queue when the cluster has no Queue of that name, as KAI's
    # install does, so that pods without a queue label are schedulable out of the box
    implicit_default_queue: bool = True
    # pods and PodGroups without a PriorityClass get this priority
    default_priority: int = 0
    # actions run in this order on one session (KAI's: allocate, consolidation, reclaim, preempt,
    # stalegangeviction); plugins whose hooks the session combines
    # options the exact search for a heterogeneous gang's members may examine per gang and cycle; when it
    # runs out the gang waits with PlacementSearchLimit (it may fit) instead of a wrong "does not fit"
    placement_search_budget: int = 200_000
    actions: tuple[str, ...] = DEFAULT_ACTIONS
    # a gang running below minMember this long is evicted whole (stalegangeviction); negative: never
    stale_gang_grace_seconds: float = 60.0
    plugins: tuple[str, ...] = DEFAULT_PLUGINS
    # make PodGroups for workloads' pods (Job, Deployment, JobSet, ... : README "Grouping"), as KAI's
    # pod grouper does; off: a pod without pod-group-name is a gang of one
    grouping: bool = True
    # kind -> PriorityClass a grouped gang gets when neither the workload nor the pod names one (over the
    # built-in defaults: inference for Deployment, LeaderWorkerSet, DynamoGraphDeployment; train otherwise)
    grouping_priority_classes: Mapping[str, str] = field(default_factory=dict)
    # the grouper watches the workload kinds it groups, so a scale reaches the gang at once; every this many
    # seconds it also re-reads the owners of its PodGroups that it does not watch (other kinds, versions)
    grouping_resync_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in ("actions", "plugins"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a list of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
            if len(set(value)) != len(value):
                raise ConfigError(f"{name} lists a name twice: {list(value)}")
        from scheduler.framework.registry import REGISTRY  # late: the registry loads the built-ins

        for names, lookup in ((self.actions, REGISTRY.action), (self.plugins, REGISTRY.plugin)):
            for n in names:
                try:
                    lookup(n)
                except KeyError as err:
                    raise ConfigError(f"configuration: {err.args[0]}") from None
        if self.node_order not in NODE_ORDERS:
            raise ConfigError(f"nodeOrder must be one of {', '.join(NODE_ORDERS)}, got {self.node_order!r}")
        if not isinstance(self.placement_search_budget, int) or self.placement_search_budget < 0:
            raise ConfigError("placementSearchBudget must be an integer >= 0")
        if isinstance(self.stale_gang_grace_seconds, bool) or not isinstance(
            self.stale_gang_grace_seconds, int | float
        ):
            raise ConfigError("staleGangGraceSeconds must be a number of seconds (negative: never evict)")
        if not isinstance(self.grouping, bool):
            raise ConfigError("grouping must be true or false")
        pcs = self.grouping_priority_classes
        if not isinstance(pcs, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pcs.items()):
            raise ConfigError("groupingPriorityClasses must map workload kinds to PriorityClass names")
        r = self.grouping_resync_seconds
        if isinstance(r, bool) or not isinstance(r, int | float) or r <= 0:
            raise ConfigError("groupingResyncSeconds must be a number of seconds > 0")
        if self.schedule_period_seconds <= 0:
            raise ConfigError("schedulePeriodSeconds must be > 0")

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SchedulerConfig:
        names = {f.name: f for f in fields(SchedulerConfig)}
        camel = {_camel(n): n for n in names}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = camel.get(key, key if key in names else None)
            if name is None:
                raise ConfigError(f"unknown configuration key {key!r}; known keys: {', '.join(sorted(camel))}")
            kwargs[name] = value
        try:
            return SchedulerConfig(**kwargs)
        except TypeError as err:
            raise ConfigError(str(err)) from err

    @staticmethod
    def load(path: str | Path | None) -> SchedulerConfig:
        if path is None:
            return SchedulerConfig()
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the configuration must be a mapping")
        return SchedulerConfig.from_dict(data)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)

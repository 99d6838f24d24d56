"""PodDisruptionBudgets (policy/v1), as take-back reads them to prefer victims whose eviction breaks none."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.api.podspec import LabelSelector


@dataclass(frozen=True, slots=True)
class DisruptionBudget:
    """One budget: the pods it selects in its namespace and how many of them may be disrupted now
    (`status.disruptionsAllowed`, kept by the disruption controller). `disrupted`: pods already being
    disrupted (`status.disruptedPods`), which do not count against it again."""

    namespace: str
    name: str
    selector: LabelSelector | None
    allowed: int
    disrupted: frozenset[str] = frozenset()

    def selects(self, namespace: str, name: str, labels: Mapping[str, str]) -> bool:
        """As kube-scheduler's preemption reads a budget: a nil or empty selector selects nothing."""
        if namespace != self.namespace or self.selector is None or not self.selector.requirements:
            return False
        return name not in self.disrupted and self.selector.matches(labels)

"""policy/v1 PodDisruptionBudget objects to `DisruptionBudget`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.api.disruption import DisruptionBudget
from scheduler.kube.podspec import label_selector


def budget_from_k8s(obj: Mapping[str, Any]) -> DisruptionBudget:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    try:
        allowed = int(status.get("disruptionsAllowed") or 0)
    except (TypeError, ValueError):
        allowed = 0  # unreadable: as the API server's default before the controller has counted
    disrupted = status.get("disruptedPods") or {}
    return DisruptionBudget(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name", "")),
        selector=label_selector(spec.get("selector")),
        allowed=allowed,
        disrupted=frozenset(str(k) for k in disrupted) if isinstance(disrupted, Mapping) else frozenset(),
    )

"""What to do for one ungrouped pod, given its owner chain and the PodGroup of that name if one exists:
create our PodGroup, bring it up to date, join a PodGroup someone else made, or hold the pod with a
reason. Pure; the daemon and the in-memory backend both act on the answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.api.labels import POD_GROUP_ANNOTATION
from scheduler.api.reasons import Reason
from scheduler.grouper.chain import Chain, Ref
from scheduler.grouper.objects import is_ours, needs_update, pod_patch, podgroup_object
from scheduler.grouper.rules import GrouperConfig, GroupingError, GroupSpec, annotations_of, group_pod, meta

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PodPlan:
    spec: GroupSpec | None = None
    create: dict[str, Any] | None = None  # the PodGroup to create
    update: dict[str, Any] | None = None  # merge patch for our PodGroup (scale, labels, ...)
    pod_patch: dict[str, Any] | None = None  # joins the pod to its gang
    held: tuple[str, str] | None = None  # (reason, message) while the pod must wait


def needs_grouping(pod: Obj, scheduler_name: str) -> bool:
    """Ours, not yet in a gang, not finished, not bound: the grouper's work."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    return (
        (spec.get("schedulerName") or "default-scheduler") == scheduler_name
        and not spec.get("nodeName")  # most pods: bound (the cheap checks first)
        and status.get("phase") not in ("Succeeded", "Failed")
        and not meta(pod).get("deletionTimestamp")
        and not annotations_of(pod).get(POD_GROUP_ANNOTATION)
    )


def awaiting(pod: Obj, message: str) -> tuple[str, str]:
    return (Reason.AWAITING_POD_GROUP.value, f"pod {meta(pod).get('name')}: {message}")


def hold(pod: Obj, message: str) -> PodPlan:
    return PodPlan(held=awaiting(pod, message))


def unreadable(pod: Obj, ref: Ref, status: int) -> PodPlan:
    """A hold for a pod whose owner could not be read, naming the owner and the fix."""
    if status == 403:
        fix = (
            f"the scheduler may not read {ref.kind} objects: grant get/list/watch on them to its ClusterRole "
            "(deploy/chart templates/clusterrole.yaml), or set pod-group-name on the pod template"
        )
    elif status == 404:
        fix = f"{ref.kind} is not served by the API server (its CRD is not installed) or the owner was deleted"
    else:
        fix = f"reading it failed with HTTP {status}; retried every cycle"
    return hold(pod, f"its owner {ref.describe()} cannot be read: {fix}")


def plan(pod: Obj, chain: Chain, existing: Obj | None, config: GrouperConfig) -> PodPlan:
    """The plan for a pod `needs_grouping` said is ours, whose chain was read completely. No owner: a gang
    of one (nothing to do). `existing` is the PodGroup named as the rule names the gang, if any."""
    try:
        spec = group_pod(pod, chain.owners, config)
    except GroupingError as err:
        return hold(pod, f"its workload cannot be grouped: {err}")
    if spec is None:
        return PodPlan()
    if existing is None:
        return PodPlan(spec, create=podgroup_object(spec), pod_patch=pod_patch(spec))
    if not is_ours(existing):  # someone else's PodGroup of that name: join it, never change it
        return PodPlan(spec, pod_patch=pod_patch(spec))
    return PodPlan(spec, update=needs_update(existing, spec), pod_patch=pod_patch(spec))

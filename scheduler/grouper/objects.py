"""A GroupSpec as the API's JSON: the PodGroup object, and what a pod is patched with to join it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.api.labels import POD_GROUP_ANNOTATION, SUBGROUP_LABEL
from scheduler.api.podgroup import TopologyConstraint
from scheduler.grouper.rules import GROUPER_ANNOTATION, GROUPER_NAME, GroupSpec, annotations_of, labels_of
from scheduler.kube.paths import POD_GROUPS


def _gang(min_member: int | None, min_sub_group: int | None, c: TopologyConstraint) -> dict[str, Any]:
    """The fields a PodGroup and each of its subgroups share, unset ones left out."""
    out: dict[str, Any] = {}
    if min_member is not None:
        out["minMember"] = min_member
    if min_sub_group is not None:
        out["minSubGroup"] = min_sub_group
    levels = {
        "topology": c.topology,
        "requiredTopologyLevel": c.required_level,
        "preferredTopologyLevel": c.preferred_level,
    }
    if any(levels.values()):
        out["topologyConstraint"] = {k: v for k, v in levels.items() if v}
    return out


def podgroup_spec(spec: GroupSpec) -> dict[str, Any]:
    """The PodGroup's spec field (also what an update compares)."""
    pg = spec.group
    out: dict[str, Any] = {"queue": pg.queue, "priorityClassName": pg.priority_class}
    out.update(_gang(pg.min_member, pg.min_sub_group, pg.constraint))
    if pg.preemptibility:
        out["preemptibility"] = pg.preemptibility
    if pg.sub_groups:
        out["subGroups"] = [
            {
                "name": sg.name,
                **({"parent": sg.parent} if sg.parent else {}),
                **_gang(sg.min_member, sg.min_sub_group, sg.constraint),
            }
            for sg in pg.sub_groups
        ]
    return out


def podgroup_object(spec: GroupSpec) -> dict[str, Any]:
    """The PodGroup to create: the top owner's labels and annotations, an owner reference to it (deleting
    the workload garbage-collects the gang), our marker annotation."""
    return {
        "apiVersion": POD_GROUPS.api_version,
        "kind": POD_GROUPS.kind,
        "metadata": {
            "name": spec.group.name,
            "namespace": spec.group.namespace,
            "labels": dict(spec.labels),
            "annotations": dict(spec.group.annotations),
            "ownerReferences": [
                {
                    "apiVersion": spec.owner.api_version,
                    "kind": spec.owner.kind,
                    "name": spec.owner.name,
                    "uid": spec.owner.uid,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": podgroup_spec(spec),
    }


def is_ours(podgroup: Mapping[str, Any]) -> bool:
    """Made by this grouper (so it may update it); a PodGroup someone else wrote is never touched."""
    return annotations_of(podgroup).get(GROUPER_ANNOTATION) == GROUPER_NAME


def needs_update(existing: Mapping[str, Any], spec: GroupSpec) -> dict[str, Any] | None:
    """The merge patch that brings our PodGroup up to date (minMember after a scale, subgroups, queue,
    labels, annotations), or None when it is current."""
    want = podgroup_spec(spec)
    have = existing.get("spec") or {}
    patch: dict[str, Any] = {}
    spec_patch = {k: v for k, v in want.items() if have.get(k) != v}
    for k in have:
        if k not in want and k in ("minMember", "minSubGroup", "subGroups", "topologyConstraint", "preemptibility"):
            spec_patch[k] = None
    if spec_patch:
        patch["spec"] = spec_patch
    labels = {k: v for k, v in spec.labels if labels_of(existing).get(k) != v}
    notes = {k: v for k, v in spec.group.annotations if annotations_of(existing).get(k) != v}
    if labels or notes:
        patch["metadata"] = {k: v for k, v in (("labels", labels), ("annotations", notes)) if v}
    return patch or None


def pod_patch(spec: GroupSpec) -> dict[str, Any]:
    """What joins a pod to its gang: the pod-group-name annotation, and its leaf subgroup's label."""
    patch: dict[str, Any] = {"metadata": {"annotations": {POD_GROUP_ANNOTATION: spec.group.name}}}
    if spec.pod_subgroup:
        patch["metadata"]["labels"] = {SUBGROUP_LABEL: spec.pod_subgroup}
    return patch

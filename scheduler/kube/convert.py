"""Kubernetes JSON objects (dicts) to our api types. Problems become data, never exceptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.api.labels import POD_GROUP_ANNOTATION, STALE_SINCE_ANNOTATION, TASK_PRIORITY_LABEL, value_of
from scheduler.api.node import Node, Taint
from scheduler.api.pod import Pod, PodConstraints, Toleration
from scheduler.api.podgroup import PodGroup, SubGroup, TopologyConstraint
from scheduler.api.queue import Queue, QueueResource
from scheduler.api.reasons import Reason
from scheduler.api.resources import CPU, GPU, MEMORY, PODS, Resources
from scheduler.api.times import parse_duration, parse_timestamp
from scheduler.api.topology import HOSTNAME_LABEL, PriorityClass, Topology
from scheduler.kube.podspec import node_term, objects, pod_extras
from scheduler.kube.quantity import QuantityError, to_canonical

Obj = Mapping[str, Any]
DEFAULT_PODS_PER_NODE = 110


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _quantities(values: Any, where: str, problems: list[str]) -> dict[str, int]:
    """A resource map in our units; bad entries are reported, not raised."""
    parsed: dict[str, int] = {}
    if isinstance(values, Mapping):
        for name, text in sorted(values.items()):
            try:
                parsed[str(name)] = to_canonical(str(name), text)
            except QuantityError as err:
                problems.append(f"{where}.{name}: {err}")
    return parsed


def parse_resources(values: Any, where: str, problems: list[str]) -> Resources:
    """A resource map (requests, allocatable) into Resources; bad entries are reported, not raised."""
    return Resources.of(_quantities(values, where, problems)) if isinstance(values, Mapping) else Resources()


def node_from_k8s(obj: Obj) -> Node:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    problems: list[str] = []
    alloc = parse_resources(status.get("allocatable") or status.get("capacity"), "allocatable", problems)
    if alloc.get(PODS) == 0 and not any(n == PODS for n in (status.get("allocatable") or {})):
        alloc = alloc + Resources.of({PODS: DEFAULT_PODS_PER_NODE})
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", "")))
        for t in spec.get("taints") or []
        if isinstance(t, Mapping)
    )
    ready = True
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
    labels = dict(_pairs(meta.get("labels")))
    labels.setdefault(HOSTNAME_LABEL, str(meta.get("name", "")))
    return Node(
        name=str(meta.get("name", "")),
        labels=tuple(sorted(labels.items())),
        allocatable=alloc,
        taints=taints,
        unschedulable=bool(spec.get("unschedulable", False)),
        ready=ready,
        creation=str(meta.get("creationTimestamp", "")),
    )


def _container_requests(c: Obj) -> dict[str, Any]:
    """requests, with limits standing in for resources that have no request (the API server's defaulting)."""
    res = c.get("resources") or {}
    merged = dict(res.get("limits") or {})
    merged.update(res.get("requests") or {})
    return merged


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _max(into: dict[str, int], other: Mapping[str, int]) -> None:
    for k, v in other.items():
        if v > into.get(k, 0):
            into[k] = v


def pod_request(spec: Obj, problems: list[tuple[str, str]]) -> Resources:
    """max(sum of containers, largest init container) + overhead, plus one pod (kube-scheduler's rule).

    Sidecar init containers (restartPolicy Always) run alongside the app, so they add to it. Summed in
    plain dicts (quantities are never negative), made Resources once: this runs for every pod event."""
    errors: list[str] = []
    total: dict[str, int] = {}
    for c in objects(spec.get("containers")):
        _add(total, _quantities(_container_requests(c), f"container {c.get('name')}", errors))
    init_peak: dict[str, int] = {}
    sidecars: dict[str, int] = {}
    for c in objects(spec.get("initContainers")):
        req = _quantities(_container_requests(c), f"initContainer {c.get('name')}", errors)
        if c.get("restartPolicy") == "Always":
            _add(sidecars, req)
            _max(init_peak, sidecars)
        else:
            _add(req, sidecars)
            _max(init_peak, req)
    _add(total, sidecars)
    _max(total, init_peak)
    _add(total, _quantities(spec.get("overhead"), "overhead", errors))
    for err in errors:
        problems.append((Reason.INVALID_POD.value, f"malformed resource request {err}"))
    _add(total, {PODS: 1})
    return Resources.of(total)


def _unsupported(spec: Obj) -> list[tuple[str, str]]:
    """Constraints we cannot evaluate: the pod waits, never placed against them."""
    if spec.get("resourceClaims"):
        return [
            (
                Reason.UNSUPPORTED_RESOURCE_CLAIMS.value,
                "spec.resourceClaims (dynamic resource allocation) is not evaluated by this scheduler; "
                "request devices as extended resources (e.g. nvidia.com/gpu) instead",
            )
        ]
    return []


def pod_from_k8s(obj: Obj, same_spec: Pod | None = None) -> Pod:
    """`same_spec`: a pod converted from a spec this one's equals in every field read here but the node
    (the caller compared them, kube/podwire.py `spec_key`): what the spec decides is taken from it, the rest
    read again (the pods of one workload share a spec; a pod's metadata and status change many times in its
    life, its spec seldom)."""
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    owners = meta.get("ownerReferences") or []
    labels = _pairs(meta.get("labels"))
    if same_spec is not None:  # every field named (dataclasses.replace costs twice this, per event)
        return Pod(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            scheduler_name=same_spec.scheduler_name,
            node_name=str(spec.get("nodeName") or ""),
            phase=str(status.get("phase") or "Pending"),
            request=same_spec.request,
            constraints=same_spec.constraints,
            labels=labels,
            annotations=_pairs(meta.get("annotations")),
            priority_class=_priority_class(spec, labels),
            priority=same_spec.priority,
            creation=str(meta.get("creationTimestamp", "")),
            owner_kind=_owner_kind(owners),
            deleting=bool(meta.get("deletionTimestamp")),
            problems=same_spec.problems,
            task_priority=_task_priority(labels),
            pod_group=_pod_group(meta),
            start_time=parse_timestamp(status.get("startTime")),
            extras=same_spec.extras,
        )
    problems: list[tuple[str, str]] = []
    request = pod_request(spec, problems)
    problems.extend(_unsupported(spec))
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = tuple(node_term(t) for t in required.get("nodeSelectorTerms") or [] if isinstance(t, Mapping))
    tolerations = tuple(
        sorted(
            (
                Toleration(
                    str(t.get("key", "")),
                    str(t.get("operator", "Equal")),
                    str(t.get("value", "")),
                    str(t.get("effect", "")),
                )
                for t in spec.get("tolerations") or []
                if isinstance(t, Mapping)
            ),
            key=lambda t: (t.key, t.operator, t.value, t.effect),
        )
    )
    priority = spec.get("priority")
    return Pod(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        scheduler_name=str(spec.get("schedulerName") or "default-scheduler"),
        node_name=str(spec.get("nodeName") or ""),
        phase=str(status.get("phase") or "Pending"),
        request=request,
        constraints=PodConstraints(_pairs(spec.get("nodeSelector")), terms, tolerations),
        labels=labels,
        annotations=_pairs(meta.get("annotations")),
        priority_class=_priority_class(spec, labels),
        priority=int(priority) if isinstance(priority, int) else None,
        creation=str(meta.get("creationTimestamp", "")),
        owner_kind=_owner_kind(owners),
        deleting=bool(meta.get("deletionTimestamp")),
        problems=tuple(problems),
        task_priority=_task_priority(labels),
        pod_group=_pod_group(meta),
        start_time=parse_timestamp(status.get("startTime")),
        extras=pod_extras(str(meta.get("name", "")), spec, dict(labels)),
    )


def _priority_class(spec: Obj, labels: tuple[tuple[str, str], ...]) -> str:
    return str(spec.get("priorityClassName") or value_of(labels, "priorityClassName") or "")


def _task_priority(labels: tuple[tuple[str, str], ...]) -> int:
    return _int_label(value_of(labels, TASK_PRIORITY_LABEL))


def _owner_kind(owners: Any) -> str:
    return next((str(o.get("kind", "")) for o in owners if o.get("controller")), "")


def _pod_group(meta: Obj) -> str:
    return str((meta.get("annotations") or {}).get(POD_GROUP_ANNOTATION) or "")


def _int_label(raw: str | None) -> int:
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def _constraint(value: Any) -> TopologyConstraint:
    if not isinstance(value, Mapping):
        return TopologyConstraint()
    return TopologyConstraint(
        str(value.get("topology") or ""),
        str(value.get("requiredTopologyLevel") or ""),
        str(value.get("preferredTopologyLevel") or ""),
    )


def _opt_int(value: Any, field: str, problems: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{field} must be an integer, got {value!r}")
        return None
    return value


def podgroup_from_k8s(obj: Obj) -> PodGroup:
    meta, spec = _meta(obj), obj.get("spec") or {}
    problems: list[str] = []
    subs = []
    for sg in spec.get("subGroups") or []:
        if not isinstance(sg, Mapping):
            problems.append(f"subGroups entry {sg!r} is not an object")
            continue
        subs.append(
            SubGroup(
                name=str(sg.get("name") or ""),
                min_member=_opt_int(sg.get("minMember"), f"subGroups[{sg.get('name')}].minMember", problems),
                parent=str(sg.get("parent") or ""),
                constraint=_constraint(sg.get("topologyConstraint")),
                min_sub_group=_opt_int(sg.get("minSubGroup"), f"subGroups[{sg.get('name')}].minSubGroup", problems),
            )
        )
    return PodGroup(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name", "")),
        min_member=_opt_int(spec.get("minMember"), "spec.minMember", problems),
        queue=str(spec.get("queue") or ""),
        priority_class=str(spec.get("priorityClassName") or ""),
        preemptibility=str(spec.get("preemptibility") or ""),
        constraint=_constraint(spec.get("topologyConstraint")),
        sub_groups=tuple(subs),
        min_sub_group=_opt_int(spec.get("minSubGroup"), "spec.minSubGroup", problems),
        annotations=_pairs(meta.get("annotations")),
        creation=str(meta.get("creationTimestamp", "")),
        uid=str(meta.get("uid", "")),
        problems=tuple(problems),
        stale_since=parse_timestamp((meta.get("annotations") or {}).get(STALE_SINCE_ANNOTATION)),
    )


# Queue units: cpu millicores, memory MB (10^6 bytes), gpu devices.
_QUEUE_RESOURCES = ((CPU, "cpu", 1), (MEMORY, "memory", 10**6), (GPU, "gpu", 1))


def queue_from_k8s(obj: Obj) -> Queue:
    meta, spec = _meta(obj), obj.get("spec") or {}
    problems: list[str] = []
    resources = []
    res_spec = spec.get("resources") or {}
    for canonical, field, unit in _QUEUE_RESOURCES:
        r = res_spec.get(field)
        if not isinstance(r, Mapping):
            continue
        values: dict[str, float] = {}
        for key, default in (("quota", 0), ("limit", -1), ("overQuotaWeight", 1)):
            raw = r.get(key, default)
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                problems.append(f"spec.resources.{field}.{key} must be a number, got {raw!r}")
                raw = default
            values[key] = raw
        quota, limit, weight = values["quota"], values["limit"], values["overQuotaWeight"]
        if quota < -1 or limit < -1 or weight < 0:
            problems.append(
                f"spec.resources.{field}: quota and limit must be >= -1 and overQuotaWeight >= 0 "
                f"(got quota={quota}, limit={limit}, overQuotaWeight={weight})"
            )
            continue
        resources.append(
            (
                canonical,
                QueueResource(
                    quota=-1 if quota == -1 else int(quota * unit),
                    limit=-1 if limit == -1 else int(limit * unit),
                    over_quota_weight=float(weight),
                ),
            )
        )
    priority = spec.get("priority", 100)
    if isinstance(priority, bool) or not isinstance(priority, int):
        problems.append(f"spec.priority must be an integer, got {priority!r}")
        priority = 100
    runtimes: dict[str, float | None] = {}
    for key in ("preemptMinRuntime", "reclaimMinRuntime"):
        raw = spec.get(key)
        runtimes[key] = None if raw is None else parse_duration(raw)
        if raw is not None and runtimes[key] is None:
            problems.append(f"spec.{key} must be a duration such as 90s, 5m or 1h (or -1: never), got {raw!r}")
    return Queue(
        name=str(meta.get("name", "")),
        parent=str(spec.get("parentQueue") or ""),
        priority=priority,
        resources=tuple(resources),
        creation=str(meta.get("creationTimestamp", "")),
        display_name=str(spec.get("displayName") or ""),
        problems=tuple(problems),
        preempt_min_runtime=runtimes["preemptMinRuntime"],
        reclaim_min_runtime=runtimes["reclaimMinRuntime"],
    )


def topology_from_k8s(obj: Obj) -> Topology:
    meta, spec = _meta(obj), obj.get("spec") or {}
    problems: list[str] = []
    levels = tuple(str(lv.get("nodeLabel", "")) for lv in spec.get("levels") or [] if isinstance(lv, Mapping))
    if not 1 <= len(levels) <= 16:
        problems.append(f"a Topology needs 1 to 16 levels, it has {len(levels)}")
    if len(set(levels)) != len(levels):
        problems.append("Topology levels must be unique")
    if HOSTNAME_LABEL in levels[:-1]:
        problems.append(f"{HOSTNAME_LABEL} may only be the last (narrowest) level")
    if any(not lv for lv in levels):
        problems.append("every level needs a nodeLabel")
    return Topology(name=str(meta.get("name", "")), levels=levels, problems=tuple(problems))


def priority_class_from_k8s(obj: Obj) -> PriorityClass:
    meta = _meta(obj)
    value = obj.get("value", 0)
    return PriorityClass(
        name=str(meta.get("name", "")),
        value=int(value) if isinstance(value, int) else 0,
        global_default=bool(obj.get("globalDefault", False)),
        preemption_policy=str(obj.get("preemptionPolicy") or "PreemptLowerPriority"),
    )

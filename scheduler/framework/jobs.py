"""Jobs (gangs) built from a snapshot: a PodGroup with its pods, or a lone pod as a gang of one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from scheduler.api.labels import (
    PREFERRED_ANNOTATION,
    QUEUE_LABEL,
    REQUIRED_ANNOTATION,
    SUBGROUP_LABEL,
    TOPOLOGY_ANNOTATION,
    names_topology,
    value_of,
)
from scheduler.api.pod import Pod
from scheduler.api.podgroup import PodGroup, SubGroup, TopologyConstraint
from scheduler.api.reasons import Reason
from scheduler.cache.cluster_state import Snapshot


@dataclass(slots=True, eq=False)
class Group:
    """The gang itself (name "") or one of its subgroups."""

    name: str
    min_member: int | None
    min_sub_group: int | None
    constraint: TopologyConstraint
    children: list[Group] = field(default_factory=list)
    pending: list[Pod] = field(default_factory=list)
    bound: list[Pod] = field(default_factory=list)

    def is_leaf(self) -> bool:
        return not self.children

    def walk(self) -> list[Group]:
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


@dataclass(slots=True, eq=False)
class Job:
    key: str
    namespace: str
    pod_group: PodGroup | None
    queue: str
    priority_class: str
    creation: str
    root: Group
    problem: tuple[Reason, str] | None = None  # found while building; the job waits with it
    priority: int = 0

    @property
    def pending(self) -> list[Pod]:
        if not self.root.children:  # most jobs: no subgroups (a new list all the same: callers may keep it)
            return list(self.root.pending)
        return [p for g in self.root.walk() for p in g.pending]

    @property
    def bound(self) -> list[Pod]:
        if not self.root.children:
            return list(self.root.bound)
        return [p for g in self.root.walk() for p in g.bound]


NO_CONSTRAINT = TopologyConstraint()


def _annotated_constraint(annotations: tuple[tuple[str, str], ...], annotated: bool) -> TopologyConstraint:
    """The constraint the topology annotations name (`annotated`: any may be there, `names_topology`)."""
    if not annotated:
        return NO_CONSTRAINT
    return TopologyConstraint(
        value_of(annotations, TOPOLOGY_ANNOTATION) or "",
        value_of(annotations, REQUIRED_ANNOTATION) or "",
        value_of(annotations, PREFERRED_ANNOTATION) or "",
    )


def _pod_constraint(pod: Pod) -> TopologyConstraint:
    return _annotated_constraint(pod.annotations, pod.topology_annotated)


def _gang_constraint(pg: PodGroup, pods: list[Pod]) -> TopologyConstraint:
    """spec.topologyConstraint, else the PodGroup's annotations, else the first pod's annotations."""
    if not pg.constraint.is_empty():
        return pg.constraint
    from_annotations = _annotated_constraint(pg.annotations, names_topology(pg.annotations))
    if not from_annotations.is_empty():
        return from_annotations
    for pod in pods:
        c = _pod_constraint(pod)
        if not c.is_empty():
            return c
    return NO_CONSTRAINT


def _build_groups(pg: PodGroup, pods: list[Pod]) -> tuple[Group, tuple[Reason, str] | None]:
    root = Group("", pg.min_member, pg.min_sub_group, _gang_constraint(pg, pods))
    # the usual PodGroup (every running gang is built each cycle): nothing to validate, pods to the root
    simple = not pg.sub_groups and not pg.problems and pg.min_sub_group is None and (pg.min_member or 0) >= 0
    if simple and not any(pod.label(SUBGROUP_LABEL) for pod in pods):
        for pod in pods:
            (root.bound if pod.bound else root.pending).append(pod)
        return root, None
    problem: tuple[Reason, str] | None = None

    def bad(message: str) -> None:
        nonlocal problem
        if problem is None:
            problem = (Reason.INVALID_POD_GROUP, message)

    for p in pg.problems:
        bad(p)
    if pg.min_member is not None and pg.min_member < 0:
        bad(f"spec.minMember is {pg.min_member}; it must be >= 0 (0 means no gang requirement)")
    if pg.min_member is not None and pg.min_sub_group is not None:
        bad("spec.minMember and spec.minSubGroup are mutually exclusive; set only one")
    groups: dict[str, Group] = {}
    specs: dict[str, SubGroup] = {}
    for sg in pg.sub_groups:
        if not sg.name:
            bad("a subGroups entry has no name")
        elif sg.name in specs:
            bad(f"subgroup name {sg.name!r} is used twice; subgroup names must be unique")
        specs[sg.name] = sg
        groups[sg.name] = Group(sg.name, sg.min_member, sg.min_sub_group, sg.constraint)
    for name in sorted(specs):
        sg = specs[name]
        if sg.parent and sg.parent not in groups:
            bad(f"subgroup {name!r} names parent {sg.parent!r}, which is not a subgroup of this PodGroup")
            continue
        # walk up to detect cycles
        seen, cur = [name], sg.parent
        while cur:
            if cur in seen:
                bad("subgroup parents form a cycle: " + " -> ".join([*seen, cur]))
                break
            seen.append(cur)
            cur = specs[cur].parent if cur in specs else ""
    if problem is None:
        for sg in pg.sub_groups:  # keep declaration order: it is the user's order
            (groups[sg.parent] if sg.parent else root).children.append(groups[sg.name])
        for g in groups.values():
            if g.is_leaf() and g.min_member is None:
                bad(f"leaf subgroup {g.name!r} needs minMember")
            if g.min_member is not None and g.min_member < 0:
                bad(f"subgroup {g.name!r} has minMember {g.min_member}; it must be >= 0")
    for pod in pods:
        sub = pod.label(SUBGROUP_LABEL)
        if sub:
            target = groups.get(sub)
            if target is None:
                bad(
                    f"pod {pod.name} names subgroup {sub!r} (label {SUBGROUP_LABEL}), "
                    "which the PodGroup does not define"
                )
                continue
            if not target.is_leaf():
                bad(f"pod {pod.name} is in subgroup {sub!r}, which has child subgroups; only leaf subgroups hold pods")
                continue
        elif groups:
            bad(f"pod {pod.name} has no {SUBGROUP_LABEL} label but its PodGroup defines subgroups")
            continue
        else:
            target = root
        (target.bound if pod.bound else target.pending).append(pod)
    return root, problem


def _member_order(pod: Pod) -> tuple[int, str]:
    return (-pod.task_priority, pod.name)


def build_jobs(snapshot: Snapshot, default_queue: str) -> list[Job]:
    """Every job with at least one pending pod, in key order."""
    by_group: dict[str, list[Pod]] = {}
    singles: list[Pod] = []
    for pod in snapshot.pending.values():
        if pod.group_key:
            by_group.setdefault(pod.group_key, []).append(pod)
        else:
            singles.append(pod)
    singles.sort(key=lambda p: p.key)
    jobs: list[Job] = []
    for key in sorted(by_group):
        pg = snapshot.pod_groups.get(key)
        first = min(by_group[key], key=lambda p: p.name)
        if pg is None:
            root = Group("", 1, None, TopologyConstraint(), pending=sorted(by_group[key], key=_member_order))
            jobs.append(
                Job(
                    key,
                    first.namespace,
                    None,
                    first.label(QUEUE_LABEL) or default_queue,
                    first.priority_class,
                    first.creation,
                    root,
                    (
                        Reason.POD_GROUP_NOT_FOUND,
                        f"pods name PodGroup {key.split('/', 1)[1]!r} (annotation pod-group-name) in namespace "
                        f"{first.namespace}, which does not exist; create it or fix the annotation",
                    ),
                )
            )
            continue
        jobs.append(_group_job(snapshot, key, pg, first, default_queue))
    for pod in singles:
        job = _single_job(pod, default_queue)
        held = snapshot.held.get(pod.key)
        if held is not None:  # its workload's PodGroup is not made yet: never a gang of one meanwhile
            job.problem = (Reason(held[0]), held[1])
        jobs.append(job)
    jobs.sort(key=lambda j: j.key)
    return jobs


def _group_job(snapshot: Snapshot, key: str, pg: PodGroup, first: Pod, default_queue: str) -> Job:
    members = [p for p in snapshot.members.get(key, ()) if p.bound or not p.deleting]
    ordered = any(p.task_priority for p in members)  # members come sorted by key, i.e. by name
    if ordered:
        members.sort(key=_member_order)
    root, problem = _build_groups(pg, members)
    return Job(
        key,
        pg.namespace,
        pg,
        pg.queue or first.label(QUEUE_LABEL) or default_queue,
        pg.priority_class or first.priority_class,
        pg.creation or first.creation,
        root,
        problem,
    )


def _single_job(pod: Pod, default_queue: str) -> Job:
    root = Group("", 1, None, _pod_constraint(pod))
    (root.bound if pod.bound else root.pending).append(pod)
    return Job(
        pod.key,
        pod.namespace,
        None,
        pod.label(QUEUE_LABEL) or default_queue,
        pod.priority_class,
        pod.creation,
        root,
    )


def build_running_gangs(snapshot: Snapshot, default_queue: str, pending: list[Job]) -> dict[str, Job]:
    """Every job with a PodGroup and a running (bound, not terminating) pod. A job that also has pending pods
    is the same object as in `pending`."""
    by_key = {j.key: j for j in pending}
    out: dict[str, Job] = {}
    for key in sorted(snapshot.members):
        members = snapshot.members[key]
        if not any(p.bound and not p.deleting for p in members):
            continue
        job = by_key.get(key)
        if job is None:
            pg = snapshot.pod_groups.get(key)
            if pg is None:
                continue  # its PodGroup is gone: nothing says what the gang is
            job = _group_job(snapshot, key, pg, min(members, key=attrgetter("name")), default_queue)
        if job.problem is None:
            out[key] = job
    return out


def build_running_jobs(snapshot: Snapshot, default_queue: str, gangs: Mapping[str, Job]) -> dict[str, Job]:
    """Every job with a running pod, the candidates take-back may evict: `gangs` (build_running_gangs), then
    every running pod without a PodGroup as a gang of one."""
    out = dict(gangs)
    for key in sorted(snapshot.running_singles):
        pod = snapshot.running_singles[key]
        if not pod.deleting:
            out[key] = _single_job(pod, default_queue)
    return out


def leaf_minimum(g: Group) -> int:
    return g.min_member if g.min_member is not None else 1

"""The grouping rules: a pod and its owner chain in, the PodGroup it belongs to out. Pure (no I/O, no clock).

KAI-Scheduler's pod grouper is the reference (facts from its docs and source, not its code): one PodGroup per
top owner named `pg-<owner name>-<owner uid>`, the top owner's labels and annotations carried over, its
topology annotations turned into the spec's topologyConstraint, an owner reference to it so deleting the
workload garbage-collects the gang. Kinds differ in the gang rule (minMember, subgroups); where KAI falls
short of the workload's own semantics we say so next to the rule.

`chain` is the pod's controller owners from the nearest to the top one, as parsed Kubernetes objects."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scheduler.api.labels import (
    PREEMPTIBILITY_LABEL,
    PREFERRED_ANNOTATION,
    QUEUE_LABEL,
    REQUIRED_ANNOTATION,
    TOPOLOGY_ANNOTATION,
)
from scheduler.api.podgroup import PodGroup, SubGroup, TopologyConstraint

Obj = Mapping[str, Any]

# KAI's keys
BATCH_MIN_MEMBER_ANNOTATION = "kai.scheduler/batch-min-member"  # Job, JobSet, default grouper
STATEFULSET_MIN_MEMBER_ANNOTATION = "kai.scheduler/min-member"  # StatefulSet with podManagementPolicy Parallel
SEGMENT_SIZE_ANNOTATION = "kai.scheduler/segment-size"  # LeaderWorkerSet without subGroupPolicy
SEGMENT_REQUIRED_ANNOTATION = "kai.scheduler/segment-topology-required-placement"
SEGMENT_PREFERRED_ANNOTATION = "kai.scheduler/segment-topology-preferred-placement"
PRIORITY_LABEL = "priorityClassName"
RAY_PRIORITY_LABEL = "ray.io/priority-class-name"
# ours: marks a PodGroup this grouper made, so it never touches one a user wrote
GROUPER_ANNOTATION = "kai.scheduler/grouped-by"
GROUPER_NAME = "kaisched"

# KAI's default priority classes per kind (train is the fallback of its default grouper)
TRAIN, BUILD, INFERENCE = "train", "build", "inference"
DEFAULT_PRIORITY_CLASSES: Mapping[str, str] = {
    "Deployment": INFERENCE,
    "LeaderWorkerSet": INFERENCE,  # a serving kind (KAI's default grouper would say train)
    "DynamoGraphDeployment": INFERENCE,
    "PodCliqueSet": INFERENCE,  # Grove: disaggregated serving
    "RayService": INFERENCE,
    "Service": INFERENCE,  # Knative
    "Notebook": BUILD,
}

# workload labels the rules read on pods
JOBSET_REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOBSET_JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_SIZE_ANNOTATION = "leaderworkerset.sigs.k8s.io/size"  # on every pod: its revision's group size
LWS_LEADER, LWS_WORKERS = "leader", "workers"  # KAI's subgroup names
KUBEFLOW_REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
RAY_GROUP_LABEL = "ray.io/group"
RAY_HEAD_GROUP = "headgroup"
DYNAMO_COMPONENT_LABEL = "nvidia.com/dynamo-component"

KUBEFLOW_REPLICA_SPECS = {
    "PyTorchJob": "pytorchReplicaSpecs",
    "TFJob": "tfReplicaSpecs",
    "XGBoostJob": "xgbReplicaSpecs",
    "JAXJob": "jaxReplicaSpecs",
    "MPIJob": "mpiReplicaSpecs",
}
# kinds grouped as the owner just below them, with their metadata carried down (KAI's skip-top-owner):
# a CronJob's runs are separate Jobs; a TrainJob wraps a JobSet
SKIPPED_KINDS = ("CronJob", "TrainJob")


class GroupingError(ValueError):
    """The workload's objects say something the rule cannot turn into a gang; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class GrouperConfig:
    default_queue: str = "default-queue"
    priority_classes: Mapping[str, str] = field(default_factory=dict)  # kind -> class, over the defaults
    # the PriorityClass names that exist (None: do not check); a name that does not exist is skipped, as KAI does
    known_priority_classes: frozenset[str] | None = None

    def default_priority_class(self, kind: str) -> str:
        return self.priority_classes.get(kind) or DEFAULT_PRIORITY_CLASSES.get(kind, TRAIN)


@dataclass(frozen=True, slots=True)
class OwnerRef:
    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """The gang a pod belongs to, as the scheduler's own PodGroup type, with what the object written for it
    carries besides (owner reference, labels) and the leaf subgroup the pod joins ("" when the gang has none)."""

    group: PodGroup
    owner: OwnerRef
    labels: tuple[tuple[str, str], ...] = ()
    pod_subgroup: str = ""
    kind: str = ""  # the kind whose rule made it

    @property
    def key(self) -> str:
        return self.group.key


# ------------------------------------------------------------------------------------------ helpers
def meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _strmap(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def labels_of(obj: Obj) -> dict[str, str]:
    return _strmap(meta(obj).get("labels"))


def annotations_of(obj: Obj) -> dict[str, str]:
    return _strmap(meta(obj).get("annotations"))


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _int(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise GroupingError(f"{what} must be an integer, got {value!r}")
    return value


def _int_annotation(notes: Mapping[str, str], key: str, where: str) -> int | None:
    raw = notes.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise GroupingError(f"{where}: annotation {key}={raw!r} is not an integer") from None
    if value < 1:
        raise GroupingError(f"{where}: annotation {key}={raw!r} must be >= 1")
    return value


def describe(obj: Obj) -> str:
    """`Kind ns/name`, for messages."""
    m = meta(obj)
    ns = m.get("namespace")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{m.get('name', '?')}"


def owner_ref(obj: Obj) -> OwnerRef:
    m = meta(obj)
    return OwnerRef(
        str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(m.get("name", "")), str(m.get("uid", ""))
    )


def pg_name(name: str, uid: str) -> str:
    """KAI's PodGroup name, `pg-<owner name>-<owner uid>` (objects read from a file may have no uid)."""
    return f"pg-{name}-{uid}" if uid else f"pg-{name}"


def _dns_label(name: str) -> str:
    """A subgroup name must be a DNS label: lowercase alphanumerics and '-', at most 63 characters."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return out or "component"


def _constraint(notes: Mapping[str, str]) -> TopologyConstraint:
    return TopologyConstraint(
        notes.get(TOPOLOGY_ANNOTATION, ""), notes.get(REQUIRED_ANNOTATION, ""), notes.get(PREFERRED_ANNOTATION, "")
    )


def _template_constraint(template: Any) -> TopologyConstraint:
    """A pod template's topology annotations (a subgroup's own constraint); empty without a placement level."""
    c = _constraint(_strmap(_get(template, "metadata", "annotations")))
    return c if (c.required_level or c.preferred_level) else TopologyConstraint()


def _carry(top: Obj, skipped: Sequence[Obj]) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations the gang inherits: the top owner's, then those of skipped owners above it
    where the top owner has no value of its own (KAI's skip-top-owner propagation)."""
    labels, notes = labels_of(top), annotations_of(top)
    for above in skipped:
        for k, v in labels_of(above).items():
            labels.setdefault(k, v)
        for k, v in annotations_of(above).items():
            notes.setdefault(k, v)
    return labels, notes


# ------------------------------------------------------------------------------------------ the rule
def group_pod(pod: Obj, chain: Sequence[Obj], config: GrouperConfig) -> GroupSpec | None:
    """The PodGroup for `pod`, whose controller owners (nearest first) are `chain`; None for a pod with no
    owner (it stays a gang of one). Raises GroupingError when the workload cannot be grouped as it is."""
    if not chain:
        return None
    chain = list(chain)
    skipped: list[Obj] = []
    while len(chain) > 1 and chain[-1].get("kind") in SKIPPED_KINDS:
        skipped.insert(0, chain.pop())
    top = chain[-1]
    kind = str(top.get("kind", ""))
    labels, notes = _carry(top, skipped)
    top_meta = meta(top)
    namespace = str(meta(pod).get("namespace") or top_meta.get("namespace") or "default")
    pod_labels = labels_of(pod)
    base = _Base(
        namespace=namespace,
        name=pg_name(str(top_meta.get("name", "")), str(top_meta.get("uid", ""))),
        owner=owner_ref(top),
        labels=labels,
        notes=notes,
        queue=labels.get(QUEUE_LABEL) or pod_labels.get(QUEUE_LABEL) or config.default_queue,
        priority_class=_priority_class(pod, [top, *skipped], labels, kind, [*chain, *skipped], config),
        preemptibility=_preemptibility(labels, chain, pod_labels),
        kind=kind,
    )
    rule = _RULES.get(kind, _default_rule)
    return rule(base, pod, top, chain)


@dataclass(slots=True)
class _Base:
    namespace: str
    name: str
    owner: OwnerRef
    labels: dict[str, str]
    notes: dict[str, str]
    queue: str
    priority_class: str
    preemptibility: str
    kind: str

    def spec(
        self,
        min_member: int | None,
        sub_groups: Sequence[SubGroup] = (),
        min_sub_group: int | None = None,
        pod_subgroup: str = "",
    ) -> GroupSpec:
        notes = dict(self.notes)
        notes[GROUPER_ANNOTATION] = GROUPER_NAME
        group = PodGroup(
            namespace=self.namespace,
            name=self.name,
            min_member=min_member,
            queue=self.queue,
            priority_class=self.priority_class,
            preemptibility=self.preemptibility,
            constraint=_constraint(self.notes),
            sub_groups=tuple(sub_groups),
            min_sub_group=min_sub_group,
            annotations=tuple(sorted(notes.items())),
        )
        return GroupSpec(group, self.owner, tuple(sorted(self.labels.items())), pod_subgroup, self.kind)


def _priority_class(
    pod: Obj, owners: Sequence[Obj], carried: Mapping[str, str], kind: str, chain: Sequence[Obj], config: GrouperConfig
) -> str:
    """KAI's order: the priorityClassName label of the top owner (then of the owners it skipped), of the
    pod, then the pod's spec.priorityClassName; a name that does not exist is passed over; then the
    default class of the top owner's kind. Ray's own label wins for Ray kinds."""
    known = config.known_priority_classes
    candidates = [carried.get(PRIORITY_LABEL, "")]
    candidates += [labels_of(o).get(PRIORITY_LABEL, "") for o in owners]
    candidates += [labels_of(pod).get(PRIORITY_LABEL, ""), str(_get(pod, "spec", "priorityClassName") or "")]
    if kind in ("RayCluster", "RayJob", "RayService") and carried.get(RAY_PRIORITY_LABEL):
        return carried[RAY_PRIORITY_LABEL]
    for name in candidates:
        if name and (known is None or name in known):
            return name
    for owner in reversed(chain):  # the top owner's kind first, then the kinds below it
        default = config.priority_classes.get(str(owner.get("kind", "")))
        if default and (known is None or default in known):
            return default
    return config.default_priority_class(kind)


def _preemptibility(carried: Mapping[str, str], chain: Sequence[Obj], pod_labels: Mapping[str, str]) -> str:
    for labels in (carried, *(labels_of(o) for o in reversed(chain)), pod_labels):
        value = labels.get(PREEMPTIBILITY_LABEL, "")
        if value in ("preemptible", "non-preemptible"):
            return value
    return ""


# --------------------------------------------------------------------------------- per-kind rules
def _default_rule(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """Unknown kinds, ReplicaSet: one gang per top owner, minMember 1 or kai.scheduler/batch-min-member."""
    return base.spec(_int_annotation(base.notes, BATCH_MIN_MEMBER_ANNOTATION, describe(top)) or 1)


def _deployment(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """A Deployment's replicas are independent (and a rollout mixes two ReplicaSets): one gang per pod,
    `pg-<pod>-<pod uid>`, owned by the pod (KAI's rule)."""
    m = meta(pod)
    base.name = pg_name(str(m.get("name", "")), str(m.get("uid", "")))
    base.owner = OwnerRef("v1", "Pod", str(m.get("name", "")), str(m.get("uid", "")))
    return base.spec(1)


def _statefulset(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """minMember 1, or kai.scheduler/min-member, honoured only with podManagementPolicy Parallel (OrderedReady
    creates one pod after the other, so a gang of several would wait forever)."""
    wanted = _int_annotation(base.notes, STATEFULSET_MIN_MEMBER_ANNOTATION, describe(top))
    if wanted is None:
        return base.spec(1)
    policy = str(_get(top, "spec", "podManagementPolicy") or "OrderedReady")
    if policy != "Parallel":
        raise GroupingError(
            f"{describe(top)}: annotation {STATEFULSET_MIN_MEMBER_ANNOTATION} needs spec.podManagementPolicy: "
            f"Parallel (it is {policy}, which creates pods one at a time and would deadlock a gang)"
        )
    return base.spec(wanted)


def _job(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """One gang per Job. minMember: kai.scheduler/batch-min-member; else, for an Indexed Job whose
    completions equal its parallelism (every index a rank of one distributed run), the parallelism (KAI says
    1 here, so such a job could start half its ranks); else 1 (its pods are independent work items)."""
    override = _int_annotation(base.notes, BATCH_MIN_MEMBER_ANNOTATION, describe(top))
    if override is not None:
        return base.spec(override)
    spec = top.get("spec") or {}
    parallelism = _int(spec.get("parallelism"), 1, f"{describe(top)} spec.parallelism")
    completions = _int(spec.get("completions"), parallelism, f"{describe(top)} spec.completions")
    if spec.get("completionMode") == "Indexed" and completions == parallelism and parallelism > 1:
        return base.spec(parallelism)
    return base.spec(1)


def _jobset(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """One gang per JobSet: a subgroup per replicatedJob (minSubGroup: its replicas) holding a leaf per
    replica `<job>-replica-<i>` (minMember: the Job's parallelism, or the template's batch-min-member).
    The gang needs every replicatedJob (AnyOrder), one at a time for InOrder startup, or the JobSet's
    batch-min-member (as KAI's)."""
    where = describe(top)
    jobs = _get(top, "spec", "replicatedJobs")
    if not isinstance(jobs, list) or not jobs:
        raise GroupingError(f"{where} has no spec.replicatedJobs")
    subs: list[SubGroup] = []
    for i, rj in enumerate(jobs):
        name = str(_get(rj, "name") or "")
        if not name:
            raise GroupingError(f"{where}: replicatedJobs[{i}] has no name")
        replicas = _int(_get(rj, "replicas"), 1, f"{where} replicatedJobs[{name}].replicas")
        template = _get(rj, "template")
        leaf_min = _int_annotation(
            _strmap(_get(template, "metadata", "annotations")), BATCH_MIN_MEMBER_ANNOTATION, f"{where} {name}"
        ) or _int(_get(template, "spec", "parallelism"), 1, f"{where} replicatedJobs[{name}] parallelism")
        constraint = _template_constraint(template)
        subs.append(SubGroup(name, None, "", TopologyConstraint(), min_sub_group=replicas))
        subs.extend(SubGroup(f"{name}-replica-{r}", leaf_min, name, constraint) for r in range(replicas))
    override = _int_annotation(base.notes, BATCH_MIN_MEMBER_ANNOTATION, where)
    if override is not None:
        need = min(override, len(jobs))
    elif _get(top, "spec", "startupPolicy", "startupPolicyOrder") == "InOrder":
        need = 1
    else:
        need = len(jobs)
    labels = labels_of(pod)
    rj_name, index = labels.get(JOBSET_REPLICATED_JOB_LABEL, ""), labels.get(JOBSET_JOB_INDEX_LABEL, "")
    leaf = f"{rj_name}-replica-{index}"
    if not rj_name or not index or leaf not in {s.name for s in subs}:
        raise GroupingError(
            f"pod {meta(pod).get('name')} of {where} has no leaf subgroup: labels {JOBSET_REPLICATED_JOB_LABEL}="
            f"{rj_name!r}, {JOBSET_JOB_INDEX_LABEL}={index!r} name no replica of the JobSet"
        )
    return base.spec(None, subs, need, leaf)


def _lws(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """One gang per replica group (leader + its workers), `pg-<lws>-<uid>-group-<index>`, minMember the group
    size: the pod's `leaderworkerset.sigs.k8s.io/size` (the size of the LWS revision that made it), else
    spec.leaderWorkerTemplate.size. startupPolicy LeaderReady: the leader alone until it is placed (its workers
    are only created once it is ready). Subgroups `leader` (1) and `workers` (size - 1); with segments
    (spec.leaderWorkerTemplate.subGroupPolicy.subGroupSize, else KAI's kai.scheduler/segment-size on the LWS or
    its workerTemplate) one subgroup per LWS subgroup instead (see _lws_segments)."""
    where = describe(top)
    template = _get(top, "spec", "leaderWorkerTemplate")
    size = _int_annotation(annotations_of(pod), LWS_SIZE_ANNOTATION, f"pod {meta(pod).get('name')}") or _int(
        _get(template, "size"), 1, f"{where} spec.leaderWorkerTemplate.size"
    )
    if size < 1:
        raise GroupingError(f"{where}: spec.leaderWorkerTemplate.size must be >= 1, got {size}")
    labels = labels_of(pod)
    group_index = labels.get(LWS_GROUP_INDEX_LABEL, "")
    if group_index.isdigit():
        base.name = f"{base.name}-group-{int(group_index)}"
    worker_index = labels.get(LWS_WORKER_INDEX_LABEL)
    # a worker's owners include its leader pod (the workers' StatefulSet is the leader's)
    is_leader = worker_index == "0" if worker_index is not None else all(o.get("kind") != "Pod" for o in chain)
    policy = str(_get(top, "spec", "startupPolicy") or "LeaderCreated")
    if policy not in ("LeaderCreated", "LeaderReady"):
        raise GroupingError(f"{where}: unknown spec.startupPolicy {policy!r}")
    leader = SubGroup(LWS_LEADER, 1, "", TopologyConstraint())
    if policy == "LeaderReady" and is_leader and not _get(pod, "spec", "nodeName"):
        return base.spec(1, [leader], pod_subgroup=LWS_LEADER)
    segment = _lws_segment_size(top, base.notes, size)
    if segment is not None and size > 1:
        worker = 0 if is_leader else _lws_worker_index(pod, worker_index, size)
        subs, leaf = _lws_segments(top, base.notes, size, segment, worker)
        return base.spec(size, subs, pod_subgroup=leaf)
    subs = [leader]
    if size > 1:
        subs.append(SubGroup(LWS_WORKERS, size - 1, "", TopologyConstraint()))
    return base.spec(size, subs, pod_subgroup=LWS_LEADER if is_leader else LWS_WORKERS)


def _lws_worker_template_notes(top: Obj) -> dict[str, str]:
    return _strmap(_get(top, "spec", "leaderWorkerTemplate", "workerTemplate", "metadata", "annotations"))


def _lws_segment_size(top: Obj, notes: Mapping[str, str], size: int) -> int | None:
    """The LWS's subgroup size: its own subGroupPolicy, else KAI's segment-size annotation on the LWS, then on
    its workerTemplate (KAI's order); None: no segments."""
    where = describe(top)
    value = _get(top, "spec", "leaderWorkerTemplate", "subGroupPolicy", "subGroupSize")
    segment = (
        _int(value, 1, f"{where} spec.leaderWorkerTemplate.subGroupPolicy.subGroupSize")
        if value is not None
        else _int_annotation(notes, SEGMENT_SIZE_ANNOTATION, where)
        or _int_annotation(_lws_worker_template_notes(top), SEGMENT_SIZE_ANNOTATION, f"{where} workerTemplate")
    )
    if segment is not None and not 1 <= segment <= size:
        raise GroupingError(f"{where}: subgroup size {segment} must be between 1 and the group size {size}")
    return segment


def _lws_worker_index(pod: Obj, worker_index: str | None, size: int) -> int:
    if worker_index is None or not worker_index.isdigit() or int(worker_index) >= size:
        raise GroupingError(
            f"pod {meta(pod).get('name')}: label {LWS_WORKER_INDEX_LABEL}={worker_index!r} is not a worker index "
            f"of a group of {size}, so its segment of the group is unknown"
        )
    return int(worker_index)


def _lws_segments(
    top: Obj, notes: Mapping[str, str], size: int, segment: int, worker: int
) -> tuple[list[SubGroup], str]:
    """The subgroups of a segmented replica group and the pod's leaf (worker index `worker`, 0 the leader).
    Members are split as LWS splits them: subGroupPolicyType LeaderWorker (the default) puts the leader in
    segment 0, with the workers 1..segment when size - 1 is divisible by the segment size, else 1..segment-1;
    LeaderExcluded (size - 1 divisible) keeps the leader out of every segment. Names as KAI's: `segment-<i>`
    (its topology from kai.scheduler/segment-topology-{required,preferred}-placement on the workerTemplate,
    else on the LWS), and `leader` (inside segment-0 for LeaderWorker) and `workers` (segment 0's workers).
    Each segment's minMember counts its members (KAI counts the leader twice when there is one segment of a
    divisible size, so such a gang never starts)."""
    where = describe(top)
    policy = str(_get(top, "spec", "leaderWorkerTemplate", "subGroupPolicy", "subGroupPolicyType") or "LeaderWorker")
    if policy not in ("LeaderWorker", "LeaderExcluded"):
        raise GroupingError(f"{where}: unknown subGroupPolicy.subGroupPolicyType {policy!r}")
    divisible = (size - 1) % segment == 0
    if policy == "LeaderExcluded" and not divisible:
        raise GroupingError(
            f"{where}: LeaderExcluded needs size - 1 ({size - 1}) divisible by the subgroup size {segment}"
        )

    def segment_of(w: int) -> int:
        return (w - 1) // segment if divisible else w // segment

    counts = [0] * (segment_of(size - 1) + 1)
    for w in range(1, size):
        counts[segment_of(w)] += 1
    worker_notes = _lws_worker_template_notes(top)
    placement = {
        k: worker_notes.get(k) or notes.get(k, "")
        for k in (TOPOLOGY_ANNOTATION, SEGMENT_REQUIRED_ANNOTATION, SEGMENT_PREFERRED_ANNOTATION)
    }
    constraint = TopologyConstraint(
        placement[TOPOLOGY_ANNOTATION], placement[SEGMENT_REQUIRED_ANNOTATION], placement[SEGMENT_PREFERRED_ANNOTATION]
    )
    if not (constraint.required_level or constraint.preferred_level):
        constraint = TopologyConstraint()
    segments = [SubGroup(f"segment-{i}", n, "", constraint) for i, n in enumerate(counts)]
    if policy == "LeaderExcluded":
        leaf = LWS_LEADER if worker == 0 else f"segment-{segment_of(worker)}"
        return [SubGroup(LWS_LEADER, 1, "", TopologyConstraint()), *segments], leaf
    first = segments[0]
    segments[0] = SubGroup(first.name, counts[0] + 1, "", constraint)
    inner = [
        SubGroup(LWS_LEADER, 1, first.name, TopologyConstraint()),
        SubGroup(LWS_WORKERS, counts[0], first.name, TopologyConstraint()),
    ]
    own = segment_of(worker) if worker else -1
    leaf = LWS_LEADER if own < 0 else LWS_WORKERS if own == 0 else f"segment-{own}"
    return [*segments, *inner], leaf


def _kubeflow(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """One gang per job: spec.runPolicy.schedulingPolicy.minAvailable, else every replica of every replica
    type (as KAI's). Without minAvailable each replica type is a subgroup (its replicas as minMember), so
    the pods of one type can be kept together. MPIJob: the launcher is not counted when it is only created
    once the workers are ready (launcherCreationPolicy WaitForWorkersReady)."""
    where = describe(top)
    field_name = KUBEFLOW_REPLICA_SPECS[base.kind]
    specs = _get(top, "spec", field_name)
    if not isinstance(specs, Mapping) or not specs:
        raise GroupingError(f"{where} has no spec.{field_name}")
    late_launcher = base.kind == "MPIJob" and _get(top, "spec", "launcherCreationPolicy") == "WaitForWorkersReady"
    counts: dict[str, int] = {}
    for rtype in sorted(specs):
        replicas = _int(_get(specs[rtype], "replicas"), 1, f"{where} spec.{field_name}.{rtype}.replicas")
        if replicas < 1:
            raise GroupingError(f"{where}: spec.{field_name}.{rtype}.replicas must be >= 1, got {replicas}")
        if late_launcher and rtype == "Launcher":
            continue
        counts[str(rtype)] = replicas
    min_available = _get(top, "spec", "runPolicy", "schedulingPolicy", "minAvailable")
    if min_available is not None:
        return base.spec(_int(min_available, 1, f"{where} spec.runPolicy.schedulingPolicy.minAvailable"))
    total = sum(counts.values())
    rtype = labels_of(pod).get(KUBEFLOW_REPLICA_TYPE_LABEL, "")
    by_label = {_dns_label(t): t for t in counts}
    if late_launcher or _dns_label(rtype) not in by_label:
        return base.spec(total)  # a pod we cannot place in a subgroup: the flat gang still holds
    subs = [SubGroup(_dns_label(t), n, "", TopologyConstraint()) for t, n in sorted(counts.items())]
    return base.spec(total, subs, pod_subgroup=_dns_label(rtype))


def _ray(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """One gang per RayCluster (or the RayJob / RayService that made it): the head (1) and every worker
    group with minReplicas x numOfHosts (replicas x numOfHosts when neither autoscaling nor minReplicas
    is set; a group with `suspend` counts 0), each a subgroup with its template's topology (as KAI's)."""
    cluster = next((o for o in chain if o.get("kind") == "RayCluster"), top)
    where = describe(cluster)
    head = _template_constraint(_get(cluster, "spec", "headGroupSpec", "template"))
    subs = [SubGroup(RAY_HEAD_GROUP, 1, "", head)]
    total = 1
    autoscaling = bool(_get(cluster, "spec", "enableInTreeAutoscaling"))
    groups = _get(cluster, "spec", "workerGroupSpecs") or []
    for i, group in enumerate(groups if isinstance(groups, list) else []):
        name = str(_get(group, "groupName") or f"worker-group-{i}")
        if _get(group, "suspend"):  # KubeRay's field (KAI reads `suspended`, which KubeRay's CRD prunes)
            continue
        desired = _int(_get(group, "replicas"), 0, f"{where} workerGroupSpecs[{name}].replicas")
        minimum = _int(_get(group, "minReplicas"), 0, f"{where} workerGroupSpecs[{name}].minReplicas")
        if minimum > desired:
            raise GroupingError(f"{where}: worker group {name} has minReplicas {minimum} > replicas {desired}")
        if minimum == 0 and desired == 0:
            continue
        hosts = _int(_get(group, "numOfHosts"), 1, f"{where} workerGroupSpecs[{name}].numOfHosts")
        need = (minimum if autoscaling or minimum > 0 else desired) * hosts
        total += need
        subs.append(SubGroup(name, need, "", _template_constraint(_get(group, "template"))))
    group_label = labels_of(pod).get(RAY_GROUP_LABEL, "")
    if group_label not in {s.name for s in subs}:
        return base.spec(total)
    return base.spec(total, subs, pod_subgroup=group_label)


def _dynamo(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """One gang for the whole graph (KAI groups each component's Grove or LWS object on its own): one
    subgroup per service with minMember = replicas x multinode.nodeCount, so frontend, prefill and decode
    start together; the graph's annotations (topology) govern the gang. A pod's service is its
    nvidia.com/dynamo-component label, else named by an object between it and the graph
    (`<graph>-<service>`, or Grove's PodClique `<graph>-<index>-<service>`)."""
    where = describe(top)
    services = _get(top, "spec", "services")
    if not isinstance(services, Mapping) or not services:
        raise GroupingError(f"{where} has no spec.services")
    subs: list[SubGroup] = []
    names: dict[str, str] = {}  # service key, lowercased -> subgroup name
    for service in sorted(services):
        spec = services[service] or {}
        replicas = _int(_get(spec, "replicas"), 1, f"{where} services.{service}.replicas")
        nodes = _int(_get(spec, "multinode", "nodeCount"), 1, f"{where} services.{service}.multinode.nodeCount")
        if replicas * nodes < 1:
            continue
        sub = _dns_label(str(service))
        names[str(service).lower()] = sub
        constraint = _template_constraint({"metadata": _get(spec, "extraPodMetadata")})
        subs.append(SubGroup(sub, replicas * nodes, "", constraint))
    if not subs:
        raise GroupingError(f"{where}: every service has 0 replicas")
    component = labels_of(pod).get(DYNAMO_COMPONENT_LABEL, "").lower()
    if component not in names:
        graph = str(meta(top).get("name", "")).lower()
        for owner in chain[:-1]:
            name = str(meta(owner).get("name", "")).lower()
            for key in sorted(names, key=len, reverse=True):
                # Deployment / LWS path: <graph>-<service>[-...]; Grove's PodClique: <graph>-<index>-<service>
                if name == f"{graph}-{key}" or name.startswith(f"{graph}-{key}-") or name.endswith(f"-{key}"):
                    component = key
                    break
            if component in names:
                break
    if component not in names:
        raise GroupingError(
            f"pod {meta(pod).get('name')} of {where} names no service of the graph (label {DYNAMO_COMPONENT_LABEL}="
            f"{labels_of(pod).get(DYNAMO_COMPONENT_LABEL, '')!r}; services: {', '.join(sorted(services))})"
        )
    return base.spec(sum(s.min_member or 0 for s in subs), subs, pod_subgroup=names[component])


def _grove(base: _Base, pod: Obj, top: Obj, chain: Sequence[Obj]) -> GroupSpec:
    """One gang per Grove PodGang, worked out from the PodCliqueSet as Grove makes its PodGangs: replica r's
    base gang `<pcs>-<r>` holds every standalone clique and replicas 0..minAvailable-1 of each scaling group;
    each scaling group replica i >= minAvailable is a gang of its own (`<pcs>-<r>-<group>-<i - minAvailable>`).
    A subgroup per PodClique (its name, `<pcs>-<r>-<clique>` or `<pcs>-<r>-<group>-<i>-<clique>`) with the
    clique's minAvailable (default: its replicas); minMember their sum. KAI reads the PodGang itself and names
    the gang `pg-<podgang>-<podgang uid>`; ours is `pg-<podgang>-<pcs uid>`, so the rule needs only the owners
    (simulate and replay have no PodGangs)."""
    where = describe(top)
    pcs = str(meta(top).get("name", ""))
    template = _get(top, "spec", "template") or {}
    cliques: dict[str, int] = {}
    for i, clique in enumerate(_get(template, "cliques") or []):
        name = str(_get(clique, "name") or "")
        if not name:
            raise GroupingError(f"{where}: spec.template.cliques[{i}] has no name")
        replicas = _int(_get(clique, "spec", "replicas"), 1, f"{where} clique {name} replicas")
        cliques[name] = _int(_get(clique, "spec", "minAvailable"), replicas, f"{where} clique {name} minAvailable")
    groups: dict[str, tuple[list[str], int, int]] = {}  # scaling group -> (cliques, replicas, minAvailable)
    for i, sg in enumerate(_get(template, "podCliqueScalingGroups") or []):
        name = str(_get(sg, "name") or "")
        names = [str(c) for c in _get(sg, "cliqueNames") or []]
        if not name or not names or any(c not in cliques for c in names):
            raise GroupingError(
                f"{where}: spec.template.podCliqueScalingGroups[{i}] needs a name and cliqueNames of its cliques"
            )
        replicas = _int(_get(sg, "replicas"), 1, f"{where} scaling group {name} replicas")
        groups[name] = (
            names,
            replicas,
            _int(_get(sg, "minAvailable"), 1, f"{where} scaling group {name} minAvailable"),
        )
    clique_obj = chain[0] if chain and chain[0].get("kind") == "PodClique" else None
    own = str(meta(clique_obj).get("name", "")) if clique_obj is not None else ""
    grouped = {c for names, _, _ in groups.values() for c in names}
    found = re.fullmatch(rf"{re.escape(pcs)}-(\d+)-(.+)", own)
    if found is None:
        raise GroupingError(
            f"pod {meta(pod).get('name')} of {where} is not owned by one of its PodCliques ({own or 'none'})"
        )
    replica, rest = int(found.group(1)), found.group(2)
    prefix = f"{pcs}-{replica}"
    # the pod's PodGang and its members, (PodClique name, minAvailable): a scaled scaling-group replica's own
    # gang, else the replica's base gang
    scaled: tuple[str, list[tuple[str, int]]] | None = None
    if rest not in cliques or rest in grouped:
        for sg_name in sorted(groups):
            names, _, min_available = groups[sg_name]
            m = re.fullmatch(rf"{re.escape(sg_name)}-(\d+)-(.+)", rest)
            if m is not None and m.group(2) in names:
                index = int(m.group(1))
                if index >= min_available:
                    members = [(f"{prefix}-{sg_name}-{index}-{c}", cliques[c]) for c in names]
                    scaled = (f"{prefix}-{sg_name}-{index - min_available}", members)
                break
        else:
            raise GroupingError(f"{where}: PodClique {own} is no clique of its template")
    if scaled is not None:
        gang, members = scaled
    else:
        gang = prefix
        members = [(f"{prefix}-{c}", n) for c, n in cliques.items() if c not in grouped]
        for sg_name in sorted(groups):
            names, replicas, min_available = groups[sg_name]
            members += [
                (f"{prefix}-{sg_name}-{i}-{c}", cliques[c]) for i in range(min(min_available, replicas)) for c in names
            ]
    base.name = pg_name(gang, str(meta(top).get("uid", "")))
    subs = [SubGroup(_dns_label(name), n, "", TopologyConstraint()) for name, n in members]
    return base.spec(sum(n for _, n in members), subs, pod_subgroup=_dns_label(own))


_RULES = {
    "Deployment": _deployment,
    "StatefulSet": _statefulset,
    "Job": _job,
    "JobSet": _jobset,
    "LeaderWorkerSet": _lws,
    "RayCluster": _ray,
    "RayJob": _ray,
    "RayService": _ray,
    "DynamoGraphDeployment": _dynamo,
    "PodCliqueSet": _grove,
    **dict.fromkeys(KUBEFLOW_REPLICA_SPECS, _kubeflow),
}

# kinds whose gang is more than one pod by their own rule: a pod owned by one must never run alone
GANG_KINDS = frozenset(_RULES) | frozenset(SKIPPED_KINDS) | {"ReplicaSet"}

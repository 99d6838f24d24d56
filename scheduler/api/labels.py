"""Label and annotation keys of the KAI API (see notes/kai-api.md)."""

QUEUE_LABEL = "kai.scheduler/queue"
SUBGROUP_LABEL = "kai.scheduler/subgroup-name"
TASK_PRIORITY_LABEL = "kai.scheduler/task-priority"
PREEMPTIBILITY_LABEL = "kai.scheduler/preemptibility"
POD_GROUP_ANNOTATION = "pod-group-name"
TOPOLOGY_ANNOTATION = "kai.scheduler/topology"
REQUIRED_ANNOTATION = "kai.scheduler/topology-required-placement"
PREFERRED_ANNOTATION = "kai.scheduler/topology-preferred-placement"


def value_of(pairs: tuple[tuple[str, str], ...], key: str) -> str | None:
    """The value of `key` in labels or annotations as the api types keep them ((key, value) pairs)."""
    for k, v in pairs:
        if k == key:
            return v
    return None


def names_topology(annotations: tuple[tuple[str, str], ...]) -> bool:
    """Whether an annotation could name a topology (the three topology annotations share this prefix):
    most objects have none, so their lookups are skipped."""
    for k, _ in annotations:  # noqa: SIM110 - a loop is twice as fast as any() here
        if k.startswith(TOPOLOGY_ANNOTATION):
            return True
    return False


# written by the scheduler on a PodGroup running below minMember: when it was first seen so (RFC 3339);
# a restart keeps counting the stale-gang grace period from there
STALE_SINCE_ANNOTATION = "kai.scheduler/stale-since"
# written only into `kaisched ctl snapshot` documents, on a pod the grouper held back that cycle (the message):
# replay holds it too, since a snapshot does not carry the owners the grouper read
AWAITING_POD_GROUP_ANNOTATION = "kai.scheduler/awaiting-pod-group"

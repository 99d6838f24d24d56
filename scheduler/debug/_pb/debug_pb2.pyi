from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetSnapshotRequest(_message.Message):
    __slots__ = ("cycle",)
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    def __init__(self, cycle: _Optional[int] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("cycle", "objects", "snapshot_json")
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_JSON_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    objects: int
    snapshot_json: str
    def __init__(self, cycle: _Optional[int] = ..., objects: _Optional[int] = ..., snapshot_json: _Optional[str] = ...) -> None: ...

class QueueResource(_message.Message):
    __slots__ = ("resource", "quota", "limit", "over_quota_weight", "deserved", "fair_share", "allocated", "requested")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OVER_QUOTA_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DESERVED_FIELD_NUMBER: _ClassVar[int]
    FAIR_SHARE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    resource: str
    quota: int
    limit: int
    over_quota_weight: float
    deserved: int
    fair_share: int
    allocated: int
    requested: int
    def __init__(self, resource: _Optional[str] = ..., quota: _Optional[int] = ..., limit: _Optional[int] = ..., over_quota_weight: _Optional[float] = ..., deserved: _Optional[int] = ..., fair_share: _Optional[int] = ..., allocated: _Optional[int] = ..., requested: _Optional[int] = ...) -> None: ...

class Queue(_message.Message):
    __slots__ = ("name", "parent", "priority", "resources", "under_fair_share", "over_quota", "problem")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    UNDER_FAIR_SHARE_FIELD_NUMBER: _ClassVar[int]
    OVER_QUOTA_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    name: str
    parent: str
    priority: int
    resources: _containers.RepeatedCompositeFieldContainer[QueueResource]
    under_fair_share: bool
    over_quota: bool
    problem: str
    def __init__(self, name: _Optional[str] = ..., parent: _Optional[str] = ..., priority: _Optional[int] = ..., resources: _Optional[_Iterable[_Union[QueueResource, _Mapping]]] = ..., under_fair_share: _Optional[bool] = ..., over_quota: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("cycle", "queues")
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    queues: _containers.RepeatedCompositeFieldContainer[Queue]
    def __init__(self, cycle: _Optional[int] = ..., queues: _Optional[_Iterable[_Union[Queue, _Mapping]]] = ...) -> None: ...

class ListPodGroupsRequest(_message.Message):
    __slots__ = ("namespace", "queue", "state")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    queue: str
    state: str
    def __init__(self, namespace: _Optional[str] = ..., queue: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class PodGroup(_message.Message):
    __slots__ = ("namespace", "name", "queue", "state", "members_placed", "members_required", "members_total", "reason", "message", "last_cycle")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_PLACED_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_CYCLE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    queue: str
    state: str
    members_placed: int
    members_required: int
    members_total: int
    reason: str
    message: str
    last_cycle: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., queue: _Optional[str] = ..., state: _Optional[str] = ..., members_placed: _Optional[int] = ..., members_required: _Optional[int] = ..., members_total: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., last_cycle: _Optional[int] = ...) -> None: ...

class ListPodGroupsResponse(_message.Message):
    __slots__ = ("cycle", "pod_groups")
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    POD_GROUPS_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    pod_groups: _containers.RepeatedCompositeFieldContainer[PodGroup]
    def __init__(self, cycle: _Optional[int] = ..., pod_groups: _Optional[_Iterable[_Union[PodGroup, _Mapping]]] = ...) -> None: ...

class ExplainPodGroupRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class LevelAttempt(_message.Message):
    __slots__ = ("level", "domain", "short", "pods_fit", "pods_needed", "text")
    class ShortEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SHORT_FIELD_NUMBER: _ClassVar[int]
    PODS_FIT_FIELD_NUMBER: _ClassVar[int]
    PODS_NEEDED_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    level: str
    domain: str
    short: _containers.ScalarMap[str, int]
    pods_fit: int
    pods_needed: int
    text: str
    def __init__(self, level: _Optional[str] = ..., domain: _Optional[str] = ..., short: _Optional[_Mapping[str, int]] = ..., pods_fit: _Optional[int] = ..., pods_needed: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class QueuePosition(_message.Message):
    __slots__ = ("position", "tried", "position_in_queue", "jobs_in_queue", "placed_before_in_queue", "queue")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TRIED_FIELD_NUMBER: _ClassVar[int]
    POSITION_IN_QUEUE_FIELD_NUMBER: _ClassVar[int]
    JOBS_IN_QUEUE_FIELD_NUMBER: _ClassVar[int]
    PLACED_BEFORE_IN_QUEUE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    position: int
    tried: int
    position_in_queue: int
    jobs_in_queue: int
    placed_before_in_queue: int
    queue: Queue
    def __init__(self, position: _Optional[int] = ..., tried: _Optional[int] = ..., position_in_queue: _Optional[int] = ..., jobs_in_queue: _Optional[int] = ..., placed_before_in_queue: _Optional[int] = ..., queue: _Optional[_Union[Queue, _Mapping]] = ...) -> None: ...

class ExplainPodGroupResponse(_message.Message):
    __slots__ = ("pod_group", "queue", "state", "reason", "message", "cycle", "attempts", "queue_position", "suggestions", "waiting_cycles", "domain")
    POD_GROUP_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    WAITING_CYCLES_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    pod_group: str
    queue: str
    state: str
    reason: str
    message: str
    cycle: int
    attempts: _containers.RepeatedCompositeFieldContainer[LevelAttempt]
    queue_position: QueuePosition
    suggestions: _containers.RepeatedScalarFieldContainer[str]
    waiting_cycles: int
    domain: str
    def __init__(self, pod_group: _Optional[str] = ..., queue: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., cycle: _Optional[int] = ..., attempts: _Optional[_Iterable[_Union[LevelAttempt, _Mapping]]] = ..., queue_position: _Optional[_Union[QueuePosition, _Mapping]] = ..., suggestions: _Optional[_Iterable[str]] = ..., waiting_cycles: _Optional[int] = ..., domain: _Optional[str] = ...) -> None: ...

class GetTopologyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Domain(_message.Message):
    __slots__ = ("level", "name", "path", "capacity", "allocated", "free", "nodes", "children")
    class CapacityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class AllocatedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FreeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    level: str
    name: str
    path: str
    capacity: _containers.ScalarMap[str, int]
    allocated: _containers.ScalarMap[str, int]
    free: _containers.ScalarMap[str, int]
    nodes: int
    children: _containers.RepeatedCompositeFieldContainer[Domain]
    def __init__(self, level: _Optional[str] = ..., name: _Optional[str] = ..., path: _Optional[str] = ..., capacity: _Optional[_Mapping[str, int]] = ..., allocated: _Optional[_Mapping[str, int]] = ..., free: _Optional[_Mapping[str, int]] = ..., nodes: _Optional[int] = ..., children: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ...) -> None: ...

class Topology(_message.Message):
    __slots__ = ("name", "levels", "root", "unlabelled_nodes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    UNLABELLED_NODES_FIELD_NUMBER: _ClassVar[int]
    name: str
    levels: _containers.RepeatedScalarFieldContainer[str]
    root: Domain
    unlabelled_nodes: int
    def __init__(self, name: _Optional[str] = ..., levels: _Optional[_Iterable[str]] = ..., root: _Optional[_Union[Domain, _Mapping]] = ..., unlabelled_nodes: _Optional[int] = ...) -> None: ...

class GetTopologyResponse(_message.Message):
    __slots__ = ("cycle", "topologies")
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGIES_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    topologies: _containers.RepeatedCompositeFieldContainer[Topology]
    def __init__(self, cycle: _Optional[int] = ..., topologies: _Optional[_Iterable[_Union[Topology, _Mapping]]] = ...) -> None: ...

class ListCyclesRequest(_message.Message):
    __slots__ = ("limit", "include_decisions")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    limit: int
    include_decisions: bool
    def __init__(self, limit: _Optional[int] = ..., include_decisions: _Optional[bool] = ...) -> None: ...

class Phase(_message.Message):
    __slots__ = ("name", "seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    seconds: float
    def __init__(self, name: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("job", "queue", "placed", "reason", "message", "domain", "pods", "cycle")
    class PodsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    job: str
    queue: str
    placed: bool
    reason: str
    message: str
    domain: str
    pods: _containers.ScalarMap[str, str]
    cycle: int
    def __init__(self, job: _Optional[str] = ..., queue: _Optional[str] = ..., placed: _Optional[bool] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., domain: _Optional[str] = ..., pods: _Optional[_Mapping[str, str]] = ..., cycle: _Optional[int] = ...) -> None: ...

class Cycle(_message.Message):
    __slots__ = ("cycle", "start_unix", "phases", "events", "gangs_tried", "gangs_placed", "gangs_waiting", "pods_bound", "bind_failures", "decisions", "gangs_deferred")
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    GANGS_TRIED_FIELD_NUMBER: _ClassVar[int]
    GANGS_PLACED_FIELD_NUMBER: _ClassVar[int]
    GANGS_WAITING_FIELD_NUMBER: _ClassVar[int]
    PODS_BOUND_FIELD_NUMBER: _ClassVar[int]
    BIND_FAILURES_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    GANGS_DEFERRED_FIELD_NUMBER: _ClassVar[int]
    cycle: int
    start_unix: float
    phases: _containers.RepeatedCompositeFieldContainer[Phase]
    events: int
    gangs_tried: int
    gangs_placed: int
    gangs_waiting: int
    pods_bound: int
    bind_failures: int
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    gangs_deferred: int
    def __init__(self, cycle: _Optional[int] = ..., start_unix: _Optional[float] = ..., phases: _Optional[_Iterable[_Union[Phase, _Mapping]]] = ..., events: _Optional[int] = ..., gangs_tried: _Optional[int] = ..., gangs_placed: _Optional[int] = ..., gangs_waiting: _Optional[int] = ..., pods_bound: _Optional[int] = ..., bind_failures: _Optional[int] = ..., decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., gangs_deferred: _Optional[int] = ...) -> None: ...

class ListCyclesResponse(_message.Message):
    __slots__ = ("cycles",)
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    cycles: _containers.RepeatedCompositeFieldContainer[Cycle]
    def __init__(self, cycles: _Optional[_Iterable[_Union[Cycle, _Mapping]]] = ...) -> None: ...

class SimulateRequest(_message.Message):
    __slots__ = ("objects", "cycles")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedScalarFieldContainer[str]
    cycles: int
    def __init__(self, objects: _Optional[_Iterable[str]] = ..., cycles: _Optional[int] = ...) -> None: ...

class SimulateResponse(_message.Message):
    __slots__ = ("placements", "unscheduled", "cycles", "base_cycle")
    class PlacementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    UNSCHEDULED_FIELD_NUMBER: _ClassVar[int]
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    BASE_CYCLE_FIELD_NUMBER: _ClassVar[int]
    placements: _containers.ScalarMap[str, str]
    unscheduled: _containers.RepeatedCompositeFieldContainer[Decision]
    cycles: int
    base_cycle: int
    def __init__(self, placements: _Optional[_Mapping[str, str]] = ..., unscheduled: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., cycles: _Optional[int] = ..., base_cycle: _Optional[int] = ...) -> None: ...

class WatchDecisionsRequest(_message.Message):
    __slots__ = ("namespace", "waiting_only", "changes_only")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    WAITING_ONLY_FIELD_NUMBER: _ClassVar[int]
    CHANGES_ONLY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    waiting_only: bool
    changes_only: bool
    def __init__(self, namespace: _Optional[str] = ..., waiting_only: _Optional[bool] = ..., changes_only: _Optional[bool] = ...) -> None: ...

class WatchDecisionsResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

"""Typed pod decoding (kube/podwire.py) and what the backend skips or reuses with it.

The slim object podwire builds must convert exactly as the full object does: checked on every pod of the
scenario cases (affinity, spread, ports, volumes, sidecars, overhead, priorities...) wrapped the way the API
server sends pods (managedFields, conditions, container statuses)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.backends import kubernetes
from scheduler.backends.kubernetes import KubeBackend
from scheduler.kube import podwire
from scheduler.kube.client import KubeClient, decode_dict, split_lines
from scheduler.kube.convert import pod_from_k8s

CASES = Path(__file__).resolve().parent.parent / "scenarios" / "cases"


def _scenario_pods() -> list[dict[str, Any]]:
    pods = []
    for path in sorted(CASES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for obj in doc.get("objects") or [] if isinstance(doc, dict) else []:
            if isinstance(obj, dict) and obj.get("kind") == "Pod":
                pods.append(obj)
    return pods


def _as_served(pod: dict[str, Any], rv: int = 7) -> dict[str, Any]:
    """The pod with what the API server adds and the scheduler never reads."""
    out = copy.deepcopy(pod)
    meta = out.setdefault("metadata", {})
    meta["resourceVersion"] = str(rv)
    meta["generateName"] = "x-"
    meta["managedFields"] = [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {"f:phase": {}}}}]
    status = out.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status["conditions"] = [{"type": "Ready", "status": "False", "lastTransitionTime": f"2026-01-01T00:00:{rv:02d}Z"}]
    status["containerStatuses"] = [{"name": "c", "ready": False, "restartCount": rv, "state": {"waiting": {}}}]
    return out


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode()


def _wire(obj: dict[str, Any]) -> podwire.PodWire:
    wire = podwire.decode_event(_line("MODIFIED", obj))["object"]
    assert isinstance(wire, podwire.PodWire)
    return wire


RICH = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "rich",
        "namespace": "team",
        "uid": "u1",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"app": "a", "kai.scheduler/queue": "q", "kai.scheduler/task-priority": "3"},
        "annotations": {"pod-group-name": "g", "other": "x"},
        "ownerReferences": [{"kind": "Job", "name": "j", "uid": "o1", "controller": True}],
    },
    "spec": {
        "schedulerName": "kai-scheduler",
        "priorityClassName": "train",
        "priority": 50,
        "nodeSelector": {"zone": "z1"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "preference": {"matchExpressions": [{"key": "r", "operator": "Exists"}]}}
                ],
            },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}
                ]
            },
        },
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "matchLabelKeys": ["app"]}
        ],
        "overhead": {"cpu": "100m"},
        "initContainers": [
            {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
            {"name": "init", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
        ],
        "containers": [
            {
                "name": "c",
                "ports": [{"containerPort": 80, "hostPort": 8080}],
                "resources": {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": "2", "memory": "4Gi"}},
            }
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "pvc-1"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ],
    },
    "status": {"phase": "Running", "startTime": "2026-01-01T00:01:00Z"},
}


def test_scenario_pods_exist():
    assert len(_scenario_pods()) > 20


@pytest.mark.parametrize("pod", [RICH, *_scenario_pods()], ids=lambda p: p["metadata"]["name"])
def test_slim_object_converts_as_the_full_one(pod):
    served = _as_served(pod)
    slim = _wire(served).to_dict()
    assert pod_from_k8s(slim) == pod_from_k8s(served)
    assert "managedFields" not in slim["metadata"]
    assert set(slim["status"]) <= {"phase", "startTime"}


def test_status_only_updates_keep_the_signature():
    a, b = _as_served(RICH, rv=7), _as_served(RICH, rv=8)  # conditions, restarts, resourceVersion differ
    assert a != b
    assert _wire(a).signature() == _wire(b).signature()
    assert _wire(a).spec_key() == _wire(b).spec_key()


@pytest.mark.parametrize(
    ("path", "value", "key_changes"),
    [
        (("status", "phase"), "Succeeded", False),
        (("status", "startTime"), "2026-01-01T00:09:00Z", False),
        (("metadata", "deletionTimestamp"), "2026-01-01T00:09:00Z", False),
        (("metadata", "annotations"), {"pod-group-name": "h"}, False),
        (("metadata", "ownerReferences"), [], False),
        (("metadata", "uid"), "u2", False),
        (("metadata", "labels"), {"app": "b"}, True),  # RICH's spread constraint takes values from its labels
        (("metadata", "name"), "rich-2", True),  # RICH's ephemeral volume is named after the pod
        (("spec", "nodeName"), "n1", False),
        (("spec", "tolerations"), [], True),
    ],
)
def test_what_the_scheduler_reads_changes_the_signature(path, value, key_changes):
    a = _as_served(RICH)
    b = copy.deepcopy(a)
    b[path[0]][path[1]] = value
    wa, wb = _wire(a), _wire(b)
    assert wa.signature() != wb.signature() or path[1] == "name"  # the name is the key of the cache
    assert (wa.spec_key() != wb.spec_key()) == key_changes


def _replica(name: str, rank: int, node: str = "") -> dict[str, Any]:
    """A workload's pod as the API server serves it: what tells replicas apart is what conversion never
    reads (env, the service-account volume's random name, hostname) or reads from metadata."""
    pod = _as_served(RICH)
    spec = pod["spec"]
    for k in ("affinity", "topologySpreadConstraints"):
        spec.pop(k)
    spec["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "pvc-1"}},
        {"name": f"kube-api-access-{name[-5:]}", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
    ]
    spec["containers"][0]["env"] = [{"name": "RANK", "value": str(rank)}]
    spec["hostname"] = name
    if node:
        spec["nodeName"] = node
    meta = pod["metadata"]
    meta.update(name=name, uid=f"u-{name}", creationTimestamp=f"2026-01-01T00:00:{rank:02d}Z")
    meta["labels"] = {**meta["labels"], "index": str(rank), "priorityClassName": "from-label"}
    meta["annotations"] = {"pod-group-name": f"g{rank}"}
    return pod


def test_replicas_share_a_spec_key_and_their_reused_conversion_equals_a_full_one():
    a, b = _replica("work-aaaaa", 1), _replica("work-bbbbb", 2, node="n7")
    b["spec"].pop("priorityClassName")  # in the key: another key
    assert _wire(a).spec_key() != _wire(b).spec_key()
    b["spec"]["priorityClassName"] = "train"
    b["status"] = {"phase": "Succeeded", "startTime": "2026-02-01T00:01:00Z"}
    b["metadata"]["deletionTimestamp"] = "2026-02-01T00:05:00Z"
    b["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": "o2", "controller": True}]
    assert _wire(a).spec_key() == _wire(b).spec_key()
    full = pod_from_k8s(b)
    first = pod_from_k8s(a)
    reused = pod_from_k8s(_wire(b).to_dict(slim_spec=True), same_spec=first)
    assert reused == full
    differing = {f.name for f in dataclasses.fields(full) if getattr(full, f.name) != getattr(first, f.name)}
    assert differing >= {"name", "uid", "node_name", "phase", "labels", "annotations", "creation", "owner_kind"}
    assert differing >= {"deleting", "pod_group", "group_key", "start_time", "key"}
    # with no class in the spec, the label names it: read from each pod, never reused
    for pod in (a, b):
        pod["spec"].pop("priorityClassName")
    b["metadata"]["labels"]["priorityClassName"] = "other"
    assert _wire(a).spec_key() == _wire(b).spec_key()
    reused = pod_from_k8s(_wire(b).to_dict(slim_spec=True), same_spec=pod_from_k8s(a))
    assert reused == pod_from_k8s(b) and reused.priority_class == "other"


def _id(v: Any) -> str:
    return ".".join(map(str, v)) if isinstance(v, tuple) else ""


SPEC_CHANGES = [
    (("schedulerName",), "default-scheduler"),
    (("priorityClassName",), "build"),
    (("priority",), 100),
    (("nodeSelector",), {"zone": "z2"}),
    (("tolerations",), []),
    (("affinity", "podAntiAffinity"), {}),
    (("affinity", "nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "weight"), 6),
    (("topologySpreadConstraints", 0, "maxSkew"), 2),
    (("overhead",), {"cpu": "300m"}),
    (("resourceClaims",), [{"name": "gpu", "resourceClaimName": "c"}]),
    (("containers", 0, "resources", "requests", "cpu"), "3"),
    (("containers", 0, "ports", 0, "hostPort"), 8081),
    (("containers", 0, "name"), "d"),
    (("initContainers", 0, "restartPolicy"), "Never"),
    (("initContainers", 1, "resources", "requests", "memory"), "8Gi"),
    (("volumes", 0, "persistentVolumeClaim", "claimName"), "pvc-2"),
    (("volumes", 1, "name"), "scratch-2"),
    (("volumes", 1, "ephemeral"), None),
]


@pytest.mark.parametrize(("path", "value"), SPEC_CHANGES, ids=_id)
def test_every_spec_field_the_conversion_reads_is_in_the_key(path, value):
    """A change of any spec field `pod_from_k8s` reads changes the key (so the memo never hands a pod the
    conversion of another spec), and changes the conversion (so the list covers real reads)."""
    a = _as_served(RICH)
    b = copy.deepcopy(a)
    _set(b["spec"], path, value)
    assert _wire(a).spec_key() != _wire(b).spec_key()
    if path == ("containers", 0, "name"):  # read only to name the container in a problem
        for pod in (a, b):
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    assert pod_from_k8s(a) != pod_from_k8s(b)


class _Reads(dict):
    """A dict that records the paths read from it (get, [], items), wrapping what it hands out."""

    def __init__(self, value: dict[str, Any], path: str, seen: set[str]) -> None:
        super().__init__(value)
        self.path, self.seen = path, seen

    def _wrap(self, key: str, value: Any) -> Any:
        here = f"{self.path}.{key}"
        self.seen.add(here)
        if isinstance(value, dict):
            return _Reads(value, here, self.seen)
        if isinstance(value, list):
            return [_Reads(v, f"{here}[]", self.seen) if isinstance(v, dict) else v for v in value]
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self._wrap(key, super().get(key, default))

    def __getitem__(self, key: str) -> Any:
        return self._wrap(key, super().__getitem__(key))

    def items(self) -> Any:
        self.seen.add(f"{self.path}.*")
        return super().items()


def test_the_conversion_reads_no_spec_field_the_key_leaves_out():
    """Record every spec path `pod_from_k8s` reads of pods that use every feature; each must be decoded
    into the key (podwire `_SpecRead`, `_Container`, `_Volume`), or be the node (never in the key)."""
    seen: set[str] = set()
    for pod in (RICH, *_scenario_pods()):
        spec = copy.deepcopy(pod.get("spec") or {})
        pod_from_k8s({**pod, "spec": _Reads(spec, "spec", seen)})
    allowed = {f"spec.{f}" for f in podwire._SpecRead.__struct_fields__} | {"spec.nodeName"}
    for part, struct in (("containers", podwire._Container), ("initContainers", podwire._Container)):
        allowed |= {f"spec.{part}[].{f}" for f in struct.__struct_fields__}
    allowed |= {f"spec.volumes[].{f}" for f in podwire._Volume.__struct_fields__}
    keyed = set()
    for path in seen:
        # a path under a field kept whole (raw) in the key is covered by that field
        parts = path.split(".")
        prefixes = [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
        covered = any(p in allowed or p.removesuffix("[]") in allowed for p in prefixes)
        assert covered, f"pod_from_k8s reads {path}, which podwire's spec key leaves out"
        keyed.add(path)
    assert "spec.containers[].resources" in keyed and "spec.volumes[].ephemeral" in keyed


def test_the_key_of_an_unexpected_spec_is_none_and_the_pod_is_converted_whole():
    odd = copy.deepcopy(_pending_rich())
    odd["spec"]["containers"] = ["not-an-object"]
    wire = _compact("ADDED", odd)
    assert wire.spec_key() is None
    b = _backend()
    b._apply("Pod", wire, False)
    assert b.state.pod("team/rich") == pod_from_k8s(odd) and not b.spec_memo


def test_error_event_and_lists():
    err = podwire.decode_event(b'{"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410}}')
    assert err == {"type": "ERROR", "object": {"kind": "Status", "status": "Failure", "code": 410}}
    bare = podwire.decode_event(b'{"type":"ERROR","object":{"code":410}}')  # even one that could pass for a pod
    assert bare == {"type": "ERROR", "object": {"code": 410}}
    page = json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "9", "continue": "c1"}, "items": [RICH]})
    out = podwire.decode_list(page.encode())
    assert out["metadata"] == {"resourceVersion": "9", "continue": "c1"}
    assert [w.key for w in out["items"]] == ["team/rich"]
    status = podwire.decode_list(b'{"kind":"Status","status":"Failure","code":403}')
    assert status["code"] == 403


def test_split_lines_across_chunks():
    data = b'{"a":1}\n\n{"b":[1,\n2]}'
    # a line split anywhere across chunks decodes whole; a final partial line is dropped
    assert list(split_lines([b'{"a":', b'1}\n{"b"', b":2}\n", b'{"c"'], decode_dict)) == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError):
        list(split_lines([data], decode_dict))


def _backend() -> KubeBackend:
    return KubeBackend(KubeClient("http://127.0.0.1:9"), "kai-scheduler")  # never connects: _apply only


def test_backend_skips_updates_that_change_nothing_it_reads():
    b = _backend()
    pending = copy.deepcopy(RICH)
    pending["spec"].pop("affinity")
    pending["status"] = {"phase": "Pending"}
    b._apply("Pod", _wire(_as_served(pending, 1)), False)
    first = b.state.pod("team/rich")
    gen = b.state.generation
    b._apply("Pod", _wire(_as_served(pending, 2)), False)  # a heartbeat
    assert b.state.pod("team/rich") is first and b.state.generation == gen
    bound = copy.deepcopy(pending)
    bound["spec"]["nodeName"] = "n1"
    b._apply("Pod", _wire(_as_served(bound, 3)), False)
    assert b.state.pod("team/rich").node_name == "n1"
    running = copy.deepcopy(bound)
    running["status"] = {"phase": "Running", "startTime": "2026-01-01T00:01:00Z"}
    b._apply("Pod", _wire(_as_served(running, 4)), False)
    assert b.state.pod("team/rich") == pod_from_k8s(running)
    b._apply("Pod", _wire(_as_served(running, 5)), True)
    assert b.state.pod("team/rich") is None and "team/rich" not in b.pods_seen


def test_backend_does_not_skip_over_what_the_binder_changed():
    """The binder assumes a bind in the cache, then rolls it back; a later event identical (for the
    scheduler) to the one before must still be applied, not skipped: the cached pod is not the one it made."""
    b = _backend()
    pending = copy.deepcopy(RICH)
    pending["status"] = {"phase": "Pending"}
    b._apply("Pod", _wire(_as_served(pending, 1)), False)
    b.committer._assume([("team/rich", "n2")], 0.0)
    b._apply("Pod", _wire(_as_served(pending, 2)), False)  # older than the bind: the assumed node holds
    assert b.state.pod("team/rich").node_name == "n2"
    b.committer._unassume([("team/rich", "n2")])
    assert b.state.pod("team/rich").node_name == ""
    bound = copy.deepcopy(pending)
    bound["spec"]["nodeName"] = "n3"  # someone else bound it meanwhile
    b._apply("Pod", _wire(_as_served(bound, 3)), False)
    b.state.upsert_pod(dataclasses.replace(b.state.pod("team/rich"), node_name=""))  # any writer but the watch
    b._apply("Pod", _wire(_as_served(bound, 4)), False)  # same content as rv 3: applied, the cache was changed
    assert b.state.pod("team/rich").node_name == "n3"


def test_relist_removes_and_reuses():
    b = _backend()
    other = copy.deepcopy(RICH)
    other["metadata"]["name"] = "other"
    b.events.put(("SYNC", "Pod", [_wire(_as_served(RICH)), _wire(_as_served(other))]))
    b.drain()
    kept = b.state.pod("team/rich")
    b.events.put(("SYNC", "Pod", [_wire(_as_served(RICH, 9))]))  # other is gone; rich unchanged
    b.drain()
    assert b.state.pod("team/other") is None and "team/other" not in b.pods_seen
    assert b.state.pod("team/rich") is kept


def test_paged_relist_applies_each_page_and_removes_what_no_page_had():
    b = _backend()

    def named(name: str) -> podwire.PodWire:
        pod = copy.deepcopy(RICH)
        pod["metadata"]["name"] = name
        return _wire(_as_served(pod))

    for event in (("LIST", "Pod", []), ("PAGE", "Pod", [named("a"), named("b")]), ("SYNC", "Pod", [named("c")])):
        b.events.put(event)
    b.drain()
    assert sorted(b.state.pods()) == ["team/a", "team/b", "team/c"]
    # a relist whose first attempt broke off after a page, then listed again: b is gone, d is new
    b.events.put(("LIST", "Pod", []))
    b.events.put(("PAGE", "Pod", [named("b")]))
    b.drain()
    assert b.state.pod("team/b") is not None  # nothing is removed before a list is complete
    for event in (("LIST", "Pod", []), ("PAGE", "Pod", [named("a")]), ("SYNC", "Pod", [named("c"), named("d")])):
        b.events.put(event)
    b.drain()
    assert sorted(b.state.pods()) == ["team/a", "team/c", "team/d"] and "team/b" not in b.pods_seen


def _compact(kind: str, obj: dict[str, Any]) -> podwire.PodWire:
    """As the API server writes it: compact JSON, spec.nodeName after the fields before it."""
    line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode()
    wire = podwire.decode_event(line)["object"]
    assert isinstance(wire, podwire.PodWire)
    return wire


def _pending_rich() -> dict[str, Any]:
    pending = _as_served(RICH)
    pending["status"] = {"phase": "Pending"}
    return pending


def test_a_bind_keeps_the_key_and_reuses_the_conversion():
    pending = _pending_rich()
    bound = copy.deepcopy(pending)
    bound["spec"]["nodeName"] = "n1"
    wa, wb = _compact("MODIFIED", pending), _compact("MODIFIED", bound)
    assert wa.spec_key() == wb.spec_key() and wa.signature() != wb.signature()
    first = {"nodeName": "n1", **pending["spec"]}  # wherever the node is written
    assert _compact("MODIFIED", {**pending, "spec": first}).spec_key() == wa.spec_key()
    b = _backend()
    b._apply("Pod", _compact("ADDED", pending), False)
    before = b.state.pod("team/rich")
    b._apply("Pod", _compact("MODIFIED", bound), False)
    after = b.state.pod("team/rich")
    assert after == pod_from_k8s(bound) and after.node_name == "n1"
    assert after.request is before.request and after.extras is before.extras  # reused, not converted again


def test_replicas_share_one_conversion_in_the_backend():
    b = _backend()
    pods = [_replica(f"work-{i:05d}", i, node=f"n{i}" if i % 2 else "") for i in range(6)]
    for pod in pods:
        b._apply("Pod", _compact("ADDED", pod), False)
    cached = [b.state.pod(f"team/{p['metadata']['name']}") for p in pods]
    assert cached == [pod_from_k8s(p) for p in pods]
    assert len({id(p.request) for p in cached}) == 1 and len(b.spec_memo) == 1
    # full: emptied, then filled again
    b.spec_memo = {i.to_bytes(4, "big"): cached[0] for i in range(kubernetes.SPEC_MEMO_SIZE)}
    other = _replica("work-other", 9)
    other["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "5"
    b._apply("Pod", _compact("ADDED", other), False)
    assert len(b.spec_memo) == 1 and b.state.pod("team/work-other") == pod_from_k8s(other)


def _set(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        obj = obj[step]
    obj[path[-1]] = value


# every field the scheduler (cache, conversion, grouper) reads of a pod, changed alone on a cached pod
READ_FIELDS = [
    (("status", "phase"), "Succeeded"),
    (("status", "startTime"), "2026-01-01T00:09:00Z"),
    (("metadata", "deletionTimestamp"), "2026-01-01T00:09:00Z"),
    (("metadata", "creationTimestamp"), "2026-01-01T00:00:09Z"),
    (("metadata", "uid"), "u2"),
    (("metadata", "annotations"), {"pod-group-name": "h", "other": "x"}),
    (("metadata", "ownerReferences"), [{"kind": "ReplicaSet", "name": "r", "uid": "o2", "controller": True}]),
    (("metadata", "labels"), {"app": "b", "kai.scheduler/queue": "q2", "kai.scheduler/task-priority": "1"}),
    (("spec", "nodeName"), "n1"),
    (("spec", "schedulerName"), "default-scheduler"),
    (("spec", "priorityClassName"), "build"),
    (("spec", "priority"), 100),
    (("spec", "nodeSelector"), {"zone": "z2"}),
    (("spec", "tolerations"), []),
    (("spec", "containers", 0, "resources", "requests", "cpu"), "3"),
    (("spec", "overhead"), {"cpu": "300m"}),
    (("spec", "affinity"), {}),
]


@pytest.mark.parametrize(("path", "value"), READ_FIELDS, ids=_id)
@pytest.mark.parametrize("debug_copies", [False, True])
def test_an_update_of_any_field_the_scheduler_reads_is_applied(path, value, debug_copies):
    """The skip and reuse rules, field by field: a pod cached (pending, and bound) then updated in one field
    the scheduler reads ends exactly as converting the update from scratch; and the grouper sees it."""
    for node in ("", "n0"):
        b = _backend()
        if debug_copies:
            b.raw = {}
        old = _pending_rich()
        if node:
            old["spec"]["nodeName"] = node
        new = copy.deepcopy(old)
        _set(new, path, value)
        new["metadata"]["resourceVersion"] = "8"
        b._apply("Pod", _compact("ADDED", old), False)
        b._apply("Pod", _compact("MODIFIED", new), False)
        assert b.state.pod("team/rich") == pod_from_k8s(new), (path, node)
        fresh = _backend()  # the grouper keeps what it keeps of the full object
        fresh.grouper.observe("Pod", new, False)
        assert b.grouper.pods.get("team/rich") == fresh.grouper.pods.get("team/rich"), (path, node)
        assert b.grouper.todo == fresh.grouper.todo
        if debug_copies:
            assert json.loads(b.raw[("Pod", "team/rich")])["spec"] == new["spec"]


def test_same_spec_reuse_carries_every_field_it_does_not_read_again():
    """The reuse names every Pod field: one added later and left out would fall back to its default."""
    base = pod_from_k8s(_as_served(RICH))
    read_again = {"uid", "node_name", "phase", "annotations", "creation", "owner_kind", "deleting", "pod_group"}
    read_again |= {"group_key", "start_time", "namespace", "name", "labels", "priority_class", "task_priority"}
    reused = pod_from_k8s(
        {"metadata": {}, "spec": {"priorityClassName": base.priority_class}, "status": {}}, same_spec=base
    )
    for f in dataclasses.fields(base):
        if f.init and f.name not in read_again:  # init=False fields are derived in __post_init__
            assert getattr(reused, f.name) == getattr(base, f.name), f.name
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                assert f.name in ("problems",) or getattr(base, f.name) != default, f"RICH leaves {f.name} default"


@pytest.mark.parametrize("pod", [RICH, *_scenario_pods()], ids=lambda p: p["metadata"]["name"])
def test_the_debug_copy_made_of_the_received_slices_equals_the_one_made_of_the_dict(pod):
    served = _as_served(pod)
    wire = _compact("MODIFIED", served)
    made = json.loads(kubernetes._encode(kubernetes._debug_copy("Pod", wire.to_dict())))
    assert json.loads(wire.debug_json()) == made
    bare = _compact("MODIFIED", {"metadata": {"name": "p", "namespace": "n"}})  # no spec, labels or status
    assert json.loads(bare.debug_json()) == json.loads(
        kubernetes._encode(kubernetes._debug_copy("Pod", bare.to_dict()))
    )


def test_the_debug_copy_of_an_event_older_than_our_bind_shows_the_assumed_node():
    b = _backend()
    b.raw = {}
    pending = _pending_rich()
    b._apply("Pod", _compact("ADDED", pending), False)
    b.committer._assume([("team/rich", "n2")], 0.0)
    older = copy.deepcopy(pending)
    older["metadata"]["resourceVersion"] = "9"
    older["status"]["phase"] = "Pending"
    older["metadata"]["annotations"] = {**older["metadata"]["annotations"], "seen": "again"}
    b._apply("Pod", _compact("MODIFIED", older), False)
    copied = json.loads(b.raw[("Pod", "team/rich")])
    assert copied["spec"]["nodeName"] == "n2" and copied["spec"]["containers"] == pending["spec"]["containers"]
    bound = copy.deepcopy(older)
    bound["spec"]["nodeName"] = "n2"
    b._apply("Pod", _compact("MODIFIED", bound), False)  # the watch confirms: the copy is the event's
    assert json.loads(b.raw[("Pod", "team/rich")])["spec"] == bound["spec"]

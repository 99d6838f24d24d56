"""The Kubernetes committer's evictions against a small fake API server (the real one: tests/integration/
test_evictions.py): the plan is recorded before the first delete, each victim gets DisruptionTarget and a
uid-preconditioned DELETE with its own grace period, binds wait for the victims to leave the cache, and a
victim that never leaves releases the placement whole."""

from __future__ import annotations

import json
import threading
from typing import Any

from scheduler.backends.kubernetes import KubeBackend
from scheduler.binder.commit import INTENT_ANNOTATION, Intent
from scheduler.framework.record import GangCommit

GPU = "nvidia.com/gpu"


def pod(name: str, node: str = "", grace: int = 0, pg: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedulerName": "kai-scheduler",
        "terminationGracePeriodSeconds": grace,
        "containers": [{"name": "c", "resources": {"requests": {GPU: "4"}}}],
    }
    if node:
        spec["nodeName"] = node
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1"}
    if pg:
        meta["annotations"] = {"pod-group-name": pg}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": "Running"}}


class FakeApi:
    """Pods and PodGroups in memory; a DELETE with grace 0 removes the pod (a watch event), otherwise it
    only marks it terminating, as an API server without a kubelet does."""

    host = "http://fake"

    def __init__(self, backend_events: Any, objs: list[dict[str, Any]]) -> None:
        self.events = backend_events
        self.pods = {f"ns/{o['metadata']['name']}": o for o in objs}
        self.annotations: dict[str, str | None] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        from scheduler.kube.client import ApiError

        body = kw.get("body")
        with self.lock:
            self.calls.append((method, path + ("?dry" if kw.get("params") else ""), body))
            parts = path.split("/")
            if method == "PATCH" and "annotations" in body["metadata"]:  # PodGroup, or pods/<name>/status
                self.annotations[parts[-1] if "podgroups" in parts else parts[-2]] = body["metadata"]["annotations"][
                    INTENT_ANNOTATION
                ]
                return {}
            key = f"{parts[4]}/{parts[6]}"
            obj = self.pods.get(key)
            if obj is None:
                raise ApiError(404, "NotFound")
            if method == "GET":
                return json.loads(json.dumps(obj))
            if method == "PATCH":  # pods/<name>/status
                obj["status"].setdefault("conditions", []).extend(body["status"]["conditions"])
                return obj
            if method == "DELETE":
                assert body == {"preconditions": {"uid": obj["metadata"]["uid"]}}
                if obj["spec"]["terminationGracePeriodSeconds"] == 0:
                    del self.pods[key]
                    self.events.put(("DELETED", "Pod", obj))
                else:
                    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
                    self.events.put(("MODIFIED", "Pod", obj))
                return {}
            if method == "POST" and parts[-1] == "binding":
                if not kw.get("params"):
                    obj["spec"]["nodeName"] = body["target"]["name"]
                return {}
        raise AssertionError(f"unexpected {method} {path}")


def backend_with(objs: list[dict[str, Any]], has_pg: bool = True) -> tuple[KubeBackend, FakeApi, list[Any]]:
    backend = KubeBackend(None, "kai-scheduler", identity="me")  # type: ignore[arg-type]
    api = FakeApi(backend.events, objs)
    backend.client = backend.committer.client = api  # type: ignore[assignment]
    nodes = [
        {"kind": "Node", "metadata": {"name": n}, "status": {"allocatable": {GPU: "4", "cpu": "8", "pods": "110"}}}
        for n in ("n1", "n2")
    ]
    for o in [*nodes, *objs]:
        backend.state.apply_object(json.loads(json.dumps(o)))
    sent: list[Any] = []
    backend.committer.event = lambda *a: sent.append(a)
    return backend, api, sent


def test_evicts_then_binds_with_the_plan_recorded_first() -> None:
    objs = [pod("v1", "n1", pg="old"), pod("v2", "n2", pg="old"), pod("p1", pg="new"), pod("p2", pg="new")]
    backend, api, sent = backend_with(objs)
    try:
        out = backend.commit(
            [
                GangCommit(
                    "ns/new",
                    True,
                    binds=(),
                    evictions=(("ns/v1", "reclaim"), ("ns/v2", "reclaim")),
                    pipelined=(("ns/p1", "n1"), ("ns/p2", "n2")),
                )
            ]
        )
    finally:
        backend.stop()
    assert out.errors == {} and out.evicted == {"ns/new": ["ns/v1", "ns/v2"]}
    assert out.bound == {"ns/new": [("ns/p1", "n1"), ("ns/p2", "n2")]}
    writes = [(m, p) for m, p, _ in api.calls if m != "GET"]
    first_delete = writes.index(("DELETE", "/api/v1/namespaces/ns/pods/v1"))
    plan = writes.index(("PATCH", "/apis/scheduling.run.ai/v2alpha2/namespaces/ns/podgroups/new"))
    assert plan < first_delete and writes[-1][0] == "PATCH"  # recorded before, cleared after
    binds = [i for i, (m, p) in enumerate(writes) if p.endswith("/binding")]
    assert min(binds) > first_delete
    recorded = Intent.parse(
        "ns/new",
        next(b for m, p, b in api.calls if p.endswith("podgroups/new"))["metadata"]["annotations"][INTENT_ANNOTATION],
    )
    assert recorded is not None and [(v.pod, v.uid, v.node) for v in recorded.evictions] == [
        ("ns/v1", "uid-v1", "n1"),
        ("ns/v2", "uid-v2", "n2"),
    ]
    assert api.annotations["new"] is None
    cond = next(b for m, p, b in api.calls if p.endswith("v1/status"))
    assert cond["metadata"] == {"uid": "uid-v1"}
    c = cond["status"]["conditions"][0]
    assert (c["type"], c["status"], c["reason"]) == ("DisruptionTarget", "True", "PreemptionByScheduler")
    assert "reclaim" in c["message"] and "ns/new" in c["message"]
    assert sorted((a[0]["name"], a[1]) for a in sent) == [("v1", "Reclaimed"), ("v2", "Reclaimed")]


def test_victims_that_never_leave_release_the_placement_whole() -> None:
    objs = [pod("v1", "n1", grace=1), pod("p1")]
    backend, api, _ = backend_with(objs)
    backend.committer.evict_margin = 0.2
    try:
        out = backend.commit(
            [GangCommit("ns/p1", False, binds=(), evictions=(("ns/v1", "preempt"),), pipelined=(("ns/p1", "n1"),))]
        )
    finally:
        backend.stop()
    assert "victims still terminating after 1s (ns/v1)" in out.errors["ns/p1"]
    assert "nothing was bound" in out.errors["ns/p1"] and out.evicted == {"ns/p1": ["ns/v1"]}
    assert not [p for m, p, _ in api.calls if p.endswith("/binding") and "?dry" not in p]
    # a gang of one keeps its plan on the preemptor pod itself, and it is cleared again
    assert [m for m, p, _ in api.calls if p == "/api/v1/namespaces/ns/pods/p1/status"] == ["PATCH", "PATCH"]
    assert api.annotations["p1"] is None


def test_stale_gang_eviction_binds_nothing_and_gone_victims_count_as_done() -> None:
    objs = [pod("s1", "n1", pg="stale"), pod("s2", "n2", pg="stale")]
    backend, api, sent = backend_with(objs)
    del api.pods["ns/s2"]  # already gone when the commit starts
    try:
        out = backend.commit(
            [GangCommit("ns/stale", True, binds=(), evictions=(("ns/s1", "stalegang"), ("ns/s2", "stalegang")))]
        )
    finally:
        backend.stop()
    assert out.errors == {} and out.bound == {"ns/stale": []} and out.evicted == {"ns/stale": ["ns/s1", "ns/s2"]}
    assert [p for m, p, _ in api.calls if m == "DELETE"] == ["/api/v1/namespaces/ns/pods/s1"]
    assert [a[1] for a in sent] == ["StaleGangEvicted"] and "minMember" in sent[0][2]


def test_unknown_reason_is_refused_before_any_write() -> None:
    backend, api, _ = backend_with([pod("v1", "n1"), pod("p1")])
    try:
        out = backend.commit([GangCommit("ns/p1", False, binds=(("ns/p1", "n2"),), evictions=(("ns/v1", "bogus"),))])
    finally:
        backend.stop()
    assert "unknown eviction reason 'bogus'" in out.errors["ns/p1"] and api.calls == []

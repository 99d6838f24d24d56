"""The real cluster: list+watch into ClusterState, gang binds through `pods/binding`, rollback.

One reflector thread per resource lists, then watches from the list's resourceVersion with bookmarks;
a 410 Gone relists; any other failure reconnects with capped exponential backoff. Events go through a
queue and are applied by the scheduling thread only (ClusterState has one writer).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from scheduler.backends.base import BindError
from scheduler.cache.cluster_state import ClusterState
from scheduler.kube.client import ApiError, KubeClient

log = logging.getLogger("kaisched.kube")


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    path: str
    namespaced: bool = False


RESOURCES = (
    Resource("Node", "/api/v1/nodes"),
    Resource("Pod", "/api/v1/pods", True),
    Resource("PriorityClass", "/apis/scheduling.k8s.io/v1/priorityclasses"),
    Resource("PodGroup", "/apis/scheduling.run.ai/v2alpha2/podgroups", True),
    Resource("Queue", "/apis/scheduling.run.ai/v2/queues"),
    Resource("Topology", "/apis/kai.scheduler/v1alpha1/topologies"),
)

WATCH_TIMEOUT_S = 240
MAX_BACKOFF_S = 10.0


def _obj_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Reflector(threading.Thread):
    def __init__(
        self, client: KubeClient, res: Resource, out: queue.Queue[tuple[str, str, Any]], stop: threading.Event
    ) -> None:
        super().__init__(name=f"reflector-{res.kind}", daemon=True)
        self.client, self.res, self.out, self.stop_event = client, res, out, stop
        self.synced = threading.Event()
        self.relists = 0
        self.reconnects = 0

    def run(self) -> None:
        backoff = 0.2
        rv = ""
        while not self.stop_event.is_set():
            try:
                if not rv:
                    rv = self._list()
                    self.relists += 1
                for event in self.client.watch(
                    self.res.path,
                    {"resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": WATCH_TIMEOUT_S},
                    timeout=WATCH_TIMEOUT_S + 30,
                ):
                    if self.stop_event.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = ""  # compacted: relist
                            break
                        raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if kind == "BOOKMARK":
                        continue
                    obj.setdefault("kind", self.res.kind)
                    self.out.put((str(kind), self.res.kind, obj))
                backoff = 0.2
            except ApiError as err:
                if err.status == 410:
                    rv = ""
                    continue
                if err.status == 404 and not rv:
                    # the CRD is not installed (yet): the cluster has none of these; keep checking
                    self.out.put(("SYNC", self.res.kind, []))
                    self.synced.set()
                    self.stop_event.wait(min(MAX_BACKOFF_S, backoff))
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    continue
                self._backoff(err, backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            except Exception as err:  # connection refused, reset, timeouts: reconnect
                self._backoff(err, backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)

    def _backoff(self, err: Exception, delay: float) -> None:
        self.reconnects += 1
        if err.__class__.__name__ != "ProtocolError":
            log.warning("watch %s failed (%s); retrying in %.1fs", self.res.kind, err, delay)
        self.stop_event.wait(delay)

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        cont = None
        while True:
            page = self.client.request("GET", self.res.path, params={"limit": 5000, "continue": cont})
            for item in page.get("items") or []:
                item.setdefault("kind", self.res.kind)
                items.append(item)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                break
        self.out.put(("SYNC", self.res.kind, items))
        self.synced.set()
        return str((page.get("metadata") or {}).get("resourceVersion") or "")


class KubeBackend:
    """ClusterBackend over a real API server."""

    def __init__(self, client: KubeClient, scheduler_name: str, bind_parallelism: int = 32) -> None:
        self.client = client
        self.state = ClusterState(scheduler_name)
        self.events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.stop_event = threading.Event()
        self.reflectors = [Reflector(client, r, self.events, self.stop_event) for r in RESOURCES]
        self.known: dict[str, set[str]] = {r.kind: set() for r in RESOURCES}
        self.assumed: dict[str, tuple[str, float]] = {}  # pod key -> (node, when) until the watch confirms
        self.pool = ThreadPoolExecutor(max_workers=bind_parallelism, thread_name_prefix="bind")

    def start(self) -> None:
        for r in self.reflectors:
            r.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def synced(self) -> bool:
        """Every resource listed once (a CRD that is not installed counts as listed, empty)."""
        return all(r.synced.is_set() for r in self.reflectors)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.synced():
                self.drain()
                return True
            time.sleep(0.05)
        return False

    def drain(self) -> int:
        """Apply every queued watch event to the cache; returns how many."""
        n = 0
        while True:
            try:
                kind, res, payload = self.events.get_nowait()
            except queue.Empty:
                return n
            n += 1
            if kind == "SYNC":
                fresh = {_obj_key(o): o for o in payload}
                for gone in self.known[res] - fresh.keys():
                    ns, _, name = gone.rpartition("/")
                    self.state.apply_object(
                        {"kind": res, "metadata": {"name": name, "namespace": ns or None}}, deleted=True
                    )
                for obj in fresh.values():
                    self._apply(res, obj, False)
                self.known[res] = set(fresh)
            else:
                self._apply(res, payload, kind == "DELETED")

    def _apply(self, res: str, obj: dict[str, Any], deleted: bool) -> None:
        key = _obj_key(obj)
        if deleted:
            self.known[res].discard(key)
            self.assumed.pop(key, None)
        else:
            self.known[res].add(key)
        if res == "Pod" and not deleted:
            node = (obj.get("spec") or {}).get("nodeName")
            if node:
                self.assumed.pop(key, None)
            elif key in self.assumed:
                # an event older than our bind: keep the pod on its node until the watch catches up
                obj = copy.deepcopy(obj)
                obj["spec"]["nodeName"] = self.assumed[key][0]
        self.state.apply_object(obj, deleted=deleted)

    # --- binding ------------------------------------------------------------------------------
    def _bind_one(self, pod_key: str, node: str, uid: str) -> None:
        ns, name = pod_key.split("/", 1)
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, **({"uid": uid} if uid else {})},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body=body)

    def bind_gang(self, gang: str, bindings: list[tuple[str, str]]) -> None:
        """Bind all members concurrently; if any fails, roll back those that bound, then raise."""
        err = self.bind_gangs([(gang, bindings)]).get(gang)
        if err:
            raise BindError(err)

    def bind_gangs(self, gangs: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, str]:
        """Bind every member of every gang at once (bounded by the pool); a gang with any failed member
        is rolled back whole. Returns gang -> error for the gangs that did not bind."""
        futures = []
        for gang, bindings in gangs:
            for key, node in bindings:
                pod = self.state.pod(key)
                futures.append((gang, key, node, self.pool.submit(self._bind_one, key, node, pod.uid if pod else "")))
        bound: dict[str, list[tuple[str, str]]] = {}
        failed: dict[str, dict[str, str]] = {}
        now = time.monotonic()
        for gang, key, node, fut in futures:
            try:
                fut.result()
                bound.setdefault(gang, []).append((key, node))
            except Exception as err:
                failed.setdefault(gang, {})[key] = str(err)
        for _gang, members in bound.items():
            for key, node in members:
                self.assumed[key] = (node, now)
                pod = self.state.pod(key)
                if pod is not None:
                    self.state.upsert_pod(dataclasses.replace(pod, node_name=node))
        errors: dict[str, str] = {}
        for gang, why in sorted(failed.items()):
            done = bound.get(gang, [])
            self.rollback(gang, done)
            first = sorted(why.items())[0]
            total = len(why) + len(done)
            errors[gang] = (
                f"{len(why)}/{total} binds of {gang} failed (first: {first[0]}: {first[1]}); "
                f"rolled back {len(done)} bound members"
            )
        return errors

    def rollback(self, gang: str, bound: list[tuple[str, str]]) -> None:
        """Return bound members to Pending: delete owned pods (their controller recreates them); re-create
        pods without an owner from their own spec, minus the node."""
        for key, _node in bound:
            ns, name = key.split("/", 1)
            path = f"/api/v1/namespaces/{ns}/pods/{name}"
            try:
                obj = self.client.request("GET", path)
                self.client.request("DELETE", path, body={"gracePeriodSeconds": 0})
                if not any(o.get("controller") for o in (obj.get("metadata") or {}).get("ownerReferences") or []):
                    self.client.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pending_copy(obj))
            except ApiError as err:
                log.error("rollback of %s member %s failed: %s", gang, key, err)
            self.assumed.pop(key, None)


def pending_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The same pod (name, labels, annotations, spec), unbound, ready to be created again."""
    meta = obj.get("metadata") or {}
    spec = copy.deepcopy(dict(obj.get("spec") or {}))
    spec.pop("nodeName", None)
    keep = ("name", "namespace", "labels", "annotations", "ownerReferences", "finalizers")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {k: copy.deepcopy(meta[k]) for k in keep if k in meta},
        "spec": spec,
    }

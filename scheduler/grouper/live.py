"""The grouper on a real cluster: runs in the daemon's cycle (so only the leader writes, through the same
fenced client as every other write), before the snapshot.

It sees pods and PodGroups through the daemon's watch (`observe`), reads owners on demand with GET
(their resource found by API discovery, so any kind works; a kind whose CRD is not installed is a 404,
never a crash), creates the PodGroups it makes (marked with `kai.scheduler/grouped-by: kaisched`),
updates only those, and annotates each pod with `pod-group-name`. Until a pod is annotated it is held
(`held`): the session makes it wait with AwaitingPodGroup instead of placing it as a gang of one (an
owner that cannot be read holds it too, the message naming the owner and the fix; except a kind with
no gang rule the scheduler may not read, grouped by what it can read). Every
`resync_seconds` it re-reads the owners of each of its PodGroups, so a scaled workload's gang follows
(minMember after a scale)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scheduler.api.labels import POD_GROUP_ANNOTATION
from scheduler.grouper.chain import Chain, Ref, walk
from scheduler.grouper.objects import is_ours, needs_update
from scheduler.grouper.plan import PodPlan, awaiting, needs_grouping, plan, unreadable
from scheduler.grouper.rules import GANG_KINDS, GrouperConfig, GroupingError, annotations_of, group_pod, meta
from scheduler.kube.client import ApiError, KubeClient
from scheduler.kube.paths import POD_GROUPS

log = logging.getLogger("kaisched.grouper")

Obj = Mapping[str, Any]
MERGE_PATCH = "application/merge-patch+json"
RETRY_UNREADABLE_S = 10.0  # an owner that could not be read is asked again after this long


def _skeleton(pod: Obj) -> dict[str, Any]:
    """What the rules read of a pod; the rest (containers, status) is not kept."""
    m, spec = meta(pod), pod.get("spec") or {}
    keep_meta = ("name", "namespace", "uid", "labels", "annotations", "ownerReferences", "deletionTimestamp")
    keep_spec = ("schedulerName", "priorityClassName", "nodeName")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {k: m[k] for k in keep_meta if k in m},
        "spec": {k: spec[k] for k in keep_spec if k in spec},
        "status": {"phase": (pod.get("status") or {}).get("phase", "Pending")},
    }


def _owned_by_pod(podgroup: Obj) -> bool:
    return any(r.get("kind") == "Pod" for r in meta(podgroup).get("ownerReferences") or [] if isinstance(r, Mapping))


def _key(obj: Obj) -> str:
    m = meta(obj)
    return f"{m.get('namespace') or 'default'}/{m.get('name', '')}"


@dataclass(slots=True)
class _Pass:
    """One grouping pass: owners read once per pass, failures by owner."""

    owners: dict[tuple[str, str, str, str], Obj | None] = field(default_factory=dict)
    failed: dict[Ref, int] = field(default_factory=dict)


class LiveGrouper:
    def __init__(
        self,
        client: KubeClient,
        scheduler_name: str,
        resync_seconds: float = 15.0,
        workers: int = 16,
        max_pods_per_pass: int = 500,
        on_object: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.client, self.scheduler_name, self.resync_seconds = client, scheduler_name, resync_seconds
        # a pass runs inside the scheduling cycle: a burst of new pods is grouped a slice per cycle, so the
        # gangs grouped first are scheduled while the rest are still being grouped
        self.max_pods_per_pass = max_pods_per_pass
        self.on_object = on_object  # what the API answered to our writes, for the cache (no wait for the watch)
        self.pods: dict[str, dict[str, Any]] = {}  # ours, with an owner: key -> skeleton
        self.podgroups: dict[str, dict[str, Any]] = {}  # every PodGroup: key -> object
        self.held: dict[str, tuple[str, str]] = {}
        self.todo: set[str] = set()  # pods that need their PodGroup (what a pass looks at)
        self.singles: set[str] = set()  # pods of todo the last pass found to be gangs of one
        self._joined: dict[str, str] = {}  # pod uid -> PodGroup we annotated it with (until the watch shows it)
        self._resources: dict[str, dict[str, tuple[str, bool]] | None] = {}  # apiVersion -> kind -> (plural, ns'd)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grouper")
        self._lock = threading.Lock()
        self._last_resync = time.monotonic()
        self._unreadable: dict[tuple[str, str, str, str], tuple[int, float]] = {}  # owner -> (status, retry at)
        self.stats = {"created": 0, "updated": 0, "pods": 0, "failed": 0}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- what the watch shows ---------------------------------------------------------------------
    def observe(self, kind: str, obj: Obj, deleted: bool) -> None:
        m, key = meta(obj), _key(obj)
        if kind == "PodGroup":
            if deleted:
                self.podgroups.pop(key, None)
            else:
                self.podgroups[key] = dict(obj)
            return
        if kind != "Pod":
            return
        spec = obj.get("spec") or {}
        ours = (spec.get("schedulerName") or "default-scheduler") == self.scheduler_name
        if deleted or not ours or not m.get("ownerReferences"):
            gone = self.pods.pop(key, None)
            self.todo.discard(key)
            self.singles.discard(key)
            if gone is not None:
                self._joined.pop(str(meta(gone).get("uid", "")), None)
                self.held.pop(key, None)
            return
        skeleton = _skeleton(obj)
        self.pods[key] = skeleton
        if needs_grouping(skeleton, self.scheduler_name):
            self.todo.add(key)
        else:
            self.todo.discard(key)
            self.singles.discard(key)
            self._joined.pop(str(meta(skeleton).get("uid", "")), None)
            self.held.pop(key, None)

    def waiting(self) -> dict[str, tuple[str, str]]:
        """The pods a session must hold back: those a pass held, and those that came in after the last pass
        (a watch event drained meanwhile) and that no pass has looked at yet."""
        out = dict(self.held)
        for key in self.todo - self.singles - out.keys():
            out[key] = awaiting(self.pods[key], "waiting for the grouper to read its owners")
        return out

    # --- reading owners -----------------------------------------------------------------------------
    def _resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """(plural, namespaced) of a kind, from API discovery (once per group version); None: not served."""
        if api_version not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self.client.request("GET", path)
            except ApiError as err:
                if err.status != 404:
                    raise
                self._resources[api_version] = None  # not served: its CRD is not installed
            else:
                self._resources[api_version] = {
                    str(r.get("kind")): (str(r.get("name")), bool(r.get("namespaced")))
                    for r in listing.get("resources") or []
                    if "/" not in str(r.get("name", ""))
                }
        table = self._resources[api_version]
        return None if table is None else table.get(kind)

    def _get(self, ref: Ref) -> Obj:
        found = self._resource(ref.api_version, ref.kind)
        if found is None:
            self._resources.pop(ref.api_version, None)  # look again next time: the CRD may come
            raise ApiError(404, "NotFound", {"message": f"{ref.api_version} {ref.kind} is not served"})
        plural, namespaced = found
        prefix = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
        path = (
            f"{prefix}/namespaces/{ref.namespace}/{plural}/{ref.name}"
            if namespaced
            else f"{prefix}/{plural}/{ref.name}"
        )
        obj = self.client.request("GET", path)
        obj.setdefault("kind", ref.kind)
        obj.setdefault("apiVersion", ref.api_version)
        return obj

    def _lookup(self, run: _Pass) -> Callable[[Ref], Obj | None]:
        def lookup(ref: Ref) -> Obj | None:
            if ref.kind == "Pod":  # LeaderWorkerSet's workers are owned by their leader pod
                pod = self.pods.get(f"{ref.namespace}/{ref.name}")
                if pod is not None:
                    return pod
            k = (ref.api_version, ref.kind, ref.namespace, ref.name)
            if k not in run.owners:
                status, until = self._unreadable.get(k, (0, 0.0))
                if time.monotonic() < until:  # failed a moment ago: not asked again every cycle
                    run.owners[k] = None
                    run.failed[ref] = status
                    return None
                try:
                    run.owners[k] = self._get(ref)
                except ApiError as err:
                    run.owners[k] = None
                    run.failed[ref] = err.status
                    self._unreadable[k] = (err.status, time.monotonic() + RETRY_UNREADABLE_S)
            return run.owners[k]

        return lookup

    # --- one pass -----------------------------------------------------------------------------------
    def run(self, config: GrouperConfig) -> bool:
        """Group every pod of ours that waits for a PodGroup; every resync_seconds, bring our PodGroups
        up to date with their workloads. True when it wrote anything."""
        run = _Pass()
        lookup = self._lookup(run)
        creates: dict[str, dict[str, Any]] = {}
        updates: dict[str, dict[str, Any]] = {}
        joins: list[tuple[str, str, dict[str, Any]]] = []  # (pod key, PodGroup key, patch)
        for key in sorted(self.todo):
            pod = self.pods[key]
            if str(meta(pod).get("uid", "")) in self._joined:
                continue
            if len(joins) >= self.max_pods_per_pass:
                self.held.setdefault(key, awaiting(pod, "waiting for the grouper to reach it (a burst of new pods)"))
                continue
            chain = walk(pod, lookup)
            result = self._plan(pod, chain, run, config)
            if result.held is not None:
                self.held[key] = result.held
                continue
            if result.spec is None or result.pod_patch is None:
                self.held.pop(key, None)  # no gang to wait for (a gang of one)
                self.singles.add(key)
                continue
            self.singles.discard(key)
            pg_key = result.spec.key
            if result.create is not None:
                creates.setdefault(pg_key, result.create)
            if result.update is not None:
                updates.setdefault(pg_key, result.update)
            joins.append((key, pg_key, result.pod_patch))
            self.held[key] = awaiting(pod, f"waiting for its PodGroup {result.spec.name}, which the grouper is making")
        if time.monotonic() - self._last_resync >= self.resync_seconds:
            self._last_resync = time.monotonic()
            updates.update({k: v for k, v in self._resync(config).items() if k not in updates})
        failed_groups = set(self._parallel(self._create, sorted(creates.items())))
        failed_groups |= set(self._parallel(self._update, sorted(updates.items())))
        ready = [(k, pg, patch) for k, pg, patch in joins if pg not in failed_groups]
        joined = len(ready) - len(self._parallel(self._join, [(k, patch) for k, _, patch in ready]))
        if creates or updates or ready:
            log.info(
                "grouper: %d PodGroups created, %d updated, %d pods joined; %d pods held",
                len(creates) - len(set(creates) & failed_groups),
                len(updates) - len(set(updates) & failed_groups),
                joined,
                len(self.held),
            )
        return bool(creates or updates or ready)

    def _plan(self, pod: Obj, chain: Chain, run: _Pass, config: GrouperConfig) -> PodPlan:
        if chain.missing is not None:
            status = run.failed.get(chain.missing, 404)
            if status != 403 or chain.missing.kind in GANG_KINDS:
                return unreadable(pod, chain.missing, status)
            # a kind we may not read and have no gang rule for would get minMember 1 anyway: group by what
            # we can read (no owner readable: a gang of one), rather than hold its pods until RBAC changes
            chain = Chain(chain.owners)
        first = plan(pod, chain, None, config)
        if first.spec is None or first.held is not None:
            return first
        existing = self.podgroups.get(first.spec.key)
        return first if existing is None else plan(pod, chain, existing, config)

    def _resync(self, config: GrouperConfig) -> dict[str, dict[str, Any]]:
        """Merge patches for our PodGroups whose workload changed (fresh owners, read for this)."""
        members: dict[str, dict[str, Any]] = {}
        for key in sorted(self.pods):
            pod = self.pods[key]
            name = annotations_of(pod).get(POD_GROUP_ANNOTATION)
            if name:
                members.setdefault(f"{key.split('/', 1)[0]}/{name}", pod)
        out: dict[str, dict[str, Any]] = {}
        run = _Pass()
        for pg_key in sorted(members):
            existing = self.podgroups.get(pg_key)
            if existing is None or not is_ours(existing) or _owned_by_pod(existing):
                continue  # not ours; or one pod's gang (a Deployment's): nothing of it follows a scale
            chain = walk(members[pg_key], self._lookup(run))
            if chain.missing is not None:
                continue
            try:
                spec = group_pod(members[pg_key], chain.owners, config)
            except GroupingError:
                continue
            if spec is None or spec.key != pg_key:
                continue
            patch = needs_update(existing, spec)
            if patch is not None:
                out[pg_key] = patch
        return out

    # --- writes -------------------------------------------------------------------------------------
    def _parallel(
        self, fn: Callable[[str, dict[str, Any]], bool], items: list[tuple[str, dict[str, Any]]]
    ) -> list[str]:
        """Run the writes on the pool; returns the keys whose write failed."""
        results = list(self._pool.map(lambda kv: (kv[0], fn(kv[0], kv[1])), items))
        return [k for k, ok in results if not ok]

    def _write(
        self, what: str, method: str, path: str, body: dict[str, Any], content_type: str
    ) -> dict[str, Any] | None:
        try:
            return self.client.request(method, path, body=body, content_type=content_type)
        except ApiError as err:
            if err.status == 409 and method == "POST":
                return {}  # made meanwhile (another pass, or a user): the watch brings it
            with self._lock:
                self.stats["failed"] += 1
            log.warning("grouper: %s failed: %s", what, err)
            return None

    def _create(self, key: str, obj: dict[str, Any]) -> bool:
        ns = key.split("/", 1)[0]
        made = self._write(f"create PodGroup {key}", "POST", POD_GROUPS.collection(ns), obj, "application/json")
        if made is None:
            return False
        with self._lock:
            self.stats["created"] += 1
        if made and self.on_object is not None:
            self.on_object("PodGroup", made)
        return True

    def _update(self, key: str, patch: dict[str, Any]) -> bool:
        done = self._write(f"update PodGroup {key}", "PATCH", POD_GROUPS.of_key(key), patch, MERGE_PATCH)
        if done is None:
            return False
        with self._lock:
            self.stats["updated"] += 1
        if self.on_object is not None:
            self.on_object("PodGroup", done)
        return True

    def _join(self, key: str, patch: dict[str, Any]) -> bool:
        ns, name = key.split("/", 1)
        pod = self.pods.get(key)
        if pod is None:
            return False
        body = {**patch, "metadata": {**patch["metadata"], "uid": meta(pod).get("uid")}}  # this pod, no other
        # through pods/status, which takes metadata labels and annotations (and nothing of the spec): the
        # scheduler already holds that permission, so it needs no patch of pods themselves
        path = f"/api/v1/namespaces/{ns}/pods/{name}/status"
        done = self._write(f"annotate pod {key}", "PATCH", path, body, MERGE_PATCH)
        if done is None:
            return False
        with self._lock:
            self.stats["pods"] += 1
            self._joined[str(meta(pod).get("uid", ""))] = patch["metadata"]["annotations"][POD_GROUP_ANNOTATION]
        if self.on_object is not None:
            self.on_object("Pod", done)
        return True

"""The grouper on a real cluster: runs in the daemon's cycle (so only the leader writes, through the same
fenced client as every other write), before the snapshot.

It sees pods and PodGroups through the daemon's watch (`observe`), and the workload kinds it groups
through watches of their own (`owner_event`, kube/paths.py GROUPED_OWNERS: a kind whose CRD is not
installed, or that it may not list, is simply empty); an owner not seen there (another kind or version, or
not arrived yet) is read on demand with GET (its resource found by API discovery, so any kind works; a 404
is never a crash). It creates the PodGroups it makes (marked with `kai.scheduler/grouped-by: kaisched`),
updates only those, and annotates each pod with `pod-group-name`. Until a pod is annotated it is held
(`held`): the session makes it wait with AwaitingPodGroup instead of placing it as a gang of one (an
owner that cannot be read holds it too, the message naming the owner and the fix; except a kind with
no gang rule the scheduler may not read, grouped by what it can read). When a watched owner changes, and
every `resync_seconds` (for the owners it reads by GET), it works out each of its PodGroups again, so a
scaled workload's gang follows at once (minMember after a scale)."""

from __future__ import annotations

import logging
import math
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
from scheduler.kube.paths import GROUPED_OWNERS, POD_GROUPS

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


# parts of a workload no rule reads and that can be large (pod specs): not kept in the owner store
_HEAVY = frozenset(("containers", "initContainers", "ephemeralContainers", "volumes", "volumeClaimTemplates"))


def _trim(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _trim(v) for k, v in value.items() if k not in _HEAVY}
    if isinstance(value, list):
        return [_trim(v) for v in value]
    return value


def _owner_skeleton(api_version: str, kind: str, obj: Obj) -> dict[str, Any]:
    """What the rules read of a watched owner: its identity, labels, annotations, owners and spec (without
    pod specs); its status is left out, so a status update is no change."""
    m = meta(obj)
    keep = ("name", "namespace", "uid", "labels", "annotations", "ownerReferences")
    return {
        "apiVersion": str(obj.get("apiVersion") or api_version),
        "kind": kind,
        "metadata": {k: m[k] for k in keep if k in m},
        "spec": _trim(obj.get("spec") or {}),
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
        resync_seconds: float = 60.0,
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
        self._last_resync = -math.inf  # the first pass works out every PodGroup (a previous leader's too)
        self._unreadable: dict[tuple[str, str, str, str], tuple[int, float]] = {}  # owner -> (status, retry at)
        self.stats = {"created": 0, "updated": 0, "pods": 0, "failed": 0}
        # the watched workload kinds (kube/paths.py GROUPED_OWNERS): (kind, namespace, name) -> skeleton
        self.owners: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._owner_versions = {r.kind: r.api_version for r in GROUPED_OWNERS}
        self._owner_listing: dict[str, set[tuple[str, str, str]]] = {}
        self._changed: set[str] = set()  # uids of watched owners that changed since the last pass
        self._gone: set[str] = set()  # ... and of those deleted
        # owner uid -> {PodGroup key: the member pod last grouped through it}: which gangs an owner's change
        # can change, and a pod to work each out again from
        self._uses: dict[str, dict[str, str]] = {}

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

    def owner_event(self, event: str, kind: str, payload: Any) -> None:
        """A watch event of a workload kind: LIST opens a (re)list, PAGE and SYNC carry its items (after SYNC
        what it lacked is gone), the others one object."""
        if event == "LIST":
            self._owner_listing[kind] = set()
        elif event in ("PAGE", "SYNC"):
            listing = self._owner_listing.setdefault(kind, set())
            for obj in payload:
                listing.add(self._put_owner(kind, obj, False))
            if event == "SYNC":
                for key in [k for k in self.owners if k[0] == kind and k not in listing]:
                    self._drop_owner(key)
                del self._owner_listing[kind]
        else:
            self._put_owner(kind, payload, event == "DELETED")

    def _put_owner(self, kind: str, obj: Obj, deleted: bool) -> tuple[str, str, str]:
        m = meta(obj)
        key = (kind, str(m.get("namespace") or "default"), str(m.get("name", "")))
        if deleted:
            self._drop_owner(key)
            return key
        skeleton = _owner_skeleton(self._owner_versions.get(kind, ""), kind, obj)
        if self.owners.get(key) != skeleton:
            self.owners[key] = skeleton
            self._changed.add(str(m.get("uid", "")))
        return key

    def _drop_owner(self, key: tuple[str, str, str]) -> None:
        """A watched owner is gone (deleted, or missing from a relist): its gangs are worked out again."""
        gone = self.owners.pop(key, None)
        if gone is not None:
            uid = str(meta(gone).get("uid", ""))
            self._changed.add(uid)
            self._gone.add(uid)

    def _used(self, pg_key: str, pod_key: str, chain: Chain) -> None:
        for owner in chain.owners:
            self._uses.setdefault(str(meta(owner).get("uid", "")), {})[pg_key] = pod_key

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
            # a watched owner of the version the reference names and the same uid; else (not seen yet, an
            # other version, re-created) it is read
            watched = self.owners.get((ref.kind, ref.namespace, ref.name))
            if (
                watched is not None
                and watched["apiVersion"] == ref.api_version
                and meta(watched).get("uid") in ("", ref.uid or meta(watched).get("uid"))
            ):
                return watched
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
            if result.spec.owner.kind != "Pod":  # one pod's gang (a Deployment's) follows no owner
                self._used(pg_key, key, chain)
            if result.create is not None:
                creates.setdefault(pg_key, result.create)
            if result.update is not None:
                updates.setdefault(pg_key, result.update)
            joins.append((key, pg_key, result.pod_patch))
            self.held[key] = awaiting(
                pod, f"waiting for its PodGroup {result.spec.group.name}, which the grouper is making"
            )
        # the PodGroups to work out again: those grouped through a watched owner that changed; every one of
        # ours every resync_seconds (their owners not watched)
        changed = {pg: p for uid in sorted(self._changed) for pg, p in self._uses.get(uid, {}).items()}
        for uid in self._gone:
            self._uses.pop(uid, None)
        self._changed, self._gone = set(), set()
        if time.monotonic() - self._last_resync >= self.resync_seconds:
            self._last_resync = time.monotonic()
            updates.update({k: v for k, v in self._resync(config, None).items() if k not in updates})
        elif changed:
            updates.update({k: v for k, v in self._resync(config, changed).items() if k not in updates})
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

    def _resync(self, config: GrouperConfig, scope: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
        """Merge patches for our PodGroups whose workload changed: those of `scope` (PodGroup key -> a member
        pod's key), or every one (None), worked out again from their owners."""
        members = {pg: self.pods[p] for pg, p in sorted((scope or {}).items()) if p in self.pods}
        if scope is None or len(members) < len(scope):  # every PodGroup, or one whose pod has gone (a scale-down)
            for key in sorted(self.pods):
                pod = self.pods[key]
                name = annotations_of(pod).get(POD_GROUP_ANNOTATION)
                pg = f"{key.split('/', 1)[0]}/{name}"
                if name and (scope is None or pg in scope):
                    members.setdefault(pg, pod)
        out: dict[str, dict[str, Any]] = {}
        run = _Pass()
        for pg_key in sorted(members):
            existing = self.podgroups.get(pg_key)
            if existing is None or not is_ours(existing) or _owned_by_pod(existing):
                continue  # not ours; or one pod's gang (a Deployment's): nothing of it follows a scale
            chain = walk(members[pg_key], self._lookup(run))
            if chain.missing is not None:
                continue
            self._used(pg_key, _key(members[pg_key]), chain)
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

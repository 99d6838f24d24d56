"""The real cluster: list+watch into ClusterState, gang binds through `pods/binding`, rollback.

One reflector thread per resource lists, then watches from the list's resourceVersion with bookmarks;
a 410 Gone relists; any other failure reconnects with capped exponential backoff. Events go through a
queue and are applied by the scheduling thread only (ClusterState has one writer).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from scheduler.api.pod import Pod
from scheduler.backends.base import CommitOutcome, grouper_config
from scheduler.binder.commit import GangCommitter, GangResult
from scheduler.binder.pipeline import BindPipeline
from scheduler.cache.cluster_state import ClusterState, Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.record import GangCommit
from scheduler.grouper.live import LiveGrouper
from scheduler.kube import podwire
from scheduler.kube.client import ApiError, KubeClient, decode_dict
from scheduler.kube.paths import GROUPED_OWNERS, PODS, WATCHED, ApiResource

log = logging.getLogger("kaisched.kube")
_encode = msgspec.json.Encoder().encode


WATCH_TIMEOUT_S = 240
MAX_BACKOFF_S = 10.0
# commits and binds in flight: the API server answers a bind in tens of ms, so throughput is in-flight /
# latency; at QPS 2000, 64 bound single pods 1.2x and gangs 1.4x as fast as 32 did (bench/commit.py, README)
BIND_PARALLELISM = 128
SPEC_MEMO_SIZE = 8192  # distinct pod specs remembered (a workload's replicas share one)


def _obj_key(obj: Mapping[str, Any] | podwire.PodWire) -> str:
    if isinstance(obj, podwire.PodWire):
        return obj.key
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _debug_copy(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What the debug API keeps of an object: all the cache reads, without the bulk it never does
    (managedFields, a pod's container statuses, a node's image list)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    out = {**obj, "metadata": meta}
    status = obj.get("status")
    if kind == "Pod" and isinstance(status, dict):
        out["status"] = {k: v for k, v in status.items() if k == "phase"}
    elif kind == "Node" and isinstance(status, dict):
        out["status"] = {k: v for k, v in status.items() if k != "images"}
    return out


class CollectorPause:
    """The cyclic collector is off while a list is being applied, from its first page to its last: a list
    makes a long-lived object or more per item, and the collector's passes over them find nothing to free
    (bench/ingest.py: a fifth of a relist). At the end what the lists built is frozen (`gc.freeze`, as
    `kaisched run` does after its first lists): left out of every later pass, not just this one's (the
    first pass after the pause would scan it all: 0.8 s at 100,000 pods); reference counting frees it as
    usual. A list that starts over (the last attempt broke off) ends its pause, so one that keeps failing
    never keeps the collector off for long."""

    def __init__(self) -> None:
        self.holders: set[str] = set()
        self.was_enabled = False

    def hold(self, kind: str) -> None:
        if not self.holders:
            self.was_enabled = gc.isenabled()
            gc.disable()
        self.holders.add(kind)

    def release(self, kind: str, done: bool = False) -> None:
        """`done`: the list arrived whole (frozen if it was the last one open); else it broke off."""
        if kind in self.holders:
            self.holders.discard(kind)
            if not self.holders:
                if done:
                    gc.freeze()
                if self.was_enabled:
                    gc.enable()


class Reflector(threading.Thread):
    def __init__(
        self,
        client: KubeClient,
        res: ApiResource,
        out: queue.Queue[tuple[str, str, Any]],
        stop: threading.Event,
        optional: bool = False,
    ) -> None:
        super().__init__(name=f"reflector-{res.kind}", daemon=True)
        self.client, self.res, self.out, self.stop_event = client, res, out, stop
        # optional (the grouper's owners): a kind it may not list (403) is empty, as one not installed (404)
        self.optional = optional
        self.forbidden_logged = False
        self.synced = threading.Event()
        self.relists = 0
        self.reconnects = 0
        # pods are decoded typed (kube/podwire.py): what the scheduler does not read is never built
        typed = res == PODS
        self.decode_event = podwire.decode_event if typed else decode_dict
        self.decode_list = podwire.decode_list if typed else decode_dict

    def run(self) -> None:
        backoff = 0.2
        rv = ""
        while not self.stop_event.is_set():
            try:
                if not rv:
                    rv = self._list()
                    self.relists += 1
                for event in self.client.watch(
                    self.res.collection(),
                    {"resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": WATCH_TIMEOUT_S},
                    timeout=WATCH_TIMEOUT_S + 30,
                    decode=self.decode_event,
                ):
                    if self.stop_event.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if isinstance(obj, podwire.PodWire):
                        rv = obj.resource_version or rv
                        if kind != "BOOKMARK":
                            self.out.put((str(kind), self.res.kind, obj))
                        continue
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
                if not rv and (err.status == 404 or (err.status == 403 and self.optional)):
                    # the CRD is not installed (yet), or (an owner kind) it may not be listed: the cluster has
                    # none of these for us; keep checking
                    if err.status == 403 and not self.forbidden_logged:
                        self.forbidden_logged = True
                        log.warning("not watching %s (%s): its objects are read one by one", self.res.kind, err)
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
        """List in pages; each page goes to the cache as it arrives (applied while the next is fetched):
        LIST opens a listing, PAGE carries all pages but the last, SYNC the last one and closes it."""
        self.out.put(("LIST", self.res.kind, []))
        cont = None
        while True:
            page = self.client.request(
                "GET",
                self.res.collection(),
                params={"limit": 5000, "continue": cont},
                decode=self.decode_list,
            )
            items: list[dict[str, Any] | podwire.PodWire] = page.get("items") or []
            for item in items:
                if isinstance(item, dict):
                    item.setdefault("kind", self.res.kind)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                break
            self.out.put(("PAGE", self.res.kind, items))
        self.out.put(("SYNC", self.res.kind, items))
        self.synced.set()
        return str((page.get("metadata") or {}).get("resourceVersion") or "")


class KubeBackend:
    """The real cluster: the watch-fed cache, and the gang committer that binds into it."""

    def __init__(
        self,
        client: KubeClient,
        scheduler_name: str,
        identity: str = "kaisched",
        bind_parallelism: int = BIND_PARALLELISM,
        dry_run: bool = True,
        watch_owners: bool = True,
    ) -> None:
        self.client = client
        self.state = ClusterState(scheduler_name)
        self.events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.stop_event = threading.Event()
        self.reflectors = [Reflector(client, r, self.events, self.stop_event) for r in WATCHED]
        # the workloads' objects, for the grouper only (never the cache's, never waited for: see GROUPED_OWNERS)
        self.owner_reflectors = (
            [Reflector(client, r, self.events, self.stop_event, optional=True) for r in GROUPED_OWNERS]
            if watch_owners
            else []
        )
        self.owner_kinds = frozenset(r.kind for r in GROUPED_OWNERS)
        self.known: dict[str, set[str]] = {r.kind: set() for r in WATCHED}
        self.listed: dict[str, set[str]] = {}  # kind -> keys of the list being received, page by page
        self.collector = CollectorPause()
        self.committer = GangCommitter(client, self.state, identity, bind_parallelism, dry_run)
        self.committer.drain = self.drain  # a synchronous commit keeps the cache fresh while victims leave
        self.assumed = self.committer.assumed  # pod key -> (node, when) until the watch confirms
        # the daemon's commits: beside the loop, highest priority first, results folded in at each drain
        self.pipeline: BindPipeline[GangCommit, GangResult] = BindPipeline(self.committer.commit_gang, bind_parallelism)
        self.finished_outcome = CommitOutcome()  # what the pipeline finished since `finished()` last ran
        # (kind, ns/name) -> the object as received (`_debug_copy`, as JSON), kept only when the debug API wants
        # snapshots (None: off)
        self.raw: dict[tuple[str, str], bytes] | None = None
        # pod key -> (podwire signature, the Pod the cache got from it): while the cache still holds that very
        # Pod, an event with the same signature changes nothing
        self.pods_seen: dict[str, tuple[bytes, Pod]] = {}
        # podwire spec_key -> a Pod converted from that spec: the pods of a workload (and a pod through its
        # life) share one conversion of requests, constraints and extras; bounded (emptied when full)
        self.spec_memo: dict[bytes, Pod] = {}
        # PodGroups for workloads' pods; what the API answers to its writes enters the cache at the next drain
        self.grouper = LiveGrouper(client, scheduler_name, on_object=self._written)
        self.grouping = False  # set by the first group() (configuration `grouping`)

    def start(self) -> None:
        for r in self.owner_reflectors:
            # the grouper's data on the grouper's client (`kaisched run` gives it a rate limit of its own):
            # the lists and watches of owner kinds, and every 10 s a probe of each kind not installed, never
            # take the binds' tokens (17 probes of absent CRDs took 17 of 200 every 10 s)
            r.client = self.grouper.client
        for r in (*self.reflectors, *self.owner_reflectors):
            r.start()

    def stop(self) -> None:
        """Stop watching and committing: queued commits never start (their placements are released), waits
        for victims end; binds already sent finish, and under leader election the fence refuses the writes
        of a leader that lost its lease (so a rollback it would start is left to the next leader)."""
        self.stop_event.set()
        for c in self.pipeline.abandon():
            self.committer.release(c)
        self.committer.close()
        self.grouper.close()

    def _written(self, kind: str, obj: dict[str, Any]) -> None:
        obj.setdefault("kind", kind)
        self.events.put(("MODIFIED", kind, obj))

    def synced(self) -> bool:
        """Every resource listed once (a CRD that is not installed counts as listed, empty)."""
        return all(r.synced.is_set() for r in self.reflectors)

    def wait_synced(self, timeout: float) -> bool:
        """Apply each kind's list as it arrives, while the others are still listing (no cycle runs before
        this returns, so a partial cache is never scheduled on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            synced = self.synced()
            self.drain()
            if synced:
                return True
            time.sleep(0.01)
        return False

    # --- ClusterBackend ------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        snap = self.state.snapshot()
        held = self.grouper.waiting() if self.grouping else {}
        return dataclasses.replace(snap, held=held) if held else snap

    def group(self, config: SchedulerConfig) -> None:
        """Make the PodGroups of pods waiting for one (grouper/live.py), then take what was written into
        the cache, so this cycle already schedules the gangs."""
        self.grouping = True  # from now on pods the grouper has not seen yet are held in snapshots
        self.grouper.resync_seconds = config.grouping_resync_seconds
        if self.grouper.run(grouper_config(config, self.known["PriorityClass"])):
            self.drain()

    def recover(self, snapshot: Snapshot) -> list[str]:
        """Finish or undo commits a previous run left half done (their intent records), and return gangs
        bound to nodes that have gone to Pending (binder.GangCommitter.recover)."""
        return self.committer.recover(snapshot, self.pipeline.busy())

    def commit(self, commits: Sequence[GangCommit]) -> CommitOutcome:
        """Commit and wait (binder.GangCommitter.commit): a gang that takes room back evicts its victims
        first (plan recorded on its intent), its binds wait until the victims have left their nodes in this
        cache (drained meanwhile), and then it binds whole. The daemon uses `submit` instead."""
        return self.committer.commit(commits) if commits else CommitOutcome()

    def submit(self, commits: Sequence[GangCommit]) -> None:
        """Assume every placement in the cache now and queue each gang's commit to the bind pipeline, by
        gang priority (the highest of its members'). A gang already in the pipeline is not queued twice
        (its placement is the one in flight)."""
        busy = self.pipeline.busy()
        fresh = [c for c in commits if c.job not in busy]
        self.committer.assume(fresh)
        for c in fresh:
            if not self.pipeline.submit(c.job, c, self.committer.gang_priority(c)):
                self.committer.release(c)  # stopping: never queued

    def finished(self) -> CommitOutcome:
        """The commits the pipeline finished since the last call (folded into the cache by `drain`)."""
        self._settle()
        out, self.finished_outcome = self.finished_outcome, CommitOutcome()
        return out

    def _settle(self) -> None:
        for c, res in self.pipeline.take():
            self.committer.settle(self.finished_outcome, c, res)

    def drain(self) -> int:
        """Apply every queued watch event to the cache, then the pipeline's finished commits (a gang that
        did not bind gives its placement back before the next session); returns how many events."""
        n = 0
        while True:
            try:
                kind, res, payload = self.events.get_nowait()
            except queue.Empty:
                self._settle()
                return n
            n += 1
            if res in self.owner_kinds:
                self.grouper.owner_event(kind, res, payload)
            elif kind == "LIST":
                self.listed[res] = set()
                self.collector.release(res)  # a list that starts over: the last attempt broke off
            elif kind in ("PAGE", "SYNC"):
                self.collector.hold(res)
                self._page(res, payload, done=kind == "SYNC")
                if kind == "SYNC":
                    self.collector.release(res, done=True)
            else:
                self._apply(res, payload, kind == "DELETED")

    def _page(self, res: str, payload: list[Any], done: bool) -> None:
        """A page of a list of one kind, applied (unchanged pods skipped); after its last page, what the
        list lacked is gone."""
        listed = self.listed.setdefault(res, set())
        for obj in payload:
            listed.add(_obj_key(obj))
            self._apply(res, obj, False)
        if not done:
            return
        for gone in self.known[res] - listed:
            ns, _, name = gone.rpartition("/")
            if res == "Pod":
                self.pods_seen.pop(gone, None)
            if self.raw is not None:
                self.raw.pop((res, gone), None)
            self.state.apply_object({"kind": res, "metadata": {"name": name, "namespace": ns or None}}, deleted=True)
        self.known[res] = listed
        del self.listed[res]

    def _apply(self, res: str, obj: dict[str, Any] | podwire.PodWire, deleted: bool) -> None:
        if isinstance(obj, podwire.PodWire):
            self._apply_pod(obj, deleted)
        else:
            self._apply_dict(res, obj, deleted)

    def _apply_pod(self, wire: podwire.PodWire, deleted: bool) -> None:
        """A typed pod: skipped when it carries nothing new for the scheduler (status heartbeats, probes,
        container restarts...) and nothing else changed the cached pod since its last event; converted
        reusing the requests, constraints and extras of a pod with the same spec (`spec_memo`)."""
        key = wire.key
        if deleted:  # only its key is read
            self.pods_seen.pop(key, None)
            self._apply_dict("Pod", wire.to_dict(slim_spec=True), True, key=key)
            return
        whole = wire.signature()
        seen = self.pods_seen.get(key)
        if seen is not None and seen[0] == whole and self.state.pod(key) is seen[1]:
            return
        spec_key = wire.spec_key()
        same_spec = self.spec_memo.get(spec_key) if spec_key is not None else None
        # a reused conversion needs only the spec's head; the debug API's copy is made of the received
        # slices, but for an event older than our bind, shown with the assumed node (made from the dict)
        debug = None
        if self.raw is not None and (key not in self.assumed or wire.node()):
            debug = wire.debug_json()
        slim = same_spec is not None and (self.raw is None or debug is not None)
        self._apply_dict("Pod", wire.to_dict(slim_spec=slim), False, same_spec, key, debug)
        pod = self.state.pod(key)
        if pod is not None:
            self.pods_seen[key] = (whole, pod)
            if same_spec is None and spec_key is not None:
                if len(self.spec_memo) >= SPEC_MEMO_SIZE:
                    self.spec_memo.clear()
                self.spec_memo[spec_key] = pod

    def _apply_dict(
        self,
        res: str,
        obj: dict[str, Any],
        deleted: bool,
        same_spec: Pod | None = None,
        key: str = "",
        debug: bytes | None = None,
    ) -> None:
        """`debug`: the debug API's copy, made already (else made of `obj`)."""
        key = key or _obj_key(obj)
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
        if res in ("Pod", "PodGroup"):
            self.grouper.observe(res, obj, deleted)
        if self.raw is not None:
            if deleted:
                self.raw.pop((res, key), None)
            else:
                self.raw[(res, key)] = debug if debug is not None else _encode(_debug_copy(res, obj))
        self.state.apply_object(obj, deleted=deleted, same_spec=same_spec)
        if res == "Pod" and key in self.committer.evicting:
            # a victim whose eviction is in flight stays leaving until the watch shows it so (or another pod)
            pod = self.state.pod(key)
            if deleted or pod is None or pod.deleting or pod.uid != self.committer.evicting[key]:
                self.committer.evicting.pop(key, None)
            else:
                self.state.upsert_pod(dataclasses.replace(pod, deleting=True))

"""Atomic gang commit: every member bound, or none.

Per gang: (1) an intent record (the plan: pod -> node, a commit id) is written on the PodGroup, so a
restarted scheduler can finish or undo the commit; (2) every binding is validated with a server-side dry
run; (3) members are bound concurrently (bounded by the pool); (4) if any member fails, the members that
did bind are rolled back (owned pods deleted for their controller to recreate, unowned pods re-created
from their own spec without the node), and the intent is cleared. Gangs of one need none of this: one
bind is atomic by itself.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scheduler.api.resources import Resources
from scheduler.binder.crash import crashpoint
from scheduler.cache.cluster_state import ClusterState, Snapshot
from scheduler.kube.client import ApiError, KubeClient
from scheduler.kube.paths import NODES, POD_GROUPS, PODS

log = logging.getLogger("kaisched.binder")
INTENT_ANNOTATION = "kai.scheduler/commit-intent"


@dataclass(frozen=True, slots=True)
class Undo:
    """One member a rollback returns to Pending: the pod object it must delete (uid) and, for a pod no
    controller owns, what to create again (base64 zlib JSON: a pod spec can be large)."""

    pod: str
    uid: str
    recreate: str = ""

    def body(self) -> dict[str, Any] | None:
        if not self.recreate:
            return None
        data: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(self.recreate)))
        return data

    @staticmethod
    def of(pod: str, uid: str, body: dict[str, Any] | None) -> Undo:
        packed = base64.b64encode(zlib.compress(json.dumps(body, sort_keys=True).encode())).decode() if body else ""
        return Undo(pod, uid, packed)


@dataclass(frozen=True, slots=True)
class Intent:
    """What a commit is doing, on the PodGroup, so whoever holds the lease next can finish or undo it.
    Once a rollback starts, `undo` lists every member it returns to Pending, written before the first
    delete: a crash at any point leaves enough to re-create what was deleted."""

    commit_id: str
    gang: str
    bindings: tuple[tuple[str, str], ...]
    holder: str
    uids: tuple[tuple[str, str], ...] = ()  # pod key -> uid of the pod object the plan binds
    undo: tuple[Undo, ...] = ()

    def to_json(self) -> str:
        data: dict[str, Any] = {"id": self.commit_id, "holder": self.holder, "bindings": dict(self.bindings)}
        if self.uids:
            data["uids"] = dict(self.uids)
        if self.undo:
            data["rollback"] = {u.pod: {"uid": u.uid, "recreate": u.recreate} for u in self.undo}
        return json.dumps(data, sort_keys=True)

    @staticmethod
    def parse(gang: str, text: str) -> Intent | None:
        try:
            data = json.loads(text)
            bindings = tuple(sorted((str(k), str(v)) for k, v in dict(data["bindings"]).items()))
            uids = tuple(sorted((str(k), str(v)) for k, v in dict(data.get("uids") or {}).items()))
            undo = tuple(
                Undo(str(k), str(v.get("uid", "")), str(v.get("recreate") or ""))
                for k, v in sorted(dict(data.get("rollback") or {}).items())
            )
            return Intent(str(data["id"]), gang, bindings, str(data.get("holder", "")), uids, undo)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(slots=True)
class CommitOutcome:
    """What a commit did, per gang (the result type of every ClusterBackend.commit)."""

    bound: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # gang -> bindings that stand
    errors: dict[str, str] = field(default_factory=dict)  # gang -> why it did not bind (after rollback)
    rolled_back: dict[str, int] = field(default_factory=dict)  # gang -> members returned to Pending
    evicted: dict[str, list[str]] = field(default_factory=dict)  # gang -> its victims (pod keys), evicted


class GangCommitter:
    def __init__(
        self, client: KubeClient, state: ClusterState, identity: str, parallelism: int = 32, dry_run: bool = True
    ) -> None:
        self.client = client
        self.state = state
        self.identity = identity
        self.dry_run = dry_run
        self.pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="bind")
        # gang pipelines wait on member calls in `pool`; a separate pool so they can never starve it
        self.gang_pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="gang")
        self.assumed: dict[str, tuple[str, float]] = {}  # pod key -> (node, when) until the watch confirms
        self.lease_holder: Callable[[], str] = lambda: ""  # who holds the lease now (set under leader election)

    def close(self) -> None:
        self.gang_pool.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- API calls ----------------------------------------------------------------------------
    def _bind(self, pod_key: str, node: str, dry: bool) -> None:
        ns, name = pod_key.split("/", 1)
        pod = self.state.pod(pod_key)
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if pod is not None and pod.uid:
            meta["uid"] = pod.uid  # a recreated pod of the same name must not receive this decision
        body = {
            "apiVersion": PODS.api_version,
            "kind": "Binding",
            "metadata": meta,
            "target": {"apiVersion": NODES.api_version, "kind": NODES.kind, "name": node},
        }
        self.client.request(
            "POST",
            PODS.item(name, ns, "binding"),
            params={"dryRun": "All"} if dry else None,
            body=body,
        )

    def _set_intent(self, gang: str, intent: Intent | None) -> None:
        value = intent.to_json() if intent is not None else None
        self.client.request(
            "PATCH",
            POD_GROUPS.of_key(gang),
            body={"metadata": {"annotations": {INTENT_ANNOTATION: value}}},
            content_type="application/merge-patch+json",
        )

    def _run(self, calls: list[tuple[str, str, str, bool]]) -> dict[tuple[str, str], str]:
        """(gang, pod, node, dry) calls in parallel; returns (gang, pod) -> error for the failed ones."""
        futures: list[tuple[str, str, Future[None]]] = [
            (gang, pod, self.pool.submit(self._bind, pod, node, dry)) for gang, pod, node, dry in calls
        ]
        errors: dict[tuple[str, str], str] = {}
        for gang, pod, fut in futures:
            try:
                fut.result()
            except Exception as err:
                errors[(gang, pod)] = str(err)
        return errors

    # --- commit -------------------------------------------------------------------------------
    def commit(self, gangs: list[tuple[str, list[tuple[str, str]], bool]]) -> CommitOutcome:
        """gangs: (key, bindings, has_podgroup). Each gang runs its own pipeline (intent, dry run, binds,
        clear), all gangs at once, so the first binds land at once instead of after every gang's validation."""
        out = CommitOutcome()
        futures = [(g, b, self.gang_pool.submit(self._commit_one, g, b, has_pg)) for g, b, has_pg in gangs]
        now = time.monotonic()
        for gang, bindings, fut in futures:
            try:
                error, returned = fut.result()
            except Exception as err:  # a bug in the pipeline must not lose the others' outcomes
                error, returned = f"commit failed: {err}", []
            if error is None:
                out.bound[gang] = bindings
                self._assume(bindings, now)
            else:
                out.errors[gang] = error
                if returned:
                    out.rolled_back[gang] = len(returned)
                self._unassume(returned)
        return out

    def _commit_one(
        self, gang: str, bindings: list[tuple[str, str]], has_pg: bool
    ) -> tuple[str | None, list[tuple[str, str]]]:
        """(error or None, members rolled back). API calls only: the cache is updated by the caller."""
        intent = None
        if has_pg and len(bindings) > 1:
            uids = tuple((p, pod.uid) for p, _ in bindings if (pod := self.state.pod(p)) is not None and pod.uid)
            intent = Intent(uuid.uuid4().hex, gang, tuple(bindings), self.identity, uids)
            try:
                self._set_intent(gang, intent)
            except ApiError as err:
                return f"could not record the commit intent on the PodGroup: {err}", []
            if self.dry_run:
                refused = self._run([(gang, p, n, True) for p, n in bindings])
                if refused:
                    first = min((p, e) for (_, p), e in refused.items())
                    self._clear_intent(gang, intent)
                    return f"validation (dry run) refused {first[0]}: {first[1]}; nothing was bound", []
        failed = self._run([(gang, p, n, False) for p, n in bindings])
        if not failed:
            self._clear_intent(gang, intent)
            return None, []
        errs = {p: e for (_, p), e in failed.items()}
        done = [(p, n) for p, n in bindings if p not in errs]
        first = min(errs.items())
        what = f"{len(errs)}/{len(bindings)} binds failed (first: {first[0]}: {first[1]})"
        try:
            self._return_to_pending(gang, intent, done)
        except ApiError as err:  # fenced, or the API away: the intent stays for whoever recovers
            return f"{what}; rollback left to recovery: {err}", []
        return f"{what}; rolled back {len(done)} bound members", done

    def _assume(self, bindings: list[tuple[str, str]], now: float) -> None:
        """The cache holds the pods on their nodes at once: the next cycle never double-books a node
        while the watch catches up."""
        for pod_key, node in bindings:
            self.assumed[pod_key] = (node, now)
            pod = self.state.pod(pod_key)
            if pod is not None:
                self.state.upsert_pod(dataclasses.replace(pod, node_name=node))

    def _clear_intent(self, gang: str, intent: Intent | None) -> None:
        if intent is None:
            return
        try:
            self._set_intent(gang, None)
        except ApiError as err:  # left for recovery, which will find the gang complete or roll it back
            log.warning("intent on %s not cleared: %s", gang, err)

    # --- rollback -----------------------------------------------------------------------------
    def rollback(self, gang: str, bound: list[tuple[str, str]], intent: Intent | None = None) -> None:
        """Return bound members to Pending, in the API (durably) and in the cache."""
        self._return_to_pending(gang, intent, bound)
        self._unassume(bound)

    def _unassume(self, returned: list[tuple[str, str]]) -> None:
        for pod_key, _node in returned:
            self.assumed.pop(pod_key, None)
            pod = self.state.pod(pod_key)
            if pod is not None and pod.node_name:
                self.state.upsert_pod(dataclasses.replace(pod, node_name=""))

    def _return_to_pending(self, gang: str, intent: Intent | None, bound: list[tuple[str, str]]) -> None:
        """Durable rollback. First the intent on the PodGroup records, for every member still bound where
        the plan put it, the pod object to delete (uid) and, for a pod no controller owns, its spec to
        create again; only then is anything deleted. Deletes carry preconditions (uid and the
        resourceVersion just read), so they never touch a pod someone else created or changed since.
        Whoever recovers resumes from the record (`_resume`), at any crash point."""
        uids = dict(intent.uids) if intent is not None else {}
        undo: list[Undo] = []
        for pod_key, node in bound:
            try:
                obj = self.client.request("GET", PODS.of_key(pod_key))
            except ApiError as err:
                if err.status == 404:
                    continue  # already gone: its controller (or its owner) has it
                raise
            meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
            uid = str(meta.get("uid") or "")
            if spec.get("nodeName") != node or (pod_key in uids and uids[pod_key] != uid):
                log.warning(
                    "rollback of %s: %s is not the pod this commit bound to %s; left alone", gang, pod_key, node
                )
                continue
            owned = any(o.get("controller") for o in meta.get("ownerReferences") or [])
            undo.append(Undo.of(pod_key, uid, None if owned else pending_copy(obj)))
        if not undo:
            self._clear_intent(gang, intent)
            return
        record = Intent(
            intent.commit_id if intent is not None else uuid.uuid4().hex,
            gang,
            intent.bindings if intent is not None else tuple(bound),
            self.identity,
            intent.uids if intent is not None else (),
            tuple(undo),
        )
        self._set_intent(gang, record)  # raises (fenced, API away): then nothing was deleted
        crashpoint("rollback:before-delete")
        self._resume(record)

    def _resume(self, intent: Intent) -> bool:
        """Carry a recorded rollback through: delete each member that is still the recorded pod object,
        create again what no controller will, clear the intent. Idempotent; False when a re-create must
        wait for the old object to finish terminating (the intent stays for the next cycle)."""
        done = True
        for u in intent.undo:
            path = PODS.of_key(u.pod)
            try:
                obj: dict[str, Any] | None = self.client.request("GET", path)
            except ApiError as err:
                if err.status != 404:
                    raise
                obj = None
            if obj is not None and str((obj.get("metadata") or {}).get("uid") or "") == u.uid:
                self._delete_exact(path, u.uid, obj)
                crashpoint("rollback:after-delete")
                obj = None
            if obj is None and u.recreate:
                body = u.body()
                assert body is not None
                if not self._recreate(body):
                    done = False
                    continue
                crashpoint("rollback:after-recreate")
        if done:
            crashpoint("rollback:before-clear")
            self._clear_intent(intent.gang, intent)
        return done

    def _delete_exact(self, path: str, uid: str, obj: Mapping[str, Any]) -> None:
        """Delete the pod only if it is still the object we read (uid and resourceVersion)."""
        for _ in range(5):
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid, "resourceVersion": rv}}
            try:
                self.client.request("DELETE", path, body=body)
                return
            except ApiError as err:
                if err.status == 404:
                    return
                if err.status != 409:
                    raise
            obj = self.client.request("GET", path)  # changed since (a status update): read it again
            if str((obj.get("metadata") or {}).get("uid") or "") != uid:
                return  # another pod of that name now: not ours to delete
        raise ApiError(409, "Conflict", {"message": f"{path} kept changing; not deleted"})

    def _recreate(self, body: dict[str, Any]) -> bool:
        """Create the pod again; False while the old object of that name is still terminating."""
        ns = body["metadata"].get("namespace") or "default"
        for attempt in range(20):
            try:
                self.client.request("POST", PODS.collection(ns), body=body)
                return True
            except ApiError as err:
                if err.status != 409:
                    raise
                if attempt == 19:
                    return False
                time.sleep(0.1)
        return False

    # --- recovery -----------------------------------------------------------------------------
    def recover(self, snapshot: Snapshot) -> list[str]:
        """Finish or undo every commit a previous run left half done, and return to Pending every gang
        whose not-yet-running members were bound to a node that has since gone. One line per gang."""
        actions: list[str] = self._orphans(snapshot)
        for key, pg in sorted(snapshot.pod_groups.items()):
            text = pg.annotation(INTENT_ANNOTATION)
            if not text:
                continue
            intent = Intent.parse(key, text)
            if intent is None:
                self._clear_intent(key, Intent("", key, (), ""))
                actions.append(f"{key}: unreadable commit intent cleared")
                continue
            if intent.holder and intent.holder != self.identity and intent.holder == self.lease_holder():
                continue  # its writer still holds the lease: it is not ours to finish
            try:
                actions.append(self._recover_one(snapshot, intent))
            except ApiError as err:
                actions.append(f"{key}: recovery of commit {intent.commit_id[:8]} deferred: {err}")
        return actions

    def _orphans(self, snapshot: Snapshot) -> list[str]:
        actions = []
        for key, members in sorted(snapshot.members.items()):
            lost = [p for p in members if p.node_name and p.node_name not in snapshot.nodes and p.phase == "Pending"]
            if not lost:
                continue
            # all-or-nothing holds for the whole gang: every member not yet running goes back to Pending
            back = [(p.key, p.node_name) for p in members if p.node_name and p.phase == "Pending"]
            self.rollback(key, back)
            actions.append(
                f"{key}: node {lost[0].node_name} is gone; {len(back)} bound, not yet running members returned"
            )
        return actions

    def _recover_one(self, snapshot: Snapshot, intent: Intent) -> str:
        if intent.undo:  # a rollback was under way: carry it through from the record
            if self._resume(intent):
                self._unassume([(u.pod, "") for u in intent.undo])
                return (
                    f"{intent.gang}: rollback of commit {intent.commit_id[:8]} completed ({len(intent.undo)} members)"
                )
            return f"{intent.gang}: rollback of commit {intent.commit_id[:8]} waits for a pod to finish terminating"
        members = {p.key: p for p in snapshot.members.get(intent.gang, ())}
        as_planned = [(p, n) for p, n in intent.bindings if p in members and members[p].node_name == n]
        missing = [(p, n) for p, n in intent.bindings if p not in members or not members[p].node_name]
        moved = [p for p, n in intent.bindings if p in members and members[p].node_name not in ("", n)]
        if not missing and not moved:
            self._clear_intent(intent.gang, intent)
            return f"{intent.gang}: commit {intent.commit_id[:8]} had completed; intent cleared"
        if not moved and self._feasible(snapshot, missing, members):
            failed = self._run([(intent.gang, p, n, False) for p, n in missing])
            if not failed:
                self._assume(missing, time.monotonic())
                self._clear_intent(intent.gang, intent)
                return f"{intent.gang}: commit {intent.commit_id[:8]} completed ({len(missing)} members bound)"
            done = [(p, n) for p, n in missing if (intent.gang, p) not in failed]
            as_planned += done
        self.rollback(intent.gang, as_planned, intent)
        return f"{intent.gang}: commit {intent.commit_id[:8]} rolled back ({len(as_planned)} members returned)"

    @staticmethod
    def _feasible(snapshot: Snapshot, missing: list[tuple[str, str]], members: Mapping[str, Any]) -> bool:
        """Every missing member still exists, pending, and its planned node still has room for it."""
        need: dict[str, Resources] = {}
        for pod_key, node in missing:
            pod = members.get(pod_key)
            if pod is None or pod.deleting or node not in snapshot.nodes:
                return False
            need[node] = need.get(node, Resources()) + pod.request
        for node, req in need.items():
            used = snapshot.node_used.get(node, Resources())
            if not (req + used).fits_in(snapshot.nodes[node].allocatable):
                return False
        return True


def pending_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The same pod (name, labels, annotations, spec), unbound, ready to be created again."""
    meta = obj.get("metadata") or {}
    spec = dict(obj.get("spec") or {})
    spec.pop("nodeName", None)
    keep = ("name", "namespace", "labels", "annotations", "ownerReferences", "finalizers")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {k: meta[k] for k in keep if k in meta}, "spec": spec}

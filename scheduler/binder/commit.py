"""Atomic gang commit: every member bound, or none.

Per gang: (1) an intent record (the plan: pod -> node, a commit id) is written on the PodGroup, so a
restarted scheduler can finish or undo the commit; (2) every binding is validated with a server-side dry
run; (3) members are bound concurrently (bounded by the pool); (4) if any member fails, the members that
did bind are rolled back (owned pods deleted for their controller to recreate, unowned pods re-created
from their own spec without the node), and the intent is cleared. Gangs of one need none of this: one
bind is atomic by itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scheduler.api.resources import Resources
from scheduler.cache.cluster_state import ClusterState, Snapshot
from scheduler.kube.client import ApiError, KubeClient
from scheduler.kube.paths import NODES, POD_GROUPS, PODS

log = logging.getLogger("kaisched.binder")
INTENT_ANNOTATION = "kai.scheduler/commit-intent"


@dataclass(frozen=True, slots=True)
class Intent:
    commit_id: str
    gang: str
    bindings: tuple[tuple[str, str], ...]
    holder: str

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.commit_id, "holder": self.holder, "bindings": dict(self.bindings)}, sort_keys=True
        )

    @staticmethod
    def parse(gang: str, text: str) -> Intent | None:
        try:
            data = json.loads(text)
            bindings = tuple(sorted((str(k), str(v)) for k, v in dict(data["bindings"]).items()))
            return Intent(str(data["id"]), gang, bindings, str(data.get("holder", "")))
        except (ValueError, KeyError, TypeError):
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
            intent = Intent(uuid.uuid4().hex, gang, tuple(bindings), self.identity)
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
        error = None
        done: list[tuple[str, str]] = []
        if failed:
            errs = {p: e for (_, p), e in failed.items()}
            done = [(p, n) for p, n in bindings if p not in errs]
            self._rollback_api(gang, done)
            first = min(errs.items())
            error = (
                f"{len(errs)}/{len(bindings)} binds failed (first: {first[0]}: {first[1]}); "
                f"rolled back {len(done)} bound members"
            )
        self._clear_intent(gang, intent)
        return error, done

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
    def rollback(self, gang: str, bound: list[tuple[str, str]]) -> None:
        """Return bound members to Pending, in the API and in the cache."""
        self._rollback_api(gang, bound)
        self._unassume(bound)

    def _unassume(self, returned: list[tuple[str, str]]) -> None:
        for pod_key, _node in returned:
            self.assumed.pop(pod_key, None)
            pod = self.state.pod(pod_key)
            if pod is not None and pod.node_name:
                self.state.upsert_pod(dataclasses.replace(pod, node_name=""))

    def _rollback_api(self, gang: str, bound: list[tuple[str, str]]) -> None:
        """Delete owned pods (their controller recreates them); re-create pods without an owner from their
        own spec, minus the node."""
        for pod_key, _node in bound:
            path = PODS.of_key(pod_key)
            try:
                obj = self.client.request("GET", path)
                self.client.request("DELETE", path, body={"gracePeriodSeconds": 0})
                owners = (obj.get("metadata") or {}).get("ownerReferences") or []
                if not any(o.get("controller") for o in owners):
                    self._recreate(pending_copy(obj))
            except ApiError as err:
                if err.status != 404:
                    log.error("rollback of %s member %s failed: %s", gang, pod_key, err)

    def _recreate(self, body: dict[str, Any]) -> None:
        ns = body["metadata"].get("namespace") or "default"
        for attempt in range(20):  # the old object may still be finalizing
            try:
                self.client.request("POST", PODS.collection(ns), body=body)
                return
            except ApiError as err:
                if err.status != 409 or attempt == 19:
                    raise
                time.sleep(0.1)

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
            actions.append(self._recover_one(snapshot, intent))
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
        self.rollback(intent.gang, as_planned)
        self._clear_intent(intent.gang, intent)
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

"""Writing decisions back: PodGroup conditions and resourcesStatus, Queue status, events.

Everything here reads the cycle's SessionRecord; nothing recomputes a reason. Writes happen only when
what would be written changed since the last write, so a waiting gang costs no API calls per cycle.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from scheduler.api.labels import STALE_SINCE_ANNOTATION
from scheduler.api.resources import CPU, GPU, MEMORY, Resources
from scheduler.api.times import format_timestamp
from scheduler.cache.cluster_state import Snapshot
from scheduler.framework.record import SessionRecord
from scheduler.kube.client import ApiError, KubeClient
from scheduler.kube.paths import EVENTS, POD_GROUPS, PODS, QUEUES

log = logging.getLogger("kaisched.status")
CONDITION_TYPE = "UnschedulableOnNodePool"
NODE_POOL = "default"
MAX_POD_EVENTS = 20  # per gang and reason: enough to find, not a flood


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resource_list(res: Resources) -> dict[str, str]:
    """A Kubernetes ResourceList (quantities), as KAI's Queue status holds."""
    return {"cpu": f"{res.get(CPU)}m", "memory": str(res.get(MEMORY)), GPU: str(res.get(GPU))}


class StatusWriter:
    """Writes off the scheduling thread: events through a small pool, status patches through one ordered
    worker (a condition set and then cleared must land in that order). Dedupe state is updated at once."""

    def __init__(self, client: KubeClient, component: str, instance: str) -> None:
        self.client = client
        self.events_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="events")
        self.status_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status")
        self.component = component
        self.instance = instance
        self.written_conditions: dict[str, tuple[str, str]] = {}  # PodGroup key -> (reason, message)
        self.written_queues: dict[str, dict[str, Any]] = {}
        self.written_resources: dict[str, dict[str, Any]] = {}
        self.evented: dict[str, tuple[str, str]] = {}  # object key -> last (reason, message) evented

    # --- events -------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> None:
        """Wait for queued writes (tests, shutdown)."""
        for pool in (self.status_pool, self.events_pool):
            pool.submit(lambda: None).result(timeout=timeout)

    def close(self) -> None:
        self.events_pool.shutdown(wait=False, cancel_futures=True)
        self.status_pool.shutdown(wait=False, cancel_futures=True)

    def event(
        self, regarding: Mapping[str, str], reason: str, note: str, type_: str = "Normal", action: str = "Scheduling"
    ) -> None:
        self.events_pool.submit(self._post_event, dict(regarding), reason, note, type_, action)

    def _post_event(self, regarding: Mapping[str, str], reason: str, note: str, type_: str, action: str) -> None:
        ns = regarding.get("namespace") or "default"
        body = {
            "apiVersion": EVENTS.api_version,
            "kind": EVENTS.kind,
            "metadata": {"name": f"{regarding['name']}.{uuid.uuid4().hex[:12]}", "namespace": ns},
            "eventTime": _micro_now(),
            "reportingController": self.component,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "note": note[:1024],
            "type": type_,
            "regarding": dict(regarding),
        }
        try:
            self.client.request("POST", EVENTS.collection(ns), body=body)
        except ApiError as err:
            log.warning("event %s on %s/%s not written: %s", reason, ns, regarding.get("name"), err)

    @staticmethod
    def _ref(api_version: str, kind: str, key: str, uid: str) -> dict[str, str]:
        ns, name = key.split("/", 1)
        ref = {"apiVersion": api_version, "kind": kind, "namespace": ns, "name": name}
        if uid:
            ref["uid"] = uid
        return ref

    @classmethod
    def pod_ref(cls, key: str, uid: str = "") -> dict[str, str]:
        return cls._ref(PODS.api_version, PODS.kind, key, uid)

    @classmethod
    def podgroup_ref(cls, key: str, uid: str = "") -> dict[str, str]:
        return cls._ref(POD_GROUPS.api_version, POD_GROUPS.kind, key, uid)

    # --- per cycle ----------------------------------------------------------------------------
    def write(
        self,
        snapshot: Snapshot,
        record: SessionRecord,
        failed_binds: Mapping[str, str],
        bound: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        """This cycle's decisions (why a gang waits) and the commits that ended since the last cycle: gangs
        bound (`Scheduled`, as kube-scheduler says it after the bind, not the decision) and failed binds.
        `bound` None: every placed decision counts as bound (a backend whose commit never fails)."""
        self._forget_gone(snapshot, record)
        if bound is None:
            bound = {k: d.pods for k, d in record.decisions.items() if d.placed and k not in failed_binds}
        for key, decision in sorted(record.decisions.items()):
            if not decision.placed and key not in failed_binds and key not in bound:
                self._unschedulable(snapshot, key, str(decision.reason), decision.message, key in snapshot.pod_groups)
        for key, pods in sorted(bound.items()):
            for pod, node in pods:
                p = snapshot.bound_pods.get(pod) or snapshot.pending.get(pod)
                self.event(
                    self.pod_ref(pod, p.uid if p else ""),
                    "Scheduled",
                    f"Successfully assigned {pod} to {node} (gang {key})",
                )
            if key in snapshot.pod_groups:
                self._clear_condition(key)
                self._resources_status(snapshot, record, key, tuple(pods))
            self.evented.pop(key, None)
        for key, message in sorted(failed_binds.items()):
            has_pg = key in snapshot.pod_groups
            pods = tuple((p.key, p.node_name) for p in snapshot.members.get(key, ())) if has_pg else ((key, ""),)
            self._failed_binding(snapshot, key, pods, message, has_pg)
        for key, since in sorted(record.stale.items()):
            if key in snapshot.pod_groups:
                self.status_pool.submit(self._patch_stale, key, since)
        self._queues(record)

    def _patch_stale(self, key: str, since: float | None) -> None:
        """Persist (or clear) when the gang was first seen below minMember, so a restart keeps counting."""
        value = format_timestamp(since, precise=True) if since is not None else None
        try:
            self.client.request(
                "PATCH",
                POD_GROUPS.of_key(key),
                body={"metadata": {"annotations": {STALE_SINCE_ANNOTATION: value}}},
                content_type="application/merge-patch+json",
            )
        except ApiError as err:
            log.warning("stale-gang mark of PodGroup %s not written: %s", key, err)

    def _forget_gone(self, snapshot: Snapshot, record: SessionRecord) -> None:
        """What was written for gangs and queues that no longer exist need not be remembered (a long-running
        daemon must not grow without bound); a gang still decided on keeps its entry, so nothing repeats."""
        for table in (self.written_conditions, self.written_resources, self.evented):
            gone = [
                k
                for k in table
                if k not in snapshot.pod_groups and k not in snapshot.pending and k not in record.decisions
            ]
            for k in gone:
                del table[k]
        for name in [q for q in self.written_queues if q not in record.queues]:
            del self.written_queues[name]

    def _failed_binding(
        self, snapshot: Snapshot, key: str, pods: tuple[tuple[str, str], ...], message: str, has_pg: bool
    ) -> None:
        """FailedBinding events on the gang's pods (and PodGroup), and the condition says why it waits."""
        for pod, _node in pods[:MAX_POD_EVENTS]:
            p = snapshot.pending.get(pod)
            self.event(self.pod_ref(pod, p.uid if p else ""), "FailedBinding", message, "Warning", "Binding")
        if has_pg:
            pg = snapshot.pod_groups[key]
            self.event(self.podgroup_ref(key, pg.uid), "FailedBinding", message, "Warning", "Binding")
        self.evented[key] = ("FailedBinding", message)
        self._set_condition(key, "FailedBinding", message, has_pg)

    def _resources_status(
        self, snapshot: Snapshot, record: SessionRecord, key: str, placed: tuple[tuple[str, str], ...]
    ) -> None:
        """resourcesStatus of a PodGroup: what its pods hold (bound, plus bound now) and request in all."""
        now_bound = {pod for pod, _ in placed}
        allocated = requested = Resources()
        for pod in snapshot.members.get(key, ()):
            requested = requested + pod.request
            if pod.bound or pod.key in now_bound:
                allocated = allocated + pod.request
        facts = record.jobs.get(key)  # preemptibility as the session resolved it, never recomputed here
        non_preemptible = facts is not None and not facts.preemptible
        status = {
            "allocated": resource_list(allocated),
            "allocatedNonPreemptible": resource_list(allocated if non_preemptible else Resources()),
            "requested": resource_list(requested),
        }
        if self.written_resources.get(key) != status:
            self.written_resources[key] = status
            self.status_pool.submit(self._patch_pg_status, key, {"resourcesStatus": status})

    def _unschedulable(self, snapshot: Snapshot, key: str, reason: str, message: str, has_pg: bool) -> None:
        if self.evented.get(key) != (reason, message):
            if has_pg:
                pg = snapshot.pod_groups[key]
                self.event(self.podgroup_ref(key, pg.uid), "Unschedulable", f"{reason}: {message}", "Warning")
                members = snapshot.members.get(key, ())
                for pod in members[:1]:  # one pod carries it too, for `kubectl describe pod`
                    if not pod.bound:
                        self.event(self.pod_ref(pod.key, pod.uid), "Unschedulable", f"{reason}: {message}", "Warning")
            else:
                # a gang of one, or pods naming a PodGroup that does not exist: tell the pods themselves
                lone = snapshot.pending.get(key)
                pods = [lone] if lone is not None else [p for p in snapshot.members.get(key, ()) if not p.bound]
                for pod in pods[:MAX_POD_EVENTS]:
                    self.event(self.pod_ref(pod.key, pod.uid), "Unschedulable", f"{reason}: {message}", "Warning")
            self.evented[key] = (reason, message)
        self._set_condition(key, reason, message, has_pg)

    def _set_condition(self, key: str, reason: str, message: str, has_pg: bool) -> None:
        if has_pg and self.written_conditions.get(key) != (reason, message):
            cond = {
                "type": CONDITION_TYPE,
                "nodePool": NODE_POOL,
                "reason": reason,
                "message": message,
                "reasons": [{"reason": reason, "message": message}],
                "status": "True",
                "lastTransitionTime": _now(),
            }
            self.written_conditions[key] = (reason, message)
            self.status_pool.submit(self._patch_pg_status, key, {"schedulingConditions": [cond]})

    def _clear_condition(self, key: str) -> None:
        if self.written_conditions.get(key) == ("", ""):
            return
        self.written_conditions[key] = ("", "")
        self.status_pool.submit(self._patch_pg_status, key, {"schedulingConditions": []})

    def _patch_status(self, path: str, status: dict[str, Any]) -> ApiError | None:
        """Merge-patch the status subresource at `path` (a paths table `of_key(..., "status")`)."""
        try:
            self.client.request("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")
            return None
        except ApiError as err:
            return err

    def _patch_pg_status(self, key: str, status: dict[str, Any]) -> None:
        err = self._patch_status(POD_GROUPS.of_key(key, "status"), status)
        if err is not None:
            log.warning("status of PodGroup %s not written: %s", key, err)
            # write it again next cycle
            if "schedulingConditions" in status:
                self.written_conditions.pop(key, None)
            if "resourcesStatus" in status:
                self.written_resources.pop(key, None)

    def _queues(self, record: SessionRecord) -> None:
        for name, share in sorted(record.queues.items()):
            status = {
                "allocated": resource_list(share.allocated),
                "requested": resource_list(share.requested),
                "fairShare": resource_list(share.fair_share),
            }
            if self.written_queues.get(name) == status:
                continue
            self.written_queues[name] = status
            self.status_pool.submit(self._patch_queue_status, name, status)

    def _patch_queue_status(self, name: str, status: dict[str, Any]) -> None:
        err = self._patch_status(QUEUES.of_key(name, "status"), status)
        if err is not None and err.status != 404:  # implicit default queues exist only in our memory
            log.warning("status of Queue %s not written: %s", name, err)

"""In-memory cluster: the product's simulation backend (simulate, replay, demo), not a test double.

It keeps the Kubernetes objects themselves, so what a simulation binds can be written back out as
YAML, and it feeds every change through the same ClusterState.apply_object path as the real watch."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scheduler.api.labels import AWAITING_POD_GROUP_ANNOTATION, STALE_SINCE_ANNOTATION
from scheduler.api.reasons import Reason
from scheduler.api.storage import BIND_COMPLETED_ANNOTATION, SELECTED_NODE_ANNOTATION
from scheduler.api.times import format_timestamp, parse_timestamp
from scheduler.backends.base import CommitOutcome, grouper_config
from scheduler.cache.cluster_state import ClusterState, Snapshot
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.record import GangCommit
from scheduler.grouper.chain import ObjectIndex, walk
from scheduler.grouper.plan import needs_grouping, plan
from scheduler.grouper.rules import annotations_of

NAMESPACED = ("Pod", "PodGroup", "PersistentVolumeClaim", "PodDisruptionBudget")


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    # workload objects (owners the grouper reads) keep their namespace too, so equal names do not collide
    ns = str(meta.get("namespace") or ("default" if obj.get("kind") in NAMESPACED else ""))
    return (str(obj.get("kind")), ns, str(meta.get("name", "")))


class MemoryBackend:
    def __init__(self, objects: Iterable[Mapping[str, Any]], scheduler_name: str = "kai-scheduler") -> None:
        self.state = ClusterState(scheduler_name)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.now = 0.0  # the simulated time commits happen at (a bound pod's status.startTime)
        self.recreated = 0  # pods re-created by their controller after an eviction (for new uids)
        self._finished = CommitOutcome()  # what `submit` applied since `finished` last ran
        self.held: dict[str, tuple[str, str]] = {}  # pods the grouper holds back: pod key -> (reason, message)
        for obj in objects:
            self.upsert(obj)

    def latest_time(self) -> float | None:
        """The latest creationTimestamp or startTime in the objects: where a simulation's clock starts, so
        every running pod has run for a while and none started in the future."""
        best: float | None = None
        for obj in self.objects.values():
            for raw in (
                (obj.get("metadata") or {}).get("creationTimestamp"),
                (obj.get("status") or {}).get("startTime"),
            ):
                t = parse_timestamp(raw)
                if t is not None and (best is None or t > best):
                    best = t
        return best

    def mark_stale(self, stale: Mapping[str, float | None]) -> None:
        """Persist the session's stale-gang marks on the PodGroups, as the daemon does."""
        for key, since in stale.items():
            ns, name = key.split("/", 1)
            obj = self.objects.get(("PodGroup", ns, name))
            if obj is None:
                continue
            updated = copy.deepcopy(obj)
            notes = updated.setdefault("metadata", {}).setdefault("annotations", {})
            if since is None:
                notes.pop(STALE_SINCE_ANNOTATION, None)
            else:
                notes[STALE_SINCE_ANNOTATION] = format_timestamp(since, precise=True)
            self.upsert(updated)

    def upsert(self, obj: Mapping[str, Any]) -> None:
        stored = copy.deepcopy(dict(obj))
        if stored.get("kind") in NAMESPACED:
            stored.setdefault("metadata", {}).setdefault("namespace", "default")
        self.objects[_key(stored)] = stored
        self.state.apply_object(stored)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is not None:
            self.state.apply_object(obj, deleted=True)

    # --- ClusterBackend ------------------------------------------------------------------------
    def drain(self) -> int:
        """Nothing is ever pending: every change goes through `upsert`/`delete` into the cache at once."""
        return 0

    def snapshot(self) -> Snapshot:
        snap = self.state.snapshot()
        return dataclasses.replace(snap, held=dict(self.held)) if self.held else snap

    def group(self, config: SchedulerConfig) -> None:
        """What the daemon's grouper does, on the objects in memory: each pod of ours without a PodGroup
        whose owners are here gets its workload's PodGroup (created, or ours brought up to date) and the
        pod-group-name annotation; a pod whose workload cannot be grouped is held with the reason. A pod
        whose first owner is not among the objects stays a gang of one (the input does not say more), unless
        a daemon's snapshot says its grouper held it (annotation kai.scheduler/awaiting-pod-group)."""
        grouping = grouper_config(config, [k[2] for k in self.objects if k[0] == "PriorityClass"])
        index = ObjectIndex(self.objects.values())
        self.held.clear()
        for key in sorted(k for k in self.objects if k[0] == "Pod"):
            pod = self.objects[key]
            if not needs_grouping(pod, self.state.scheduler_name):
                continue
            chain = walk(pod, index.lookup)
            if not chain.owners:
                note = annotations_of(pod).get(AWAITING_POD_GROUP_ANNOTATION)
                if note:  # a snapshot of a cycle in which the daemon's grouper held it
                    self.held[f"{key[1]}/{key[2]}"] = (Reason.AWAITING_POD_GROUP.value, note)
                continue
            ns = key[1]
            spec_name = None
            result = plan(pod, chain, None, grouping)
            if result.spec is not None:
                spec_name = result.spec.group.name
                existing = self.objects.get(("PodGroup", ns, spec_name))
                if existing is not None:
                    result = plan(pod, chain, existing, grouping)
            if result.held is not None:
                self.held[f"{ns}/{key[2]}"] = result.held
                continue
            if result.create is not None:
                self.upsert(result.create)
            elif result.update is not None and spec_name is not None:
                self.upsert(_merged(self.objects[("PodGroup", ns, spec_name)], result.update))
            if result.pod_patch is not None:
                self.upsert(_merged(pod, result.pod_patch))

    def recover(self, snapshot: Snapshot) -> list[str]:
        """Nothing to finish or undo: a commit in memory is whole or was never applied."""
        return []

    def commit(self, commits: Sequence[GangCommit]) -> CommitOutcome:
        """Each gang whole or not at all: everything it names is checked first, then its victims are
        deleted (as an eviction ends in the API: the pod object goes, releasing its node at once, so
        pipelined binds need not wait) and its pods bound."""
        out = CommitOutcome()
        for c in commits:
            error = self._refusal(c)
            if error is not None:
                out.errors[c.job] = error
                continue
            for pod_key, _reason in c.evictions:
                ns, name = pod_key.split("/", 1)
                self._evict(ns, name)
            self._bind_claims(c.claims)
            binds = [*c.binds, *c.pipelined]
            for pod_key, node in binds:
                ns, name = pod_key.split("/", 1)
                bound = copy.deepcopy(self.objects[("Pod", ns, name)])
                bound.setdefault("spec", {})["nodeName"] = node
                bound.setdefault("status", {})["phase"] = "Running"
                bound["status"]["startTime"] = format_timestamp(self.now)
                self.upsert(bound)
            out.bound[c.job] = binds
            if c.evictions:
                out.evicted[c.job] = [p for p, _ in c.evictions]
        return out

    def submit(self, commits: Sequence[GangCommit]) -> None:
        """In memory a commit cannot wait on anything: applied at once, its outcome kept for `finished`."""
        self._finished.merge(self.commit(commits))

    def finished(self) -> CommitOutcome:
        out, self._finished = self._finished, CommitOutcome()
        return out

    def _evict(self, ns: str, name: str) -> None:
        """The pod goes at once; one with a controller owner comes back as a new pending pod of the same
        name (a new uid, no node), as its ReplicaSet, Job or StatefulSet would re-create it."""
        obj = self.objects.get(("Pod", ns, name))
        if obj is None:
            return
        self.delete("Pod", ns, name)
        owners = (obj.get("metadata") or {}).get("ownerReferences") or []
        if not any(isinstance(o, Mapping) and o.get("controller") for o in owners):
            return
        self.recreated += 1
        again = copy.deepcopy(obj)
        meta = again.setdefault("metadata", {})
        meta["uid"] = f"{meta.get('uid') or name}-r{self.recreated}"
        meta.pop("deletionTimestamp", None)
        meta["creationTimestamp"] = format_timestamp(self.now)
        again.setdefault("spec", {}).pop("nodeName", None)
        again["status"] = {"phase": "Pending"}
        self.upsert(again)

    def _bind_claims(self, claims: Sequence[tuple[str, str, str]]) -> None:
        """What kube-scheduler's VolumeBinding does before a bind, and the volume controller after it: a
        chosen volume and its claim are bound to each other; a claim to provision gets its selected node."""
        for claim_key, volume, node in claims:
            ns, name = claim_key.split("/", 1)
            claim = self.objects.get(("PersistentVolumeClaim", ns, name))
            if claim is None:
                continue
            claim = copy.deepcopy(claim)
            if volume and ("PersistentVolume", "", volume) in self.objects:
                pv = copy.deepcopy(self.objects[("PersistentVolume", "", volume)])
                pv.setdefault("spec", {})["claimRef"] = {"namespace": ns, "name": name}
                pv.setdefault("status", {})["phase"] = "Bound"
                self.upsert(pv)
                claim.setdefault("spec", {})["volumeName"] = volume
                claim.setdefault("metadata", {}).setdefault("annotations", {})[BIND_COMPLETED_ANNOTATION] = "yes"
            else:
                claim.setdefault("metadata", {}).setdefault("annotations", {})[SELECTED_NODE_ANNOTATION] = node
            self.upsert(claim)

    def _refusal(self, c: GangCommit) -> str | None:
        """Why the gang's commit cannot be applied whole (None: it can)."""
        for pod_key, _reason in c.evictions:
            ns, name = pod_key.split("/", 1)
            if ("Pod", ns, name) not in self.objects:
                return f"{c.job}: victim {pod_key} no longer exists"
        victims = {p for p, _ in c.evictions}
        for pod_key, node in (*c.binds, *c.pipelined):
            ns, name = pod_key.split("/", 1)
            pod = self.objects.get(("Pod", ns, name))
            if pod is None or pod_key in victims:
                return f"{c.job}: pod {pod_key} no longer exists"
            if (pod.get("spec") or {}).get("nodeName"):
                return f"{c.job}: pod {pod_key} is already bound"
            if ("Node", "", node) not in self.objects:
                return f"{c.job}: node {node} no longer exists"
        return None


def _merged(obj: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) applied to a copy of `obj`."""
    out = copy.deepcopy(dict(obj))
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out

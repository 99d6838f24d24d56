"""Volumes, as kube-scheduler's VolumeBinding and NodeVolumeLimits filters decide them.

Per claim of the pod: a missing or deleting claim rules out every node; a bound claim's volume must
exist and its node affinity match the node; an unbound claim of an Immediate (or no) class waits for
its volume controller; an unbound WaitForFirstConsumer claim needs, on that node, an available volume
of its class (big enough, its access modes, node affinity matching, not taken this cycle) or a class
that provisions there (a provisioner, and allowedTopologies empty or matching the node's labels).
Where a node's CSINode reports a per-driver count, the distinct CSI volumes of its pods plus the new
pod's must stay within it. A gang's members placed earlier take their volumes (undone on rollback), so
two members never count on one volume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from scheduler.api.pod import Pod
from scheduler.api.reasons import Reason
from scheduler.api.storage import NO_PROVISIONER, WFFC, Claim, StorageClass, Volume
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin
from scheduler.plugins.predicates import term_matches

if TYPE_CHECKING:
    from scheduler.framework.session import Session

NODE_CONFLICT = "node(s) had volume node affinity conflict"
NO_VOLUME = "node(s) didn't find available persistent volumes to bind"
TOO_MANY = "node(s) exceed max volume count"
NOT_FOUND = "persistentvolumeclaim not found"
UNBOUND = "pod has unbound immediate PersistentVolumeClaims"


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one pod's claims need: fixed volumes (bound), claims to bind at the node, or a problem."""

    problem: str
    bound: tuple[Volume, ...]
    delayed: tuple[tuple[Claim, StorageClass], ...]


def _topology_allows(sc: StorageClass, labels: Mapping[str, str]) -> bool:
    if not sc.allowed_topologies:
        return True
    return any(all(labels.get(k) in vs for k, vs in t.expressions) for t in sc.allowed_topologies)


@plugin("volumes")
class Volumes(Plugin):
    name = "volumes"

    def open(self, session: Session) -> None:
        snap = session.snapshot
        self.active = any(p.extras.claims or p.extras.ephemeral_claims for p in snap.pending_related.values())
        self.plans: dict[str, _Plan] = {}
        self.taken: dict[str, str] = {}  # volume name -> claim key, for claims bound this cycle
        self.chosen: dict[str, list[tuple[str, str]]] = {}  # pod key -> (claim key, volume or "") it took
        self.attached: dict[int, dict[tuple[str, str], int]] = {}  # node -> (driver, volume) -> pods using it
        if not self.active:
            return
        self.classes = snap.storage_classes
        self.by_class: dict[str, list[Volume]] = {}
        claimed = {c.volume_name for c in snap.claims.values() if c.volume_name}  # bound, whatever the PV says
        for name in sorted(snap.volumes):
            v = snap.volumes[name]
            if name not in claimed:
                self.by_class.setdefault(v.storage_class, []).append(v)
        if snap.csi_limits:
            for key in sorted(snap.bound_related):
                pod = snap.bound_related[key]
                node = session.table.by_name.get(pod.node_name)
                if node is not None:
                    for vol in self._csi_of(session, pod):
                        self._attach(node, vol, 1)

    def close(self, session: Session) -> None:
        """Each commit names the claims its pods bind (the statements that stayed: rolled-back trials
        gave theirs back in on_deallocate)."""
        if not self.chosen:
            return
        commits = session.record.commits
        for i, c in enumerate(commits):
            claims = tuple(
                (claim, volume, node)
                for pod, node in (*c.binds, *c.pipelined)
                for claim, volume in self.chosen.get(pod, ())
            )
            if claims:
                commits[i] = replace(c, claims=claims)

    # --- claims -----------------------------------------------------------------------------
    def _claims(self, pod: Pod) -> tuple[str, ...]:
        return tuple(sorted({*pod.extras.claims, *pod.extras.ephemeral_claims}))

    def _plan(self, session: Session, pod: Pod) -> _Plan:
        hit = self.plans.get(pod.key)
        if hit is not None:
            return hit
        snap = session.snapshot
        bound: list[Volume] = []
        delayed: list[tuple[Claim, StorageClass]] = []
        problem = ""
        for name in self._claims(pod):
            claim = snap.claims.get(f"{pod.namespace}/{name}")
            if claim is None:
                problem = f'{NOT_FOUND}: "{name}"'
            elif claim.deleting:
                problem = f'{NOT_FOUND}: "{name}" is being deleted'
            elif claim.volume_name and not claim.bound:
                problem = f'{UNBOUND}: "{name}" names volume {claim.volume_name} but its bind is not complete'
            elif claim.bound:
                vol = snap.volumes.get(claim.volume_name)
                if vol is None:
                    problem = f'{NOT_FOUND}: "{name}" is bound to volume {claim.volume_name}, which does not exist'
                else:
                    bound.append(vol)
            else:
                sc = self.classes.get(claim.storage_class)
                if sc is None or sc.binding_mode != WFFC:
                    what = f"class {claim.storage_class}" if claim.storage_class else "no storage class"
                    if claim.storage_class and sc is None:
                        what = f"class {claim.storage_class}, which does not exist"
                    problem = f'{UNBOUND}: "{name}" ({what}) waits for its volume to be bound'
                else:
                    delayed.append((claim, sc))
            if problem:
                break
        plan = self.plans[pod.key] = _Plan(problem, tuple(bound), tuple(delayed))
        return plan

    def _volume_for(self, session: Session, claim: Claim, node: int, exclude: set[str] | None = None) -> Volume | None:
        """The volume kube-scheduler's binder would match: one pre-bound to the claim (only if its node
        affinity fits), else the smallest available one of its class that fits it on this node."""
        labels, name = session.node_labels(node), session.table.names[node]
        best: Volume | None = None
        for v in self.by_class.get(claim.storage_class, ()):
            fits_node = not v.node_terms or any(term_matches(t, labels, name) for t in v.node_terms)
            if v.claim_ref == claim.key:
                return v if fits_node else None
            if v.claim_ref or v.phase != "Available" or not fits_node:
                continue
            if self.taken.get(v.name, claim.key) != claim.key or (exclude and v.name in exclude):
                continue
            if v.capacity < claim.request or not set(claim.access_modes) <= set(v.access_modes):
                continue
            if best is None or (v.capacity, v.name) < (best.capacity, best.name):
                best = v
        return best

    # --- attach limits ----------------------------------------------------------------------
    def _csi_of(self, session: Session, pod: Pod) -> list[tuple[str, str]]:
        snap = session.snapshot
        out = []
        for name in self._claims(pod):
            claim = snap.claims.get(f"{pod.namespace}/{name}")
            if claim is None:
                continue
            vol = snap.volumes.get(claim.volume_name) if claim.volume_name else None
            sc = snap.storage_classes.get(claim.storage_class)
            if vol is not None and vol.csi_driver:
                out.append((vol.csi_driver, vol.handle or vol.name))
            elif vol is None and claim.selected_node and sc is not None and sc.provisioner:
                out.append((sc.provisioner, f"new:{claim.key}"))  # being provisioned for this pod
        return out

    def _attach(self, node: int, vol: tuple[str, str], by: int) -> None:
        held = self.attached.setdefault(node, {})
        n = held.get(vol, 0) + by
        if n > 0:
            held[vol] = n
        else:
            held.pop(vol, None)

    def _over_limit(self, session: Session, node: int, new: list[tuple[str, str]]) -> str | None:
        limits = session.snapshot.csi_limits.get(session.table.names[node])
        if limits is None or not new:
            return None
        held = self.attached.get(node, {})
        for driver, limit in limits.limits:
            mine = {v for v in new if v[0] == driver and v not in held}
            if not mine:
                continue
            have = sum(1 for v in held if v[0] == driver)
            if have + len(mine) > limit:
                return f"{TOO_MANY} ({driver}: {have} attached + {len(mine)} > {limit})"
        return None

    # --- hooks ------------------------------------------------------------------------------
    def applies_by_labels(self) -> bool:
        return False  # the pod's own constraints decide

    def pod_filter_applies(self, pod: Pod) -> bool:
        return self.active and bool(pod.extras.claims or pod.extras.ephemeral_claims)

    def pod_filter(self, session: Session, pod: Pod, node: int) -> str | None:
        plan = self._plan(session, pod)
        if plan.problem:
            return plan.problem
        labels, name = session.node_labels(node), session.table.names[node]
        new = [(v.csi_driver, v.handle or v.name) for v in plan.bound if v.csi_driver]
        for v in plan.bound:
            if v.node_terms and not any(term_matches(t, labels, name) for t in v.node_terms):
                return f"{NODE_CONFLICT} (volume {v.name})"
        picked: set[str] = set()  # one volume per claim of the pod
        for claim, sc in plan.delayed:
            vol = self._volume_for(session, claim, node, picked)
            if vol is not None:
                picked.add(vol.name)
                if vol.csi_driver:
                    new.append((vol.csi_driver, vol.handle or vol.name))
                continue
            if sc.provisioner == NO_PROVISIONER or not sc.provisioner:
                return f"{NO_VOLUME} (claim {claim.name}: no available volume of class {sc.name} on this node)"
            if not _topology_allows(sc, labels):
                return f"{NO_VOLUME} (claim {claim.name}: class {sc.name}'s allowedTopologies exclude this node)"
            new.append((sc.provisioner, f"new:{claim.key}"))
        return self._over_limit(session, node, new)

    def rejection_reason(self, why: str) -> Reason:
        if why.startswith(NOT_FOUND):
            return Reason.VOLUME_CLAIM_NOT_FOUND
        if why.startswith(UNBOUND):
            return Reason.VOLUME_CLAIM_UNBOUND
        return Reason.VOLUME_NODE_CONFLICT

    def follows_placements(self) -> bool:
        return self.active

    def on_allocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if not self.active:
            return
        for pod in pods:
            if pod.bound or not (pod.extras.claims or pod.extras.ephemeral_claims):
                if pod.bound and session.snapshot.csi_limits:
                    for held in self._csi_of(session, pod):
                        self._attach(node, held, 1)  # an eviction undone
                continue
            plan = self._plan(session, pod)
            took: list[tuple[str, str]] = []
            attach = [(v.csi_driver, v.handle or v.name) for v in plan.bound if v.csi_driver]
            for claim, sc in plan.delayed:
                vol = self._volume_for(session, claim, node)  # the earlier claims' volumes are taken by now
                if vol is not None:
                    self.taken[vol.name] = claim.key
                    if vol.csi_driver:
                        attach.append((vol.csi_driver, vol.handle or vol.name))
                else:
                    attach.append((sc.provisioner, f"new:{claim.key}"))
                took.append((claim.key, vol.name if vol is not None else ""))
            self.chosen[pod.key] = took
            for vol_key in attach:
                self._attach(node, vol_key, 1)

    def on_deallocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if not self.active:
            return
        for pod in pods:
            if pod.bound:
                for held in self._csi_of(session, pod):
                    self._attach(node, held, -1)  # an eviction
                continue
            took = self.chosen.pop(pod.key, None)
            if took is None:
                continue
            plan = self._plan(session, pod)
            attach = [(v.csi_driver, v.handle or v.name) for v in plan.bound if v.csi_driver]
            for (claim_key, vol_name), (_claim, sc) in zip(took, plan.delayed, strict=True):
                if vol_name:
                    self.taken.pop(vol_name, None)
                    v = session.snapshot.volumes[vol_name]
                    if v.csi_driver:
                        attach.append((v.csi_driver, v.handle or v.name))
                else:
                    attach.append((sc.provisioner, f"new:{claim_key}"))
            for vol_key in attach:
                self._attach(node, vol_key, -1)

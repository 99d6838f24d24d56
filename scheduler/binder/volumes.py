"""WaitForFirstConsumer claims, written before a gang's pods bind, as kube-scheduler's VolumeBinding
PreBind writes them.

A claim matched to a pre-provisioned volume: the volume's `spec.claimRef` names the claim (with its uid)
and carries `pv.kubernetes.io/bound-by-controller: "yes"`; the PersistentVolume controller then binds the
claim to it. A claim to provision: the annotation `volume.kubernetes.io/selected-node` on the claim; the
provisioner then creates a volume for that node and the controller binds it. Then, as PreBind does, wait
until every claim is fully bound (`spec.volumeName` set and `pv.kubernetes.io/bind-completed`), failing
early when a volume's claimRef is reset or a provisioner removes the selected node (provisioning failed).

Undo gives back what was written and not completed: the selected-node annotation of a claim still
unbound, the claimRef of a volume we pre-bound whose claim is still unbound. A claim the controller has
bound stays bound (a claim's volumeName can be set once), as kube-scheduler leaves it. Every write carries
the object's resourceVersion (so it never overwrites a change it has not seen) and goes through the
client's fence."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.api.storage import BIND_COMPLETED_ANNOTATION, SELECTED_NODE_ANNOTATION
from scheduler.binder.crash import crashpoint
from scheduler.kube.client import ApiError, KubeClient
from scheduler.kube.paths import CLAIMS, VOLUMES

BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
DEFAULT_TIMEOUT_S = 120.0  # kube-scheduler's bindTimeoutSeconds is 600; ours blocks the cycle, so shorter


@dataclass(frozen=True, slots=True)
class ClaimBind:
    """One claim a commit binds before its pods: to `volume` (pre-provisioned), or, `volume` empty,
    provisioned on `node`. `uid` is the claim object the decision was made for: a claim deleted and
    created again under the same name is not touched."""

    claim: str  # "<ns>/<name>"
    uid: str
    volume: str
    node: str

    def what(self) -> str:
        return f"claim {self.claim} " + (f"to volume {self.volume}" if self.volume else f"on node {self.node}")


def _meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    meta = (obj or {}).get("metadata") or {}
    return meta if isinstance(meta, dict) else {}


def _annotations(obj: dict[str, Any] | None) -> dict[str, Any]:
    return _meta(obj).get("annotations") or {}


def _claim_ref(pv: dict[str, Any] | None) -> dict[str, Any]:
    return ((pv or {}).get("spec") or {}).get("claimRef") or {}


def _names(ref: dict[str, Any], claim: str) -> bool:
    return f"{ref.get('namespace') or ''}/{ref.get('name') or ''}" == claim


def _fully_bound(claim: dict[str, Any] | None) -> str:
    """The volume a claim is fully bound to, as PreBind counts it (volumeName and bind-completed); else ""."""
    name = str(((claim or {}).get("spec") or {}).get("volumeName") or "")
    return name if name and BIND_COMPLETED_ANNOTATION in _annotations(claim) else ""


class ClaimBinder:
    def __init__(self, client: KubeClient, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.client = client
        self.timeout = timeout
        self.poll_s = 0.1  # first poll; doubles up to 1 s (PreBind polls every second)

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.client.request("GET", path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def _patch(
        self, path: str, obj: dict[str, Any], notes: dict[str, str | None], spec: dict[str, Any] | None = None
    ) -> None:
        """A merge patch of annotations (None removes one) and spec, conditional on `obj`'s resourceVersion
        (409 if the object changed since it was read)."""
        body: dict[str, Any] = {"metadata": {"resourceVersion": str(_meta(obj).get("resourceVersion") or "")}}
        if notes:
            body["metadata"]["annotations"] = notes
        if spec is not None:
            body["spec"] = spec
        self.client.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def _claim(self, b: ClaimBind) -> dict[str, Any] | None:
        """The claim, if it is still the object the decision was made for."""
        obj = self._get(CLAIMS.of_key(b.claim))
        return obj if obj is not None and str(_meta(obj).get("uid") or "") == b.uid else None

    # --- before the intent ------------------------------------------------------------------
    def read(self, claims: Sequence[tuple[str, str, str]]) -> tuple[tuple[ClaimBind, ...], str | None]:
        """The decided (claim, volume, node) triples with their claims' uids, or why they can no longer
        be written (nothing written yet)."""
        out = []
        for claim, volume, node in sorted(claims):
            obj = self._get(CLAIMS.of_key(claim))
            if obj is None or _meta(obj).get("deletionTimestamp"):
                return (), f"claim {claim} is gone"
            bound = str((obj.get("spec") or {}).get("volumeName") or "")
            if bound and bound != volume:
                return (), f"claim {claim} is bound to volume {bound} meanwhile"
            b = ClaimBind(claim, str(_meta(obj).get("uid") or ""), volume, node)
            if volume:
                pv = self._get(VOLUMES.of_key(volume))
                ref = _claim_ref(pv)
                if pv is None:
                    return (), f"volume {volume} for claim {claim} is gone"
                if ref and (not _names(ref, claim) or ref.get("uid") not in (None, "", b.uid)):
                    return (), f"volume {volume} was taken by claim {ref.get('namespace')}/{ref.get('name')}"
            out.append(b)
        return tuple(out), None

    # --- write, wait ------------------------------------------------------------------------
    def bind(self, binds: Sequence[ClaimBind]) -> str | None:
        """Write every claim's binding (idempotent), then wait until all are fully bound; the error that
        stopped it, or None."""
        try:
            for i, b in enumerate(binds):
                error = self._write(b)
                if error is not None:
                    return error
                if i == 0 and len(binds) > 1:
                    crashpoint("claims:after-first")
            crashpoint("claims:after-writes")
            error = self.wait(binds)
        except ApiError as err:
            return f"writing {binds[0].what() if binds else 'claims'} failed: {err}"
        if error is None:
            crashpoint("claims:before-binds")
        return error

    def _write(self, b: ClaimBind) -> str | None:
        claim = self._claim(b)
        if claim is None:
            return f"claim {b.claim} is gone or was replaced"
        if _fully_bound(claim):
            return None  # bound already (a commit resumed after the controller finished)
        if not b.volume:
            if _annotations(claim).get(SELECTED_NODE_ANNOTATION) != b.node:
                self._patch(CLAIMS.of_key(b.claim), claim, {SELECTED_NODE_ANNOTATION: b.node})
            return None
        pv = self._get(VOLUMES.of_key(b.volume))
        if pv is None:
            return f"volume {b.volume} for claim {b.claim} is gone"
        ref = _claim_ref(pv)
        if ref and ref.get("uid") == b.uid and _names(ref, b.claim):
            return None
        if ref and (not _names(ref, b.claim) or ref.get("uid") not in (None, "")):
            return f"volume {b.volume} was taken by claim {ref.get('namespace')}/{ref.get('name')}"
        ns, name = b.claim.split("/", 1)
        to = {"apiVersion": CLAIMS.api_version, "kind": CLAIMS.kind, "namespace": ns, "name": name, "uid": b.uid}
        # a volume pre-bound to the claim by its author keeps that mark: only the uid is filled in
        notes: dict[str, str | None] = {} if ref else {BOUND_BY_CONTROLLER: "yes"}
        self._patch(VOLUMES.of_key(b.volume), pv, notes, {"claimRef": to})
        return None

    def check(self, b: ClaimBind) -> tuple[bool, str | None]:
        """(fully bound, error): what PreBind's check says of one claim, read from the API server."""
        claim = self._claim(b)
        if claim is None:
            return False, f"claim {b.claim} is gone or was replaced"
        bound = _fully_bound(claim)
        if b.volume:
            ref = _claim_ref(self._get(VOLUMES.of_key(b.volume)))
            if not ref or ref.get("uid") != b.uid:
                return False, f"the claimRef of volume {b.volume} (for claim {b.claim}) was reset"
            if bound and bound != b.volume:
                return False, f"claim {b.claim} was bound to volume {bound}, not {b.volume}"
        elif _annotations(claim).get(SELECTED_NODE_ANNOTATION) != b.node and not bound:
            # a provisioner that fails removes the selected node to ask for another try
            return False, f"provisioning failed for claim {b.claim} (selected node {b.node} removed)"
        return bool(bound), None

    def wait(self, binds: Sequence[ClaimBind]) -> str | None:
        """Poll until every claim is fully bound; an error at once, or after `timeout` what still waits."""
        deadline = time.monotonic() + self.timeout
        pending = list(binds)
        delay = self.poll_s
        while True:
            left = []
            for b in pending:
                done, error = self.check(b)
                if error is not None:
                    return error
                if not done:
                    left.append(b)
            pending = left
            if not pending:
                return None
            if time.monotonic() >= deadline:
                shown = ", ".join(b.what() for b in pending[:3])
                more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
                return f"claims not bound after {self.timeout:.0f}s: {shown}{more}"
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    # --- undo -------------------------------------------------------------------------------
    def undo(self, binds: Sequence[ClaimBind]) -> int:
        """Give back what `bind` wrote and the volume controller did not complete; idempotent (recovery
        calls it again). Raises ApiError (fenced, API away): the intent then stays for recovery. Returns
        how many writes it undid."""
        undone = 0
        for b in reversed(binds):
            for _ in range(5):  # a conflict means the object changed since we read it: read again
                try:
                    undone += self._undo_one(b)
                    break
                except ApiError as err:
                    if err.status != 409:
                        raise
            else:
                raise ApiError(409, "Conflict", {"message": f"{b.what()} kept changing; not undone"})
        return undone

    def _undo_one(self, b: ClaimBind) -> int:
        claim = self._claim(b)
        if claim is not None and _fully_bound(claim):
            return 0  # the controller completed it: a claim's volumeName is set once
        if not b.volume:
            if claim is None or _annotations(claim).get(SELECTED_NODE_ANNOTATION) != b.node:
                return 0
            self._patch(CLAIMS.of_key(b.claim), claim, {SELECTED_NODE_ANNOTATION: None})
            return 1
        pv = self._get(VOLUMES.of_key(b.volume))
        ref = _claim_ref(pv)
        if pv is None or ref.get("uid") != b.uid or _annotations(pv).get(BOUND_BY_CONTROLLER) != "yes":
            return 0  # not a claimRef we set (or already released)
        if claim is not None and ((claim.get("spec") or {}).get("volumeName") or ""):
            return 0  # the controller is completing the claim's side: leave it to finish
        self._patch(VOLUMES.of_key(b.volume), pv, {BOUND_BY_CONTROLLER: None}, {"claimRef": None})
        return 1

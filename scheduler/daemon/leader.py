"""Leader election on a coordination.k8s.io/v1 Lease, so two replicas never both schedule.

Optimistic concurrency does the arbitration: every write carries the Lease's resourceVersion, so of two
replicas racing for an expired lease exactly one write succeeds."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from scheduler.kube.client import ApiError, KubeClient
from scheduler.kube.fence import Fence
from scheduler.kube.paths import LEASES

log = logging.getLogger("kaisched.leader")


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        identity: str,
        namespace: str = "kube-system",
        name: str = "kai-scheduler",
        lease_seconds: int = 15,
        renew_seconds: float = 2.0,
        fence: Fence | None = None,
    ) -> None:
        self.client, self.identity, self.namespace, self.name = client, identity, namespace, name
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        # as client-go: the leader stops (and its writes are fenced) after renew_deadline without a renewal,
        # well before lease_seconds, when another replica may take the lease
        self.renew_deadline = lease_seconds * 2 / 3
        self.fence = fence
        self.holder = ""  # the lease holder as last read
        self.is_leader = threading.Event()
        self.lost = threading.Event()
        self._last_renew = 0.0

    @property
    def path(self) -> str:
        return LEASES.item(self.name, self.namespace)

    def try_acquire_or_renew(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        try:
            lease: dict[str, Any] | None = self.client.request("GET", self.path, fenced=False)
        except ApiError as err:
            if err.status != 404:
                raise
            lease = None
        spec_new = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": _ts(now),
        }
        if lease is None:
            body = {
                "apiVersion": LEASES.api_version,
                "kind": LEASES.kind,
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec_new, "acquireTime": _ts(now), "leaseTransitions": 0},
            }
            try:
                self.client.request("POST", LEASES.collection(self.namespace), body=body, fenced=False)
                self.holder = self.identity
                return True
            except ApiError as err:
                if err.status == 409:
                    return False
                raise
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        self.holder = str(holder or "")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder != self.identity and not expired:
            return False
        new_spec = dict(spec)
        new_spec.update(spec_new)
        if holder != self.identity:
            new_spec["acquireTime"] = _ts(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:
            self.client.request("PUT", self.path, body=lease, fenced=False)
            self.holder = self.identity
            return True
        except ApiError as err:
            if err.status == 409:  # someone else wrote first
                return False
            raise

    def run(self, stop: threading.Event) -> None:
        """Acquire, then keep renewing; if renewal fails for a whole lease period, leadership is lost."""
        while not stop.is_set():
            sent = time.monotonic()  # the renewal counts from when it was sent: the server's renewTime is later
            try:
                ok = self.try_acquire_or_renew()
            except Exception as err:  # API server away: keep trying until the lease would expire
                log.warning("lease %s/%s: %s", self.namespace, self.name, err)
                ok = False
            now = time.monotonic()
            if ok:
                if not self.is_leader.is_set():
                    log.info("became leader as %s", self.identity)
                self._last_renew = sent
                if self.fence is not None:
                    self.fence.renewed(sent)
                self.is_leader.set()
            elif self.is_leader.is_set() and now - self._last_renew > self.renew_deadline:
                log.error("lost the lease %s/%s; stopping", self.namespace, self.name)
                if self.fence is not None:
                    self.fence.revoke()
                self.is_leader.clear()
                self.lost.set()
                return
            elif self.is_leader.is_set() and self.holder not in ("", self.identity):
                log.error("lease %s/%s is held by %s now; stopping", self.namespace, self.name, self.holder)
                if self.fence is not None:
                    self.fence.revoke()
                self.is_leader.clear()
                self.lost.set()
                return
            stop.wait(self.renew_seconds)

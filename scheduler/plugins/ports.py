"""Host ports, kube-scheduler's NodePorts filter: a pod cannot go where a pod already holds one of its
host ports (same port and protocol, and the same host IP or either one the wildcard)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from scheduler.api.pod import Pod
from scheduler.api.podspec import HostPort
from scheduler.api.reasons import Reason
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin

if TYPE_CHECKING:
    from scheduler.framework.session import Session

NO_FREE_PORTS = "node(s) didn't have free ports for the requested pod ports"


@plugin("nodeports")
class NodePorts(Plugin):
    name = "nodeports"

    def open(self, session: Session) -> None:
        snap = session.snapshot
        self.active = any(p.extras.host_ports for p in snap.pending_related.values())
        self.used: dict[int, dict[str, tuple[HostPort, ...]]] = {}  # node -> pod key -> its host ports
        if self.active:
            for key in sorted(snap.bound_related):
                pod = snap.bound_related[key]
                node = session.table.by_name.get(pod.node_name)
                if node is not None and pod.extras.host_ports:
                    self.used.setdefault(node, {})[key] = pod.extras.host_ports

    def follows_placements(self) -> bool:
        return self.active

    def on_allocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if self.active:
            for p in pods:
                if p.extras.host_ports:
                    self.used.setdefault(node, {})[p.key] = p.extras.host_ports

    def on_deallocate(self, session: Session, pods: Sequence[Pod], node: int) -> None:
        if self.active:
            for p in pods:
                self.used.get(node, {}).pop(p.key, None)

    def applies_by_labels(self) -> bool:
        return False  # the pod's own constraints decide

    def pod_filter_applies(self, pod: Pod) -> bool:
        return self.active and bool(pod.extras.host_ports)

    def pod_filter(self, session: Session, pod: Pod, node: int) -> str | None:
        held = self.used.get(node)
        if not held:
            return None
        for want in pod.extras.host_ports:
            for owner in sorted(held):
                if any(want.conflicts(h) for h in held[owner]):
                    return f"{NO_FREE_PORTS} (host port {want.describe()} is held by pod {owner})"
        return None

    def rejection_reason(self, why: str) -> Reason:
        return Reason.HOST_PORT_CONFLICT

    def rejection_lasts(self, why: str) -> bool:
        return True  # a placement only takes more ports

"""Preferred node affinity, kube-scheduler's NodeAffinity score: a node scores the sum of the weights
of the preferred terms it matches, so preferred nodes are tried first (node order breaks ties)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scheduler.api.pod import Pod
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin
from scheduler.plugins.predicates import term_matches

if TYPE_CHECKING:
    from scheduler.framework.session import Session


@plugin("nodepreference")
class NodePreference(Plugin):
    name = "nodepreference"

    def applies_by_labels(self) -> bool:
        return False  # the pod's own constraints decide

    def node_score_applies(self, pod: Pod) -> bool:
        return bool(pod.extras.preferred_nodes)

    def node_score(self, session: Session, pod: Pod, node: int) -> int:
        labels, name = session.node_labels(node), session.table.names[node]
        return sum(p.weight for p in pod.extras.preferred_nodes if term_matches(p.term, labels, name))

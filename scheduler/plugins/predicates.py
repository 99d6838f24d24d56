"""Static node feasibility: everything but resources. Same constraints give the same answer, so the
session evaluates each distinct PodConstraints once per node per cycle."""

from __future__ import annotations

from collections.abc import Mapping

from scheduler.api.node import Node, Taint
from scheduler.api.pod import NodeSelectorRequirement, NodeSelectorTerm, PodConstraints, Toleration
from scheduler.api.podspec import set_match
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates(tol: Toleration, taint: Taint) -> bool:
    if tol.effect and tol.effect != taint.effect:
        return False
    if tol.operator == "Exists":
        return not tol.key or tol.key == taint.key
    return tol.key == taint.key and tol.value == taint.value


def _requirement(req: NodeSelectorRequirement, value: str | None) -> bool:
    if req.operator in ("Gt", "Lt"):
        if value is None or len(req.values) != 1:
            return False
        try:
            have, want = int(value), int(req.values[0])
        except ValueError:
            return False
        return have > want if req.operator == "Gt" else have < want
    return set_match(req.operator, req.values, value)  # unknown operators match nothing (the API rejects them)


def term_matches(term: NodeSelectorTerm, labels: Mapping[str, str], name: str) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False  # an empty term matches no objects
    if not all(_requirement(r, labels.get(r.key)) for r in term.match_expressions):
        return False
    return all(_requirement(r, name if r.key == "metadata.name" else None) for r in term.match_fields)


@plugin("predicates")
class Predicates(Plugin):
    """Node filter hook: returns why a node is not a candidate, or None."""

    name = "predicates"

    def node_filter(self, c: PodConstraints, node: Node, labels: dict[str, str]) -> str | None:
        cordon = Taint(UNSCHEDULABLE_TAINT, "", "NoSchedule")
        if node.unschedulable and not any(tolerates(t, cordon) for t in c.tolerations):
            return "node(s) were unschedulable (cordoned)"
        if not node.ready:
            return "node(s) were not Ready"
        why = node_affinity_mismatch(c, labels, node.name)
        if why is not None:
            return why
        taint = untolerated_taint(c, node)
        if taint is not None:
            return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
        return None


def node_affinity_mismatch(c: PodConstraints, labels: Mapping[str, str], name: str) -> str | None:
    """Why the node fails the pod's nodeSelector or required node affinity, or None."""
    for key, value in c.node_selector:
        if labels.get(key) != value:
            return "node(s) didn't match Pod's node selector"
    if c.required_terms and not any(term_matches(t, labels, name) for t in c.required_terms):
        return "node(s) didn't match Pod's node affinity"
    return None


def untolerated_taint(c: PodConstraints, node: Node) -> Taint | None:
    """The first NoSchedule / NoExecute taint the pod does not tolerate."""
    for taint in node.taints:
        if taint.effect in ("NoSchedule", "NoExecute") and not any(tolerates(t, taint) for t in c.tolerations):
            return taint
    return None

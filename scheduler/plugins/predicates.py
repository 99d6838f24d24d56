"""Static node feasibility: everything but resources. Same constraints give the same answer, so the
session evaluates each distinct PodConstraints once per node per cycle."""

from __future__ import annotations

from scheduler.api.node import Node, Taint
from scheduler.api.pod import NodeSelectorRequirement, NodeSelectorTerm, PodConstraints, Toleration
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def _tolerates(tol: Toleration, taint: Taint) -> bool:
    if tol.effect and tol.effect != taint.effect:
        return False
    if tol.operator == "Exists":
        return not tol.key or tol.key == taint.key
    return tol.key == taint.key and tol.value == taint.value


def _requirement(req: NodeSelectorRequirement, value: str | None) -> bool:
    op = req.operator
    if op == "In":
        return value is not None and value in req.values
    if op == "NotIn":
        return value is None or value not in req.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(req.values) != 1:
            return False
        try:
            have, want = int(value), int(req.values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False  # unknown operator: matches nothing, as the API server would reject it anyway


def _term(term: NodeSelectorTerm, labels: dict[str, str], name: str) -> bool:
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
        tolerates = c.tolerations
        if node.unschedulable and not any(
            _tolerates(t, Taint(UNSCHEDULABLE_TAINT, "", "NoSchedule")) for t in tolerates
        ):
            return "node(s) were unschedulable (cordoned)"
        if not node.ready:
            return "node(s) were not Ready"
        for key, value in c.node_selector:
            if labels.get(key) != value:
                return "node(s) didn't match Pod's node selector"
        if c.required_terms and not any(_term(t, labels, node.name) for t in c.required_terms):
            return "node(s) didn't match Pod's node affinity"
        for taint in node.taints:
            if taint.effect in ("NoSchedule", "NoExecute") and not any(_tolerates(t, taint) for t in tolerates):
                return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
        return None

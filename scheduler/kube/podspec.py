"""Kubernetes pod spec JSON to `PodExtras`: inter-pod (anti-)affinity, topology spread, host ports,
preferred node affinity and volumes. matchLabelKeys / mismatchLabelKeys are folded into the label
selector here, as the API server does when it admits a pod (so input that bypassed it means the same)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.api.pod import NodeSelectorRequirement, NodeSelectorTerm
from scheduler.api.podspec import (
    NO_EXTRAS,
    HostPort,
    LabelRequirement,
    LabelSelector,
    PodAffinity,
    PodAffinityTerm,
    PodExtras,
    PreferredNodeTerm,
    SpreadConstraint,
    WeightedPodAffinityTerm,
)

Obj = Mapping[str, Any]


def label_selector(value: Any) -> LabelSelector | None:
    """None for a missing (nil) selector, which matches nothing where Kubernetes says so."""
    if not isinstance(value, Mapping):
        return None
    reqs = [LabelRequirement(str(k), "In", (str(v),)) for k, v in sorted((value.get("matchLabels") or {}).items())]
    for e in value.get("matchExpressions") or []:
        if isinstance(e, Mapping):
            values = tuple(sorted(str(v) for v in e.get("values") or []))
            reqs.append(LabelRequirement(str(e.get("key", "")), str(e.get("operator", "")), values))
    return LabelSelector(tuple(reqs))


def _with_keys(sel: LabelSelector | None, labels: Mapping[str, str], match: Any, mismatch: Any) -> LabelSelector | None:
    extra: list[LabelRequirement] = []
    for keys, op in ((match, "In"), (mismatch, "NotIn")):
        for key in keys or []:
            if str(key) in labels:
                extra.append(LabelRequirement(str(key), op, (labels[str(key)],)))
    if not extra:
        return sel
    base = sel.requirements if sel is not None else ()
    return LabelSelector(base + tuple(r for r in extra if r not in base))


def _term(t: Obj, labels: Mapping[str, str]) -> PodAffinityTerm:
    sel = _with_keys(
        label_selector(t.get("labelSelector")), labels, t.get("matchLabelKeys"), t.get("mismatchLabelKeys")
    )
    ns_sel = t.get("namespaceSelector")
    return PodAffinityTerm(
        selector=sel,
        topology_key=str(t.get("topologyKey") or ""),
        namespaces=tuple(sorted({str(n) for n in t.get("namespaces") or []})),
        namespace_selector=label_selector(ns_sel),
    )


def _terms(items: Any, labels: Mapping[str, str]) -> tuple[PodAffinityTerm, ...]:
    return tuple(_term(t, labels) for t in items or [] if isinstance(t, Mapping))


def _weighted(items: Any, labels: Mapping[str, str]) -> tuple[WeightedPodAffinityTerm, ...]:
    out = []
    for w in items or []:
        if isinstance(w, Mapping) and isinstance(w.get("podAffinityTerm"), Mapping):
            out.append(WeightedPodAffinityTerm(_int(w.get("weight"), 0), _term(w["podAffinityTerm"], labels)))
    return tuple(out)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def pod_affinity(affinity: Obj, labels: Mapping[str, str]) -> PodAffinity | None:
    pa = affinity.get("podAffinity") or {}
    anti = affinity.get("podAntiAffinity") or {}
    required = "requiredDuringSchedulingIgnoredDuringExecution"
    preferred = "preferredDuringSchedulingIgnoredDuringExecution"
    out = PodAffinity(
        required=_terms(pa.get(required), labels),
        preferred=_weighted(pa.get(preferred), labels),
        anti_required=_terms(anti.get(required), labels),
        anti_preferred=_weighted(anti.get(preferred), labels),
    )
    return None if out == PodAffinity() else out


def spread_constraints(items: Any, labels: Mapping[str, str]) -> tuple[SpreadConstraint, ...]:
    out = []
    for c in items or []:
        if not isinstance(c, Mapping):
            continue
        sel = _with_keys(label_selector(c.get("labelSelector")), labels, c.get("matchLabelKeys"), None)
        min_domains = c.get("minDomains")
        out.append(
            SpreadConstraint(
                max_skew=_int(c.get("maxSkew"), 1),
                topology_key=str(c.get("topologyKey") or ""),
                when_unsatisfiable=str(c.get("whenUnsatisfiable") or "DoNotSchedule"),
                selector=sel,
                min_domains=min_domains if isinstance(min_domains, int) and not isinstance(min_domains, bool) else None,
                node_affinity_policy=str(c.get("nodeAffinityPolicy") or "Honor"),
                node_taints_policy=str(c.get("nodeTaintsPolicy") or "Ignore"),
            )
        )
    return tuple(out)


def objects(items: Any) -> list[Obj]:
    """The objects of a list field (anything else in it, or in its place, is not read)."""
    return [c for c in items if isinstance(c, Mapping)] if isinstance(items, list) else []


def host_ports(spec: Obj) -> tuple[HostPort, ...]:
    """Host ports of the app containers and of sidecar (restartPolicy Always) init containers."""
    containers = objects(spec.get("containers"))
    containers += [c for c in objects(spec.get("initContainers")) if c.get("restartPolicy") == "Always"]
    out = set()
    for c in containers:
        for p in c.get("ports") or []:
            if isinstance(p, Mapping) and _int(p.get("hostPort"), 0) > 0:
                out.add(
                    HostPort(_int(p.get("hostPort"), 0), str(p.get("protocol") or "TCP"), str(p.get("hostIP") or ""))
                )
    return tuple(sorted(out, key=lambda h: (h.port, h.protocol, h.host_ip)))


def _node_requirements(items: Any) -> tuple[NodeSelectorRequirement, ...]:
    return tuple(
        NodeSelectorRequirement(
            str(r.get("key", "")), str(r.get("operator", "")), tuple(str(v) for v in r.get("values") or [])
        )
        for r in items or []
        if isinstance(r, Mapping)
    )


def node_term(t: Obj) -> NodeSelectorTerm:
    return NodeSelectorTerm(_node_requirements(t.get("matchExpressions")), _node_requirements(t.get("matchFields")))


def preferred_nodes(affinity: Obj) -> tuple[PreferredNodeTerm, ...]:
    items = (affinity.get("nodeAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    return tuple(
        PreferredNodeTerm(_int(p.get("weight"), 0), node_term(p["preference"]))
        for p in items
        if isinstance(p, Mapping) and isinstance(p.get("preference"), Mapping)
    )


def pod_extras(name: str, spec: Obj, labels: Mapping[str, str]) -> PodExtras:
    """What a pod asks of other pods, ports and volumes; NO_EXTRAS (the shared empty value) for the many
    pods that ask none of it, each part read only where its field is present (this runs per pod event)."""
    affinity = spec.get("affinity") or {}
    claims: set[str] = set()
    ephemeral: set[str] = set()
    for v in spec.get("volumes") or []:
        if not isinstance(v, Mapping):
            continue
        pvc = v.get("persistentVolumeClaim")
        if isinstance(pvc, Mapping) and pvc.get("claimName"):
            claims.add(str(pvc["claimName"]))
        if isinstance(v.get("ephemeral"), Mapping):
            ephemeral.add(f"{name}-{v.get('name', '')}")
    spread = spec.get("topologySpreadConstraints")
    ports = host_ports(spec)
    if not (affinity or spread or ports or claims or ephemeral):
        return NO_EXTRAS
    return PodExtras(
        affinity=pod_affinity(affinity, labels) if isinstance(affinity, Mapping) else None,
        spread=spread_constraints(spread, labels),
        host_ports=ports,
        preferred_nodes=preferred_nodes(affinity) if isinstance(affinity, Mapping) else (),
        claims=tuple(sorted(claims)),
        ephemeral_claims=tuple(sorted(ephemeral)),
    )

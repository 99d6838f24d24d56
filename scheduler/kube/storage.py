"""Kubernetes storage objects (PVC, PV, StorageClass, CSINode) and Namespaces to our api types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.api.podspec import METADATA_NAME_LABEL
from scheduler.api.storage import (
    BIND_COMPLETED_ANNOTATION,
    SELECTED_NODE_ANNOTATION,
    Claim,
    CSINodeLimits,
    StorageClass,
    TopologySelector,
    Volume,
)
from scheduler.kube.podspec import node_term
from scheduler.kube.quantity import QuantityError, to_canonical

Obj = Mapping[str, Any]
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def _bytes(value: Any) -> int:
    try:
        return to_canonical("storage", value) if value is not None else 0
    except QuantityError:
        return 0


def claim_from_k8s(obj: Obj) -> Claim:
    meta, spec = _meta(obj), obj.get("spec") or {}
    return Claim(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name", "")),
        storage_class=str(spec.get("storageClassName") or ""),
        volume_name=str(spec.get("volumeName") or ""),
        request=_bytes(((spec.get("resources") or {}).get("requests") or {}).get("storage")),
        access_modes=tuple(sorted(str(m) for m in spec.get("accessModes") or [])),
        deleting=bool(meta.get("deletionTimestamp")),
        selected_node=str((meta.get("annotations") or {}).get(SELECTED_NODE_ANNOTATION) or ""),
        bind_completed=BIND_COMPLETED_ANNOTATION in (meta.get("annotations") or {}),
    )


def volume_from_k8s(obj: Obj) -> Volume:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    required = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms") or []
    ref = spec.get("claimRef") or {}
    csi = spec.get("csi") or {}
    return Volume(
        name=str(meta.get("name", "")),
        storage_class=str(spec.get("storageClassName") or ""),
        capacity=_bytes((spec.get("capacity") or {}).get("storage")),
        access_modes=tuple(sorted(str(m) for m in spec.get("accessModes") or [])),
        node_terms=tuple(node_term(t) for t in required if isinstance(t, Mapping)),
        claim_ref=f"{ref.get('namespace') or 'default'}/{ref.get('name')}" if ref.get("name") else "",
        phase=str(status.get("phase") or "Available"),
        csi_driver=str(csi.get("driver") or ""),
        handle=str(csi.get("volumeHandle") or ""),
    )


def storage_class_from_k8s(obj: Obj) -> StorageClass:
    meta = _meta(obj)
    topologies = []
    for term in obj.get("allowedTopologies") or []:
        exprs = tuple(
            (str(e.get("key", "")), tuple(str(v) for v in e.get("values") or []))
            for e in (term.get("matchLabelExpressions") or [])
            if isinstance(e, Mapping)
        )
        topologies.append(TopologySelector(exprs))
    return StorageClass(
        name=str(meta.get("name", "")),
        provisioner=str(obj.get("provisioner") or ""),
        binding_mode=str(obj.get("volumeBindingMode") or "Immediate"),
        allowed_topologies=tuple(topologies),
        default=str((meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)) == "true",
    )


def csinode_from_k8s(obj: Obj) -> CSINodeLimits:
    limits = []
    for d in (obj.get("spec") or {}).get("drivers") or []:
        count = (d.get("allocatable") or {}).get("count") if isinstance(d, Mapping) else None
        if isinstance(count, int) and not isinstance(count, bool):
            limits.append((str(d.get("name", "")), count))
    return CSINodeLimits(str(_meta(obj).get("name", "")), tuple(sorted(limits)))


def namespace_labels(obj: Obj) -> dict[str, str]:
    meta = _meta(obj)
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    labels.setdefault(METADATA_NAME_LABEL, str(meta.get("name", "")))
    return labels

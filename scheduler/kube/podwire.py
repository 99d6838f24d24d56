"""Pods as decoded off the wire: only what the scheduler reads is built, the rest is skipped unparsed.

A pod watch event is mostly what the scheduler never reads (managedFields, container statuses, conditions)
and most events of a running cluster change only that. msgspec decodes a line into `PodWire`, which keeps
the parts the scheduler does read (labels, annotations, owners, the spec) as raw JSON slices: comparing a
digest of them with the last event's tells whether anything the scheduler reads changed, before a single
dict is built. `to_dict()` builds the slim object `convert.pod_from_k8s` reads (and the debug API keeps);
when only the status or metadata changed, the pod's requests, constraints and extras are reused, not
converted again (the shape digest).

Every field `convert.pod_from_k8s` (and the backend's pod handling) reads must be decoded here:
tests/unit/test_podwire.py checks that converting the slim object equals converting the full one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

_NULL = msgspec.Raw(b"null")
# a bound pod's spec as the API server writes it: nodeName follows other fields (it is never first), and node
# names hold no quote, so the pair ends at the next quote
_NODE_PAIR = b',"nodeName":"'
_decode_any: Callable[[bytes | msgspec.Raw], Any] = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class _Meta(msgspec.Struct):
    """The ObjectMeta fields the scheduler reads (no managedFields, finalizers, generateName)."""

    name: Any = None
    namespace: Any = None
    uid: Any = None
    resourceVersion: Any = None
    creationTimestamp: Any = None
    deletionTimestamp: Any = None
    labels: msgspec.Raw = _NULL
    annotations: msgspec.Raw = _NULL
    ownerReferences: msgspec.Raw = _NULL


class _Status(msgspec.Struct):
    """What the scheduler reads of a pod's status: whether it runs or ended, and since when."""

    phase: Any = None
    startTime: Any = None


class _SpecHead(msgspec.Struct):
    """The spec fields read when the rest of the spec is that of the cached pod (`to_dict(slim_spec=True)`):
    the node (the same-spec conversion) and what the grouper keeps of a pod."""

    nodeName: Any = None
    schedulerName: Any = None
    priorityClassName: Any = None


_decode_head = msgspec.json.Decoder(_SpecHead).decode


class PodWire(msgspec.Struct):
    """One pod as received; the raw slices reference the received bytes until `to_dict()`."""

    metadata: _Meta = msgspec.field(default_factory=_Meta)
    spec: msgspec.Raw = _NULL
    status: _Status = msgspec.field(default_factory=_Status)

    @property
    def key(self) -> str:
        """The cache key, <namespace>/<name> (as backends.kubernetes keys namespaced objects)."""
        m = self.metadata
        return f"{m.namespace}/{m.name}" if m.namespace else str(m.name)

    @property
    def resource_version(self) -> str:
        return str(self.metadata.resourceVersion or "")

    def signatures(self) -> tuple[bytes, bytes]:
        """(shape, whole): a digest of the labels and the spec but its node, which decide all
        `convert.pod_from_k8s` derives from them (requests, constraints, extras...: a bind changes none of
        them); and one of everything `to_dict()` carries but the resourceVersion. Equal wholes: equal pods as
        far as the scheduler can tell. Each part is one whole JSON value (the spec without its
        `,"nodeName":"..."` pair still is), so their concatenation is unambiguous; sha256 runs in hardware
        here. A spec whose node pair is not where the API server writes it keeps its node in the shape:
        only the reuse is lost, never a change."""
        m, s = self.metadata, self.status
        spec = bytes(self.spec)
        h = hashlib.sha256(m.labels)
        at = spec.find(_NODE_PAIR)
        end = spec.find(b'"', at + len(_NODE_PAIR)) + 1 if at >= 0 else 0
        if end:
            view = memoryview(spec)
            h.update(view[:at])
            h.update(view[end:])
        else:
            h.update(spec)
        shape = h.digest()
        h.update(spec[at:end] if end else b"")
        h.update(m.annotations)
        h.update(m.ownerReferences)
        h.update(_encode((m.uid, m.creationTimestamp, m.deletionTimestamp, s.phase, s.startTime)))
        return shape, h.digest()

    def to_dict(self, slim_spec: bool = False) -> dict[str, Any]:
        """The pod as a Kubernetes object holding only what the scheduler reads. `slim_spec`: of the spec
        only `_SpecHead`'s fields, for a pod whose shape (`signatures`) is the cached pod's, whose conversion
        is reused (a third of the decoding cost of a status update)."""
        m = self.metadata
        meta: dict[str, Any] = {}
        for k, v in (
            ("name", m.name),
            ("namespace", m.namespace),
            ("uid", m.uid),
            ("resourceVersion", m.resourceVersion),
            ("creationTimestamp", m.creationTimestamp),
            ("deletionTimestamp", m.deletionTimestamp),
            ("labels", _decode_any(m.labels)),
            ("annotations", _decode_any(m.annotations)),
            ("ownerReferences", _decode_any(m.ownerReferences)),
        ):
            if v is not None:
                meta[k] = v
        s = self.status
        status = {k: v for k, v in (("phase", s.phase), ("startTime", s.startTime)) if v is not None}
        if slim_spec:
            head = _decode_head(self.spec)
            spec = {
                k: v
                for k, v in (
                    ("nodeName", head.nodeName),
                    ("schedulerName", head.schedulerName),
                    ("priorityClassName", head.priorityClassName),
                )
                if v is not None
            }
        else:
            spec = _decode_any(self.spec)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec or {}, "status": status}


class _Event(msgspec.Struct):
    type: str
    object: PodWire = msgspec.field(default_factory=PodWire)


class _ListMeta(msgspec.Struct):
    resourceVersion: Any = None
    continue_: Any = msgspec.field(default=None, name="continue")


class _PodList(msgspec.Struct):
    kind: Any = None
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[PodWire] | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_list = msgspec.json.Decoder(_PodList).decode


def decode_event(line: bytes) -> dict[str, Any]:
    """A pod watch event line: {"type", "object": PodWire}; anything that is not a pod (an ERROR event's
    Status) comes back as plain dicts."""
    try:
        ev = _decode_event(line)
    except msgspec.ValidationError:
        ev = None
    if ev is None or ev.type == "ERROR":
        out: dict[str, Any] = _decode_any(line)
        return out
    return {"type": ev.type, "object": ev.object}


def decode_list(data: bytes) -> dict[str, Any]:
    """A PodList page: {"metadata": {resourceVersion, continue}, "items": [PodWire, ...]}; a body that is
    not a PodList comes back as plain dicts."""
    try:
        page = _decode_list(data)
    except msgspec.ValidationError:
        page = None
    if page is None or page.kind not in (None, "PodList"):
        out: dict[str, Any] = _decode_any(data)
        return out
    meta = {"resourceVersion": page.metadata.resourceVersion, "continue": page.metadata.continue_}
    return {"metadata": meta, "items": page.items or []}

"""Pods as decoded off the wire: only what the scheduler reads is built, the rest is skipped unparsed.

A pod watch event is mostly what the scheduler never reads (managedFields, container statuses, conditions)
and most events of a running cluster change only that. msgspec decodes a line into `PodWire`, which keeps
the parts the scheduler does read (labels, annotations, owners, the spec) as raw JSON slices: comparing a
digest of them with the last event's tells whether anything the scheduler reads changed, before a single
dict is built. `to_dict()` builds the slim object `convert.pod_from_k8s` reads (and the debug API keeps).
`spec_key()` names what the conversion derives from the spec (requests, constraints, extras): pods that
share it (a workload's replicas, a pod through its life) share one conversion of their spec.

Every field `convert.pod_from_k8s` (and the backend's pod handling) reads must be decoded here:
tests/unit/test_podwire.py checks that converting the slim object equals converting the full one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

_NULL = msgspec.Raw(b"null")
_decode_any: Callable[[bytes | msgspec.Raw], Any] = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class _Meta(msgspec.Struct, gc=False):
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


class _Status(msgspec.Struct, gc=False):
    """What the scheduler reads of a pod's status: whether it runs or ended, and since when."""

    phase: Any = None
    startTime: Any = None


class _SpecHead(msgspec.Struct, gc=False):
    """The spec fields read when the conversion of the rest is reused (`to_dict(slim_spec=True)`): the node
    and priority class (the same-spec conversion) and what the grouper keeps of a pod."""

    nodeName: Any = None
    schedulerName: Any = None
    priorityClassName: Any = None


_decode_head = msgspec.json.Decoder(_SpecHead).decode


class _Container(msgspec.Struct, gc=False):
    """What the conversion reads of a container: its resources, host ports and (init containers) whether it
    is a sidecar; the name names it in problems."""

    name: Any = None
    resources: msgspec.Raw = _NULL
    ports: msgspec.Raw = _NULL
    restartPolicy: Any = None


class _Volume(msgspec.Struct, gc=False):
    """A volume as the conversion reads it: a claim it mounts, or one made for the pod (named after it)."""

    name: Any = None
    persistentVolumeClaim: msgspec.Raw = _NULL
    ephemeral: msgspec.Raw = _NULL


class _SpecRead(msgspec.Struct, gc=False):
    """Every spec field `convert.pod_from_k8s` reads but the node (tests/unit/test_podwire.py records the
    conversion's reads and fails on one not here)."""

    schedulerName: Any = None
    priorityClassName: Any = None
    priority: Any = None
    nodeSelector: msgspec.Raw = _NULL
    tolerations: msgspec.Raw = _NULL
    affinity: msgspec.Raw = _NULL
    topologySpreadConstraints: msgspec.Raw = _NULL
    overhead: msgspec.Raw = _NULL
    resourceClaims: msgspec.Raw = _NULL
    containers: list[_Container] | None = None
    initContainers: list[_Container] | None = None
    volumes: list[_Volume] | None = None


_decode_spec = msgspec.json.Decoder(_SpecRead).decode


class PodWire(msgspec.Struct, gc=False):
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

    def signature(self) -> bytes:
        """A digest of everything `to_dict()` carries but the resourceVersion: equal signatures, equal pods as
        far as the scheduler can tell. Each part is one whole JSON value, so their concatenation is
        unambiguous; sha256 runs in hardware here."""
        m, s = self.metadata, self.status
        h = hashlib.sha256(m.labels)
        h.update(self.spec)
        h.update(m.annotations)
        h.update(m.ownerReferences)
        h.update(_encode((m.uid, m.creationTimestamp, m.deletionTimestamp, s.phase, s.startTime)))
        return h.digest()

    def spec_key(self) -> bytes | None:
        """What decides the part of the conversion taken from the spec (requests, constraints, problems,
        extras...; `convert.pod_from_k8s`'s `same_spec`): the spec fields it reads but the node, the labels
        where a term takes values from them (matchLabelKeys), the name where a volume is named after it.
        The pods of one workload share it (they differ in names, env, the service-account volume), so one
        conversion serves them all, and a pod its whole life. None: a spec of unexpected shape (no reuse)."""
        try:
            spec = _decode_spec(self.spec)
        except msgspec.ValidationError:
            return None
        volumes: list[tuple[Any, msgspec.Raw, msgspec.Raw | None]] | None = None
        named = False
        if spec.volumes:
            volumes = []
            for v in spec.volumes:  # the service-account volume's name is random: left out
                if v.ephemeral != _NULL:
                    named = True
                    volumes.append((v.name, v.persistentVolumeClaim, v.ephemeral))
                elif v.persistentVolumeClaim != _NULL:
                    volumes.append((None, v.persistentVolumeClaim, None))
            spec.volumes = None
        terms = spec.affinity != _NULL or spec.topologySpreadConstraints != _NULL
        return _encode(
            (
                spec,
                volumes,
                self.metadata.labels if terms else None,
                self.metadata.name if named else None,
            )
        )

    def node(self) -> str:
        """spec.nodeName ("" while pending)."""
        return str(_decode_head(self.spec).nodeName or "")

    def _meta(self, decode: Callable[[msgspec.Raw], Any] | None) -> dict[str, Any]:
        """The ObjectMeta fields read, those present; labels, annotations and owners decoded by `decode`, or
        (None) kept as the received slices."""
        m = self.metadata
        meta = {
            k: v
            for k, v in (
                ("name", m.name),
                ("namespace", m.namespace),
                ("uid", m.uid),
                ("resourceVersion", m.resourceVersion),
                ("creationTimestamp", m.creationTimestamp),
                ("deletionTimestamp", m.deletionTimestamp),
            )
            if v is not None
        }
        for k, raw in (("labels", m.labels), ("annotations", m.annotations), ("ownerReferences", m.ownerReferences)):
            if raw != _NULL:
                meta[k] = decode(raw) if decode is not None else raw
        return meta

    def debug_json(self) -> bytes:
        """What the debug API keeps of the pod (as backends.kubernetes `_debug_copy` makes it of `to_dict()`:
        the metadata read, the whole spec, the phase), as JSON made of the received slices: the spec is not
        decoded."""
        status = {"phase": self.status.phase} if self.status.phase is not None else {}
        spec = self.spec if self.spec != _NULL else msgspec.Raw(b"{}")
        meta = self._meta(None)
        return _encode({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})

    def to_dict(self, slim_spec: bool = False) -> dict[str, Any]:
        """The pod as a Kubernetes object holding only what the scheduler reads. `slim_spec`: of the spec
        only `_SpecHead`'s fields, for a pod whose spec's conversion is reused (`spec_key`): a third of the
        decoding cost."""
        meta = self._meta(_decode_any)
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


class _Event(msgspec.Struct, gc=False):
    type: str
    object: PodWire = msgspec.field(default_factory=PodWire)


class _ListMeta(msgspec.Struct, gc=False):
    resourceVersion: Any = None
    continue_: Any = msgspec.field(default=None, name="continue")


class _PodList(msgspec.Struct, gc=False):
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

"""Walking ownerReferences from a pod to its top owner, over any way of reading objects.

The daemon reads owners from the API server, simulate and replay from the objects in their files; both
walk the chain here, so a file holding a workload's objects is grouped as the daemon groups the cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.grouper.rules import meta

Obj = Mapping[str, Any]
MAX_DEPTH = 16  # owner chains are short (LeaderWorkerSet's workers: 4); a longer one is a loop


@dataclass(frozen=True, slots=True)
class Ref:
    """One ownerReference, with the namespace of the object that holds it (owners share it)."""

    api_version: str
    kind: str
    name: str
    uid: str
    namespace: str

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def controller_ref(obj: Obj) -> Ref | None:
    """The object's controller owner (the one with controller: true; the only owner when none says so)."""
    refs = [r for r in meta(obj).get("ownerReferences") or [] if isinstance(r, Mapping)]
    chosen = next((r for r in refs if r.get("controller")), refs[0] if len(refs) == 1 else None)
    if chosen is None:
        return None
    return Ref(
        str(chosen.get("apiVersion", "")),
        str(chosen.get("kind", "")),
        str(chosen.get("name", "")),
        str(chosen.get("uid", "")),
        str(meta(obj).get("namespace") or "default"),
    )


@dataclass(frozen=True, slots=True)
class Chain:
    owners: tuple[Obj, ...]  # nearest first
    missing: Ref | None = None  # the owner that could not be read (the chain stops below it)


def walk(pod: Obj, lookup: Callable[[Ref], Obj | None]) -> Chain:
    """The pod's owners, nearest first, up to the top owner or the first one `lookup` cannot find. A ref
    whose object has another uid (deleted and re-created under the same name) counts as not found."""
    owners: list[Obj] = []
    seen: set[str] = set()
    current: Obj = pod
    for _ in range(MAX_DEPTH):
        ref = controller_ref(current)
        if ref is None or ref.uid in seen:
            break
        obj = lookup(ref)
        if obj is None or (ref.uid and str(meta(obj).get("uid", "")) not in ("", ref.uid)):
            return Chain(tuple(owners), ref)
        seen.add(ref.uid)
        owners.append(obj)
        current = obj
    return Chain(tuple(owners))


class ObjectIndex:
    """Objects by uid and by (kind, namespace, name): the lookup for a set of objects read from files."""

    def __init__(self, objects: Iterable[Obj]) -> None:
        self.by_uid: dict[str, Obj] = {}
        self.by_name: dict[tuple[str, str, str], Obj] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: Obj) -> None:
        m = meta(obj)
        uid = str(m.get("uid") or "")
        if uid:
            self.by_uid[uid] = obj
        self.by_name[(str(obj.get("kind", "")), str(m.get("namespace") or "default"), str(m.get("name", "")))] = obj

    def lookup(self, ref: Ref) -> Obj | None:
        if ref.uid and ref.uid in self.by_uid:
            return self.by_uid[ref.uid]
        for ns in (ref.namespace, "default"):  # cluster-scoped owners are indexed under "default"
            obj = self.by_name.get((ref.kind, ns, ref.name))
            if obj is not None:
                return obj
        return None

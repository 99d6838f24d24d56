"""In-memory cluster: the product's simulation backend (simulate, replay, demo), not a test double.

It keeps the Kubernetes objects themselves, so what a simulation binds can be written back out as
YAML, and it feeds every change through the same ClusterState.apply_object path as the real watch."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from scheduler.backends.base import BindError
from scheduler.cache.cluster_state import ClusterState


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or "default") if obj.get("kind") in ("Pod", "PodGroup") else ""
    return (str(obj.get("kind")), ns, str(meta.get("name", "")))


class MemoryBackend:
    def __init__(self, objects: Iterable[Mapping[str, Any]], scheduler_name: str = "kai-scheduler") -> None:
        self.state = ClusterState(scheduler_name)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        for obj in objects:
            self.upsert(obj)

    def upsert(self, obj: Mapping[str, Any]) -> None:
        stored = copy.deepcopy(dict(obj))
        if stored.get("kind") in ("Pod", "PodGroup"):
            stored.setdefault("metadata", {}).setdefault("namespace", "default")
        self.objects[_key(stored)] = stored
        self.state.apply_object(stored)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is not None:
            self.state.apply_object(obj, deleted=True)

    def bind_gang(self, gang: str, bindings: list[tuple[str, str]]) -> None:
        pods = []
        for pod_key, node in bindings:
            ns, name = pod_key.split("/", 1)
            pod = self.objects.get(("Pod", ns, name))
            if pod is None:
                raise BindError(f"{gang}: pod {pod_key} no longer exists")
            if (pod.get("spec") or {}).get("nodeName"):
                raise BindError(f"{gang}: pod {pod_key} is already bound")
            if ("Node", "", node) not in self.objects:
                raise BindError(f"{gang}: node {node} no longer exists")
            pods.append((pod, node))
        for pod, node in pods:  # validated above: nothing below can fail, so the gang binds whole
            bound = copy.deepcopy(pod)
            bound.setdefault("spec", {})["nodeName"] = node
            bound.setdefault("status", {})["phase"] = "Running"
            self.upsert(bound)

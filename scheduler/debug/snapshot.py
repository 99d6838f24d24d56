"""Snapshots the debug API hands out: the objects a cycle was decided on, plus the configuration.

The document is a `kind: List` (so `kaisched simulate` loads it as is) with one extra top-level field,
`kaisched`, holding the cycle and the configuration (`kaisched replay` uses it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from scheduler.api.labels import AWAITING_POD_GROUP_ANNOTATION
from scheduler.debug.history import CycleEntry, CycleHistory, RawObjects
from scheduler.framework.config import ConfigError, SchedulerConfig

if TYPE_CHECKING:
    from scheduler.framework.cycleinfo import CycleInfo

FORMAT = "kaisched.snapshot/v1"
_decode = msgspec.json.Decoder().decode
KIND_ORDER = {k: i for i, k in enumerate(("PriorityClass", "Queue", "Topology", "Node", "PodGroup", "Pod"))}


def config_to_dict(config: SchedulerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        head, *rest = f.name.split("_")
        out[head + "".join(p.capitalize() for p in rest)] = getattr(config, f.name)
    return out


def snapshot_document(entry: CycleEntry, config: SchedulerConfig) -> dict[str, Any]:
    """The objects as the cycle saw them: pods bound by an earlier cycle but not yet seen back through the
    watch carry the node the cache assumed for them."""
    if entry.raw is None:
        raise ValueError(f"cycle {entry.cycle} no longer holds its snapshot")
    items: list[dict[str, Any]] = []
    for (kind, key), obj in sorted(entry.raw.items(), key=lambda kv: (KIND_ORDER.get(kv[0][0], 99), kv[0])):
        item: dict[str, Any] = _decode(obj)  # a new object each time: changed freely
        node = entry.assumed.get(key) if kind == "Pod" else None
        if node and not (item.get("spec") or {}).get("nodeName"):
            item.setdefault("spec", {})["nodeName"] = node
        held = entry.snapshot.held.get(key) if kind == "Pod" and entry.snapshot is not None else None
        if held is not None:  # the grouper held it back this cycle: replay holds it too (the owners are not here)
            item.setdefault("metadata", {}).setdefault("annotations", {})[AWAITING_POD_GROUP_ANNOTATION] = held[1]
        items.append(item)
    return {
        "apiVersion": "v1",
        "kind": "List",
        "kaisched": {"format": FORMAT, "cycle": entry.cycle, "config": config_to_dict(config)},
        "items": items,
    }


def split_document(doc: Mapping[str, Any]) -> tuple[list[dict[str, Any]], SchedulerConfig | None]:
    """(objects, configuration if the document carries one); objects of any other document pass through."""
    meta = doc.get("kaisched")
    config = None
    if isinstance(meta, Mapping) and isinstance(meta.get("config"), Mapping):
        config = SchedulerConfig.from_dict(dict(meta["config"]))
    if doc.get("kind") == "List":
        items = doc.get("items") or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ConfigError("the snapshot's items must be a list of Kubernetes objects")
        return list(items), config
    return [dict(doc)], config


class SnapshotRecorder:
    """A Daemon observer: files each cycle into the history, with a view of the raw objects behind it.

    The raw map is copied (shallowly: the objects themselves are never mutated) only when the cache changed
    since the last copy, so an idle cluster costs nothing per cycle."""

    def __init__(
        self,
        history: CycleHistory,
        raw: RawObjects,
        assumed: Mapping[str, tuple[str, float]],
    ) -> None:
        self.history = history
        self.raw = raw
        self.assumed = assumed
        self._view: RawObjects = {}
        self._generation = -1

    def observe(self, info: CycleInfo, generation: int) -> None:
        if generation != self._generation:
            self._view = dict(self.raw)
            self._generation = generation
        # binds of this cycle are not in its snapshot: keep only what was assumed before the cycle began
        began = info.started or time.monotonic() - sum(s for _, s in info.phases)
        assumed = {k: node for k, (node, when) in list(self.assumed.items()) if when < began}
        self.history.add(
            CycleEntry(
                record=info.record,
                start_unix=info.start_unix,
                phases=info.phases,
                summary=dict(info.summary),
                snapshot=info.snapshot,
                raw=self._view,
                assumed=assumed,
            )
        )

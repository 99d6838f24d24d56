"""Node order: `binpack` visits the fullest nodes first (least free GPU, then CPU, then memory), so
gangs leave whole nodes free; `spread` the emptiest first, one pod per node per pass, as
kube-scheduler's least-allocated scoring would place them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedKeyList

from scheduler.framework.nodes import NodeOrder, NodeTable
from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin

if TYPE_CHECKING:
    from scheduler.framework.session import Session


def _binpack_key(table: NodeTable) -> Callable[[int], tuple[Any, ...]]:
    free, names = table.free, table.names
    return lambda i: (free[i][0], free[i][1], free[i][2], names[i])


def _spread_key(table: NodeTable) -> Callable[[int], tuple[Any, ...]]:
    free, names = table.free, table.names
    return lambda i: (-free[i][0], -free[i][1], -free[i][2], names[i])


def _binpack_scan(index: SortedKeyList, gpu: int) -> Iterator[int]:
    yield from index.irange_key(min_key=(gpu,))  # nodes with fewer GPUs free than asked come first: skip


def _spread_scan(index: SortedKeyList, gpu: int) -> Iterator[int]:
    yield from index.irange_key(max_key=(-gpu + 1,), inclusive=(True, False))


BINPACK = NodeOrder(_binpack_key, _binpack_scan)
SPREAD = NodeOrder(_spread_key, _spread_scan, one_per_pass=True)


@plugin("nodeorder")
class NodeOrderPlugin(Plugin):
    name = "nodeorder"

    def node_order(self, session: Session) -> NodeOrder | None:
        return SPREAD if session.config.node_order == "spread" else BINPACK

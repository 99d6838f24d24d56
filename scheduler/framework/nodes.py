"""Dense, mutable per-node free capacity for one session, plus topology domain trees over it.

Resource vectors are plain lists indexed by `dims` so the hot loops do integer arithmetic only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedKeyList

from scheduler.api.node import Node
from scheduler.api.resources import CPU, GPU, MEMORY, Resources
from scheduler.api.topology import HOSTNAME_LABEL, Topology

Vec = list[int]
SparseReq = tuple[tuple[int, int], ...]  # (dim index, amount) for non-zero amounts

# Domains with more nodes than this keep a sorted index instead of sorting on every visit.
SORTED_INDEX_MIN = 96


@dataclass(slots=True, eq=False)
class Domain:
    """One topology domain (or the whole cluster). Aggregate `free` is kept exact as pods are placed."""

    path: str
    level: int  # index into the topology's levels; -1 for the root ("cluster")
    value: str
    free: Vec
    alloc: Vec
    children: list[Domain] = field(default_factory=list)
    nodes: list[int] = field(default_factory=list)  # set on the deepest level only (node holders)
    index: SortedKeyList | None = None  # sorted node index for large node holders
    parent: Domain | None = None
    propagate: bool = True  # False for on-demand host domains: their parents are updated via the holder

    def all_nodes(self) -> Iterator[int]:
        if self.nodes or not self.children:
            yield from self.nodes
        else:
            for child in self.children:
                yield from child.all_nodes()


class NodeTable:
    """All nodes of the snapshot, by index in name order."""

    def __init__(
        self,
        nodes: Sequence[Node],
        used: dict[str, Resources],
        extra_dims: Sequence[str],
        order: NodeOrder,
    ) -> None:
        names = {CPU, MEMORY, GPU, "pods", *extra_dims}
        for node in nodes:
            names.update(node.allocatable.names())
        # fixed leading dims make the order key cheap: gpu, cpu, memory
        self.dims: tuple[str, ...] = (GPU, CPU, MEMORY, *sorted(names - {GPU, CPU, MEMORY}))
        self.dim_index = {d: i for i, d in enumerate(self.dims)}
        self.nodes = list(nodes)
        self.names = [n.name for n in nodes]
        self.by_name = {n.name: i for i, n in enumerate(nodes)}
        self.alloc: list[Vec] = [self.vector(n.allocatable) for n in nodes]
        self.free: list[Vec] = []
        for node, alloc in zip(nodes, self.alloc, strict=True):
            u = used.get(node.name)
            self.free.append([a - b for a, b in zip(alloc, self.vector(u), strict=True)] if u else list(alloc))
        self.order = order
        self.spread = order.one_per_pass
        # bumps on every committed statement: memoised failures are valid only within one generation
        self.generation = 0
        self._full: dict[SparseReq, bytearray] = {}
        # capacity that evicted victims are still releasing, per node; counted in `free` (and in every
        # aggregate), so `free - releasing` is what is idle now: allocate uses idle, pipeline uses free
        self.releasing: dict[int, Vec] = {}
        # cordoned nodes stay in the aggregates: a pod may tolerate the cordon (kube-scheduler allows it)
        self.schedulable = bytearray(1 if n.ready else 0 for n in nodes)
        # every domain a node belongs to (all topologies plus the cluster), for aggregate updates
        self.memberships: list[list[Domain]] = [[] for _ in nodes]
        self.cluster = self._make_root("cluster", range(len(nodes)))

    def full_for(self, req: SparseReq) -> bytearray:
        """Nodes known to have no idle room for one pod of `req`. Valid while capacity only shrinks: a node
        is marked only when no open statement touches it (so its free is committed, not a trial's), and
        every eviction (the one way capacity grows mid-cycle) drops all marks (`capacity_grew`)."""
        mask = self._full.get(req)
        if mask is None:
            mask = self._full[req] = bytearray(len(self.nodes))
        return mask

    def capacity_grew(self) -> None:
        self._full.clear()

    def vector(self, res: Resources) -> Vec:
        vec = [0] * len(self.dims)
        for name, value in res.items:
            i = self.dim_index.get(name)
            if i is not None:
                vec[i] = value
        return vec

    def sparse(self, res: Resources) -> SparseReq | None:
        """Sparse request; None when it names a resource no node has (it can never fit)."""
        out = []
        for name, value in res.items:
            i = self.dim_index.get(name)
            if i is None:
                return None
            out.append((i, value))
        return tuple(out)

    def resources(self, vec: Sequence[int]) -> Resources:
        return Resources.of((d, v) for d, v in zip(self.dims, vec, strict=True) if v)

    def sparse_known(self, res: Resources) -> SparseReq:
        """Sparse request over the table's dims, ignoring names no node has (what a running pod uses)."""
        idx = self.dim_index
        return tuple((idx[name], value) for name, value in res.items if name in idx)

    def order_key(self) -> Callable[[int], tuple[Any, ...]]:
        return self.order.key(self)

    def _make_root(self, path: str, members: Sequence[int] | range) -> Domain:
        dom = Domain(path, -1, path, [0] * len(self.dims), [0] * len(self.dims))
        self._attach_nodes(dom, list(members))
        return dom

    def _attach_nodes(self, dom: Domain, members: list[int]) -> None:
        dom.nodes = members
        for i in members:
            self.memberships[i].append(dom)
        if len(members) >= SORTED_INDEX_MIN:
            dom.index = SortedKeyList(members, key=self.order_key())
        self._aggregate(dom, members)

    def _aggregate(self, dom: Domain, members: Sequence[int]) -> None:
        free, alloc = dom.free, dom.alloc
        for i in members:
            if not self.schedulable[i]:
                continue
            for d, v in enumerate(self.free[i]):
                free[d] += v
            for d, v in enumerate(self.alloc[i]):
                alloc[d] += v

    def build_topology(self, topo: Topology) -> TopologyTree:
        return TopologyTree(self, topo)

    def counts_in(self, node: int, dom: Domain) -> bool:
        """Whether the node's capacity is in `dom`'s aggregate (`apply` updates it): the node is a member
        of `dom` or of a domain below it."""
        for d in self.memberships[node]:
            p: Domain | None = d
            while p is not None:
                if p is dom:
                    return True
                p = p.parent if d.propagate else None
        return False

    def apply(self, node: int, req: SparseReq, count: int) -> None:
        """Take `count` pods of `req` from a node (a negative count gives capacity back), keeping every
        aggregate and sorted index exact. Never call it while iterating a sorted index of this node."""
        holders = [d for d in self.memberships[node] if d.index is not None]
        for dom in holders:
            assert dom.index is not None
            dom.index.remove(node)
        f = self.free[node]
        for d, v in req:
            f[d] -= v * count
        for dom in self.memberships[node]:
            p: Domain | None = dom
            while p is not None:
                for d, v in req:
                    p.free[d] -= v * count
                p = p.parent if dom.propagate else None
        for dom in holders:
            assert dom.index is not None
            dom.index.add(node)


@dataclass(frozen=True, slots=True)
class NodeOrder:
    """How nodes are visited (the node_order hook's answer).

    `key(table)` gives a sort key over node indexes that reads the table's live free vectors; the sorted
    indexes keep it. `scan(index, gpu)` walks a sorted index in order, skipping the part where no node
    has `gpu` free. `one_per_pass` places one pod per node per pass (spreading a gang)."""

    key: Callable[[NodeTable], Callable[[int], tuple[Any, ...]]]
    scan: Callable[[SortedKeyList, int], Iterator[int]]
    one_per_pass: bool = False


def _name_key(table: NodeTable) -> Callable[[int], tuple[Any, ...]]:
    names = table.names
    return lambda i: (names[i],)


def _scan_all(index: SortedKeyList, gpu: int) -> Iterator[int]:
    yield from index


NAME_ORDER = NodeOrder(_name_key, _scan_all)  # when no plugin orders nodes: by name


class TopologyTree:
    """Domains of one Topology over the nodes that carry every level label.

    A trailing `kubernetes.io/hostname` level gets no domain objects up front (one per node would double
    the cost of building the tree): the level above holds the nodes, and per-host domains are made only
    when a gang asks for placement at the hostname level."""

    def __init__(self, table: NodeTable, topo: Topology) -> None:
        self.table = table
        self.topology = topo
        self.levels = topo.levels
        self.host_level = len(topo.levels) - 1 if topo.levels and topo.levels[-1] == HOSTNAME_LABEL else None
        built = topo.levels[:-1] if self.host_level is not None else topo.levels
        if not built and self.host_level is not None:
            built = ()
        self.root = Domain(topo.name, -1, "cluster", [0] * len(table.dims), [0] * len(table.dims))
        self._by_level: list[list[Domain]] = [[] for _ in built]
        self._hosts: list[Domain] | None = None
        self.node_chain: dict[int, Domain] = {}  # node -> deepest built domain holding it
        members: dict[tuple[str, ...], list[int]] = {}
        for i, node in enumerate(table.nodes):
            labels = node.label_map()
            values = tuple(labels.get(level) for level in topo.levels)
            if any(v is None for v in values):
                continue
            members.setdefault(tuple(v for v in values[: len(built)] if v is not None), []).append(i)
        index: dict[tuple[str, ...], Domain] = {}
        for values in sorted(members):
            parent = self.root
            for lvl in range(len(values)):
                prefix = values[: lvl + 1]
                dom = index.get(prefix)
                if dom is None:
                    dims = len(table.dims)
                    dom = Domain("/".join(prefix), lvl, values[lvl], [0] * dims, [0] * dims)
                    dom.parent = parent
                    parent.children.append(dom)
                    self._by_level[lvl].append(dom)
                    index[prefix] = dom
                parent = dom
            nodes = members[values]
            # the deepest built domain holds the nodes; aggregates flow up through parents
            if parent is self.root:
                self.root.nodes = []
            table._attach_nodes(parent, nodes)
            for i in nodes:
                self.node_chain[i] = parent
        for lvl in range(len(built) - 2, -1, -1):
            for dom in self._by_level[lvl]:
                for child in dom.children:
                    for d in range(len(table.dims)):
                        dom.free[d] += child.free[d]
                        dom.alloc[d] += child.alloc[d]
        if built:
            for dom in self._by_level[0]:
                for d in range(len(table.dims)):
                    self.root.free[d] += dom.free[d]
                    self.root.alloc[d] += dom.alloc[d]

    def level_index(self, label: str) -> int | None:
        return self.levels.index(label) if label in self.levels else None

    def domains(self, level: int) -> list[Domain]:
        if level == self.host_level:
            return self._host_domains()
        return self._by_level[level]

    def _host_domains(self) -> list[Domain]:
        if self._hosts is None:
            table = self.table
            hosts = []
            for i, holder in sorted(self.node_chain.items()):
                alloc = table.alloc[i] if table.schedulable[i] else [0] * len(table.dims)
                free = list(table.free[i]) if table.schedulable[i] else [0] * len(table.dims)
                path = f"{holder.path}/{table.names[i]}" if holder is not self.root else table.names[i]
                dom = Domain(path, len(self.levels) - 1, table.names[i], free, list(alloc), nodes=[i])
                dom.parent = holder
                dom.propagate = False  # its parents are updated through the holder already
                table.memberships[i].append(dom)
                hosts.append(dom)
            self._hosts = hosts
        return self._hosts

    def domain_of(self, node: int, level: int) -> Domain | None:
        holder = self.node_chain.get(node)
        if holder is None:
            return None
        if level == self.host_level:
            return next((d for d in self._host_domains() if d.nodes[0] == node), None)
        dom: Domain | None = holder
        while dom is not None and dom.level > level:
            dom = dom.parent
        return dom

"""Placing one gang inside a statement: its groups, pod classes and tiers, member placement and fill.

Every placement goes straight into the statement (so aggregates and sorted indexes move with it); a
failed trial rolls back to its checkpoint. Only a gang that fits completely is committed (by the
action)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from scheduler.actions.common.members import (
    CYCLE_BUDGET_GANGS,
    DEFAULT_BUDGET,
    Budget,
    Demand,
    Outcome,
    search_members,
)
from scheduler.actions.common.members import apply as apply_outcome
from scheduler.actions.common.topology import Tier, fits, placements, tightness
from scheduler.api.pod import Pod
from scheduler.api.podgroup import TopologyConstraint
from scheduler.api.reasons import Reason
from scheduler.api.topology import Topology
from scheduler.framework.jobs import Group, Job
from scheduler.framework.nodes import Domain, NodeTable, SparseReq, TopologyTree
from scheduler.framework.plugin import Plugin
from scheduler.framework.record import LevelAttempt
from scheduler.framework.session import Session
from scheduler.framework.statement import Statement

# where each pod class of a gang went: id(class) -> (domain, pods of the class placed)
Chosen = dict[int, tuple[Domain, int]]


@dataclass(slots=True)
class Rejected:
    """A pod that found room but no node its pod filters accept: (reason, why) -> nodes, for the record."""

    pod: str
    nodes: dict[tuple[Reason, str], int]

    def reason(self) -> Reason:
        return max(self.nodes.items(), key=lambda kv: (kv[1], kv[0]))[0][0]

    def message(self) -> str:
        detail = ", ".join(f"{n} {why}" for (_, why), n in sorted(self.nodes.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"pod {self.pod}: every node with room for it was ruled out: {detail}"


class PlacementError(Exception):
    """The gang cannot be placed as it stands; carries the reason for the record."""

    def __init__(self, reason: Reason, message: str, attempts: tuple[LevelAttempt, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.attempts = attempts


@dataclass(slots=True, eq=False)
class PodClass:
    """Interchangeable pending pods of one group: same request, same static constraints."""

    req: SparseReq
    mask: bytearray
    pods: list[Pod]
    gpu: int  # request of dim 0 (gpu), for the sorted index's lower bound
    dynamic: list[Plugin] = field(default_factory=list)  # pod filters that must see each pod
    scorers: list[Plugin] = field(default_factory=list)  # node scores that tell nodes apart for its pods
    eligible: int = 0  # nodes its static filters accept (the most constrained class goes first)


@dataclass(slots=True, eq=False)
class GroupPlan:
    group: Group
    tier: Tier | None  # None: inherits the parent's domain
    classes: list[PodClass]
    need: int  # pods (leaf) that must be placed now; for inner groups: children that must be satisfied
    need_vec: list[int]
    children: list[GroupPlan] = field(default_factory=list)


class GangPlacer:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.table: NodeTable = session.table
        # the last pod that found no node because a pod filter kept it off every node with room
        self.rejected: Rejected | None = None
        self.affinity_trees: dict[str, TopologyTree] = {}  # node label -> a one-level tree over it
        self.unlabelled: dict[str, list[int]] = {}  # node label -> the nodes without it
        # (request, constraints, extras[, labels, namespace]) -> (pod filters, node scores) applying to such pods
        self.applies: dict[tuple[object, ...], tuple[list[Plugin], list[Plugin]]] = {}
        self.by_labels = any(p.applies_by_labels() for p in session.hooked("pod_filter") + session.hooked("node_score"))
        self.budget = Budget()
        self.searched: list[tuple[GroupPlan, Domain, Outcome]] = []  # failed exact searches of this gang
        self.dry = 0  # pods a failed trial would have placed but did not apply (see fill's `whole`)
        self.cycle_left: int | None = None  # search budget the cycle has left (set by the first start)

    def start(self, budget: int = DEFAULT_BUDGET) -> None:
        """A new gang: a fresh search budget (never more than the cycle has left, so a backlog of hard
        gangs cannot stretch the cycle) and no failures remembered."""
        if self.cycle_left is None:
            self.cycle_left = budget * CYCLE_BUDGET_GANGS
        self.cycle_left -= self.budget.spent
        self.budget = Budget(max(0, min(budget, self.cycle_left)))
        self.searched = []
        self.dry = 0
        self.rejected = None

    def placed_since(self, stmt: Statement, mark: int) -> int:
        """How many pods a failed trial placed since `mark`, applied or only counted."""
        got = stmt.placed_count(mark) + self.dry
        self.dry = 0
        return got

    def used_domains(self, stmt: Statement) -> set[int]:
        """Every domain (of every tree) holding a node the gang's open statement placed pods on."""
        out: set[int] = set()
        for node in stmt.touched:
            for dom in self.table.memberships[node]:
                d: Domain | None = dom
                while d is not None and id(d) not in out:
                    out.add(id(d))
                    d = d.parent
        return out

    # --- preparing a job --------------------------------------------------------------------
    def tier(self, constraint: TopologyConstraint, inherited: TopologyTree | None, what: str) -> Tier | None:
        if constraint.is_empty():
            return None
        s = self.session
        name = constraint.topology
        tree: TopologyTree | None
        if name:
            tree = s.tree(name)
            if tree is None:
                known = ", ".join(sorted(s.snapshot.topologies)) or "none"
                raise PlacementError(
                    Reason.UNKNOWN_TOPOLOGY,
                    f"{what} names Topology {name!r}, which does not exist (known: {known}); "
                    "create it or fix kai.scheduler/topology",
                )
            if inherited is not None and inherited.topology.name != name:
                raise PlacementError(
                    Reason.INVALID_POD_GROUP,
                    f"{what} names Topology {name!r} but its PodGroup uses {inherited.topology.name!r}; "
                    "subgroups must use their PodGroup's Topology",
                )
        elif inherited is not None:
            tree = inherited
        elif len(s.snapshot.topologies) == 1:
            tree = s.tree(next(iter(s.snapshot.topologies)))
        else:
            raise PlacementError(
                Reason.UNKNOWN_TOPOLOGY,
                f"{what} asks for topology placement but names no Topology and the cluster has "
                f"{len(s.snapshot.topologies)}; set kai.scheduler/topology",
            )
        assert tree is not None
        if tree.topology.problems:
            raise PlacementError(
                Reason.UNKNOWN_TOPOLOGY,
                f"Topology {tree.topology.name} is invalid: {'; '.join(tree.topology.problems)}",
            )
        idx: dict[str, int | None] = {}
        for kind, level in (("required", constraint.required_level), ("preferred", constraint.preferred_level)):
            if not level:
                idx[kind] = None
                continue
            i = tree.level_index(level)
            if i is None:
                raise PlacementError(
                    Reason.UNKNOWN_TOPOLOGY_LEVEL,
                    f"{what}: {kind} placement level {level!r} is not a level of Topology {tree.topology.name} "
                    f"(levels: {', '.join(tree.levels)})",
                )
            idx[kind] = i
        req, pref = idx["required"], idx["preferred"]
        if pref is not None and (req is None or pref > req):
            levels = list(range(pref, (req if req is not None else -1) - 1, -1))
        elif req is not None:
            levels = [req]
        else:
            levels = [-1]
        names = [tree.levels[lv] if lv >= 0 else "cluster" for lv in levels]
        return Tier(tree, levels, req, names)

    def classes(self, pods: list[Pod]) -> list[PodClass]:
        s = self.session
        by_sig: dict[tuple[object, ...], PodClass] = {}
        applies = self.applies
        for pod in pods:
            # which pod filters and scores apply: per pod class, or per labels too when a plugin says so
            which: tuple[object, ...] = (pod.request, pod.constraints, pod.extras)
            if self.by_labels:
                which = (*which, pod.labels, pod.namespace)
            hooks = applies.get(which)
            if hooks is None:
                hooks = applies[which] = (s.dynamic_filters(pod), s.scorers(pod))
            dynamic, scorers = hooks
            sig = (pod.request, pod.constraints, pod.task_priority, pod.extras, id(hooks))
            cls = by_sig.get(sig)
            if cls is None:
                req = self.table.sparse(pod.request)
                if req is None:
                    missing = [n for n in pod.request.names() if n not in self.table.dim_index]
                    raise PlacementError(
                        Reason.NO_FEASIBLE_NODE,
                        f"pod {pod.name} requests {', '.join(missing)}, which no node offers",
                    )
                mask, reasons, count = s.eligible(pod.constraints)
                if count == 0:
                    detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
                    raise PlacementError(
                        Reason.NO_FEASIBLE_NODE,
                        f"0/{len(self.table.nodes)} nodes are available for pod {pod.name}: {detail or 'no nodes'}",
                    )
                if not any(mask[i] and all(self.table.alloc[i][d] >= v for d, v in req) for i in range(len(mask))):
                    raise PlacementError(
                        Reason.GANG_TOO_LARGE,
                        f"pod {pod.name} requests {pod.request}; no eligible node has that much allocatable "
                        "even when empty",
                    )
                cls = by_sig[sig] = PodClass(req, mask, [], dict(req).get(0, 0), dynamic, scorers, count)
            cls.pods.append(pod)
        # higher task priority first (it says which pods a gang prefers), then the most constrained: fewest
        # eligible nodes, then larger pods (they are the hard ones to fit)
        return sorted(
            by_sig.values(),
            key=lambda c: (-c.pods[0].task_priority, c.eligible, [-v for _, v in c.req], c.pods[0].name),
        )

    def prepare(self, job: Job) -> GroupPlan:
        what = f"PodGroup {job.key}" if job.pod_group is not None else f"pod {job.key}"
        root_tier = self.tier(job.root.constraint, None, what)
        return self._prepare_group(job.root, root_tier, root_tier.tree if root_tier else None, what, is_root=True)

    def _prepare_group(
        self, g: Group, tier: Tier | None, tree: TopologyTree | None, what: str, is_root: bool = False
    ) -> GroupPlan:
        if not is_root:
            tier = self.tier(g.constraint, tree, f"{what} subgroup {g.name}")
        dims = len(self.table.dims)
        if g.is_leaf():
            minimum = g.min_member if g.min_member is not None else 1
            need = max(0, minimum - len(g.bound))
            if need > len(g.pending):
                have = len(g.pending) + len(g.bound)
                label = "PodGroup" if is_root else f"subgroup {g.name}"
                raise PlacementError(
                    Reason.NOT_ENOUGH_PODS,
                    f"{label} needs {minimum} pods (minMember) but only {have} exist; create the missing pods "
                    "or lower minMember",
                )
            classes = self.classes(g.pending)
            need_vec = [0] * dims
            left = need
            for cls in classes:
                take = min(left, len(cls.pods))
                for d, v in cls.req:
                    need_vec[d] += v * take
                left -= take
            return GroupPlan(g, tier, classes, need, need_vec)
        children = [self._prepare_group(c, None, tier.tree if tier else tree, what) for c in g.children]
        need = g.min_sub_group if g.min_sub_group is not None else len(children)
        if need > len(children):
            raise PlacementError(
                Reason.INVALID_POD_GROUP,
                f"minSubGroup is {need} but {what} has only {len(children)} child subgroups",
            )
        need_vec = [0] * dims
        for c in sorted(children, key=lambda c: sum(c.need_vec))[:need]:
            need_vec = [a + b for a, b in zip(need_vec, c.need_vec, strict=True)]
        return GroupPlan(g, tier, [], need, need_vec, children)

    def affinity_tier(self, job: Job) -> Tier | None:
        """A required tier over the topology key of the first required pod-affinity term that a pending
        member matches itself (members affine to each other), or None."""
        for pod in job.pending:
            a = pod.extras.affinity
            labels = dict(pod.labels)
            for t in a.required if a is not None else ():
                own_ns = not t.namespaces and t.namespace_selector is None
                if own_ns and t.selector is not None and t.selector.matches(labels) and t.topology_key:
                    return Tier(self._label_tree(t.topology_key), [0], 0, [t.topology_key])
        return None

    # --- node order -------------------------------------------------------------------------
    def iter_nodes(self, dom: Domain, need: list[int], gpu: int, used: set[int] | None = None) -> Iterator[int]:
        """Nodes of a domain in visiting order: the node order inside a node holder; across child domains
        the ones the gang already uses first (compactness: every member goes where the others are when it
        fits there), then those that hold `need` (tightest first), so one sub-domain fills before the next."""
        table = self.table
        if dom.nodes:
            if dom.index is not None:
                yield from table.order.scan(dom.index, gpu)
            else:
                yield from sorted(dom.nodes, key=table.order_key())
            return
        children = dom.children
        if children and all(len(c.nodes) == 1 and not c.children for c in children):
            # every child is one node (a hostname level, or racks of one node): order them as nodes are
            key = table.order_key()
            yield from sorted((c.nodes[0] for c in children), key=key)
            return
        fit: list[Domain] = []
        rest: list[Domain] = []
        for c in children:
            (fit if fits(c.free, need) else rest).append(c)
        fit.sort(key=lambda c: (-tightness(c.free, need), c.path))
        rest.sort(key=lambda c: (tightness(c.free, need), c.path))
        ordered = fit + rest
        if used:
            ordered = [c for c in ordered if id(c) in used] + [c for c in ordered if id(c) not in used]
        for c in ordered:
            yield from self.iter_nodes(c, need, gpu, used)

    # --- trials -----------------------------------------------------------------------------
    def fill(
        self, dom: Domain, cls: PodClass, start: int, want: int, stmt: Statement, need: list[int], whole: bool = False
    ) -> int:
        """Place up to `want` pods of a class (from index `start`) inside a domain; returns how many.

        Bin-pack fills each node as far as it goes; spread takes one pod per node per pass, so a gang
        lands across the emptiest nodes as kube-scheduler's least-allocated scoring would put it. One pass
        visits each node once, so its placements are applied when the pass ends (the sorted indexes it
        walks must not move under it); each pass sees every earlier one. `whole`: the caller fails unless
        all `want` fit, so a single pass that falls short applies nothing (and counts in `dry`)."""
        if cls.dynamic or cls.scorers:
            return self._fill_each(dom, cls, start, want, stmt, need)
        placed = 0
        mask, req = cls.mask, cls.req
        full = self.table.full_for(req)
        per_node = 1 if self.table.spread else want
        used = self.used_domains(stmt) if stmt.touched and not dom.nodes else None
        while placed < want:
            before = placed
            batch: list[tuple[int, int]] = []
            for node in self.iter_nodes(dom, need, cls.gpu, used):
                if not mask[node] or full[node]:
                    continue
                k = stmt.fit_count(node, req, min(per_node, want - placed))
                if k == 0:
                    if not stmt.is_touched(node) and node not in self.table.releasing:
                        full[node] = 1  # committed capacity, not a trial's: valid until capacity grows
                    continue
                batch.append((node, k))
                placed += k
                if placed >= want:
                    break
            if whole and per_node == want and placed < want:
                self.dry += placed  # a trial that fails anyway: count what would have fit, apply nothing
                return placed
            at = start + before
            for node, k in batch:
                stmt.allocate_many(cls.pods[at : at + k], node, req)
                at += k
            if placed == before or per_node == want:
                break
        return placed

    def _fill_each(self, dom: Domain, cls: PodClass, start: int, want: int, stmt: Statement, need: list[int]) -> int:
        """Pod by pod, for pods a dynamic filter must see or whose nodes are scored: every placement is
        applied before the next pod looks, so constraints between members of one gang hold. Unscored, the
        nodes are walked lazily and the first that takes the pod wins."""
        s = self.session
        mask, req = cls.mask, cls.req
        placed = 0
        # nodes a lasting rejection (Plugin.rejection_lasts) keeps off every later pod of the class: only
        # placements happen in this loop, so a member need not ask again where one before it was refused
        lasting: dict[int, tuple[Reason, str]] = {}
        for pod in cls.pods[start : start + want]:
            used = self.used_domains(stmt) if stmt.touched and not dom.nodes else None
            rejected: dict[tuple[Reason, str], int] = {}
            nodes: Iterable[int] = (n for n in self.iter_nodes(dom, need, cls.gpu, used) if mask[n])
            grouping = self._grouping(cls, pod) if dom is self.table.cluster and not cls.scorers else None
            if grouping is not None:
                nodes = self._grouped(grouping[0], grouping[1], pod, cls, need, stmt, rejected)
            if cls.scorers:
                order = list(nodes)
                scores = {n: s.node_score(pod, n, cls.scorers) for n in order}
                order.sort(key=lambda n: -scores[n])  # stable: equal scores keep the node order
                nodes = order
            for node in nodes:
                if not stmt.fit_count(node, req, 1):
                    continue
                why = lasting.get(node)
                if why is None:
                    why, lasts = self._rejection(cls.dynamic, pod, node)
                    if why is None:
                        stmt.allocate_many((pod,), node, req)
                        placed += 1
                        break
                    if lasts:
                        lasting[node] = why
                rejected[why] = rejected.get(why, 0) + 1
            else:
                if rejected:
                    self.rejected = Rejected(pod.name, rejected)
                break  # the pods after it are of the same class: the gang's count stops here
        return placed

    def _grouping(self, cls: PodClass, pod: Pod) -> tuple[str, Plugin] | None:
        for p in cls.dynamic:
            key = p.filter_domain_key(pod)
            if key is not None:
                return key, p
        return None

    def _grouped(
        self,
        key: str,
        plugin: Plugin,
        pod: Pod,
        cls: PodClass,
        need: list[int],
        stmt: Statement,
        rejected: dict[tuple[Reason, str], int],
    ) -> Iterator[int]:
        """The cluster's nodes domain by domain of label `key` (each domain's best node first, in node
        order), asking `plugin`, whose verdict that label's value alone decides, once per domain."""
        tree = self._label_tree(key)
        order = self.table.order_key()
        mask, req = cls.mask, cls.req
        firsts = []
        for kd in tree.domains(0):
            first = next((n for n in self.iter_nodes(kd, need, cls.gpu) if mask[n] and stmt.fit_count(n, req, 1)), None)
            if first is not None:
                firsts.append((order(first), kd.path, kd, first))
        outside = [n for n in self._unlabelled(key, tree) if mask[n] and stmt.fit_count(n, req, 1)]
        if outside:  # nodes without the label fail by the hook's contract: ask one, for the reason
            why = plugin.pod_filter(self.session, pod, outside[0])
            if why is not None:
                r = (plugin.rejection_reason(why), why)
                rejected[r] = rejected.get(r, 0) + len(outside)
        for _, _, kd, first in sorted(firsts, key=lambda f: (f[0], f[1])):
            why = plugin.pod_filter(self.session, pod, first)
            if why is not None:
                r = (plugin.rejection_reason(why), why)
                rejected[r] = rejected.get(r, 0) + len(kd.nodes)
                continue
            yield from (n for n in self.iter_nodes(kd, need, cls.gpu) if mask[n])

    def _unlabelled(self, key: str, tree: TopologyTree) -> list[int]:
        hit = self.unlabelled.get(key)
        if hit is None:
            hit = self.unlabelled[key] = [n for n in range(len(self.table.nodes)) if n not in tree.node_chain]
        return hit

    def _label_tree(self, key: str) -> TopologyTree:
        """A one-level tree over a node label, made once per cycle (its domains keep sorted indexes)."""
        tree = self.affinity_trees.get(key)
        if tree is None:
            tree = self.affinity_trees[key] = self.table.build_topology(Topology(f"pod-affinity:{key}", (key,)))
        return tree

    def _rejection(self, plugins: list[Plugin], pod: Pod, node: int) -> tuple[tuple[Reason, str] | None, bool]:
        """(reason and message, or None when every plugin accepts the node; whether the rejection lasts)."""
        for p in plugins:
            why = p.pod_filter(self.session, pod, node)
            if why is not None:
                return (p.rejection_reason(why), why), p.rejection_lasts(why)
        return None, False

    def place_leaf(self, gp: GroupPlan, dom: Domain, stmt: Statement, chosen: Chosen) -> int:
        """Place the leaf's minimum inside `dom`: greedy fill first (complete for one pod class), then, for
        several classes, the bounded exact search. On failure the greedy partial stays in the statement
        (the caller rolls it back after counting it)."""
        mark = stmt.checkpoint()
        got = self._greedy(gp, dom, stmt, chosen, whole=len(gp.classes) == 1)
        if got >= gp.need or len(gp.classes) < 2 or self.budget.exhausted or _dynamic(gp):
            return got  # the exact search sees capacity only: pods a pod filter must see keep greedy fill
        partial = stmt.placed_count(mark)
        stmt.rollback(mark)
        order = list(self.iter_nodes(dom, gp.need_vec, 0, self.used_domains(stmt) if stmt.touched else None))
        outcome = search_members(
            self.table, dom, [Demand(gp.classes, gp.need)], order, self.budget, releasing_ok=stmt.pipelining
        )
        if outcome.placement is None:
            self.searched.append((gp, dom, outcome))
            return self._greedy(gp, dom, stmt, chosen) if partial else 0
        used = apply_outcome(stmt, outcome)
        for cls in gp.classes:
            chosen[id(cls)] = (dom, used.get(id(cls), 0))
        return gp.need

    def _greedy(self, gp: GroupPlan, dom: Domain, stmt: Statement, chosen: Chosen, whole: bool = False) -> int:
        left = gp.need
        for cls in gp.classes:
            chosen[id(cls)] = (dom, 0)
            if left <= 0:
                continue
            got = self.fill(dom, cls, 0, min(left, len(cls.pods)), stmt, gp.need_vec, whole)
            chosen[id(cls)] = (dom, got)
            left -= got
        return gp.need - left

    def alternatives(self, gp: GroupPlan, dom: Domain, stmt: Statement, chosen: Chosen) -> Iterator[int]:
        """A subgroup inside its parent's domain, by the same level-by-level search as the gang's own:
        yields a mark for each domain its members were placed in (the caller rolls back to it before
        asking for the next)."""
        for _sub, mark in placements(
            self.table,
            gp.tier,
            gp.need_vec,
            dom,
            stmt,
            lambda sub: self.place_members(gp, sub, stmt, chosen),
            prefer=self.used_domains(stmt) if stmt.touched else None,
            measure=lambda mark: self.placed_since(stmt, mark),
        ):
            yield mark

    def place_members(self, gp: GroupPlan, dom: Domain, stmt: Statement, chosen: Chosen) -> bool:
        """Place a group's minimum inside `dom`; on failure whatever it placed is left for the caller to
        count and roll back.

        Subgroups go depth first: each child in its first domain (greedy), and when a later child finds
        no room, the earlier ones try their other domains (each retry costs the gang's search budget).
        Children that are plain leaves sharing the parent's domain, when that fails, are searched jointly
        (one child's members must not take the nodes another's need)."""
        if not gp.children:
            return self.place_leaf(gp, dom, stmt, chosen) >= gp.need
        mark = stmt.checkpoint()
        if self._children(gp, dom, stmt, chosen, 0, 0):
            return True
        flat = all(not c.children and c.tier is None and not _dynamic(c) for c in gp.children)
        flat = flat and gp.group.min_sub_group is None
        if flat and not self.budget.exhausted:
            order = list(self.iter_nodes(dom, gp.need_vec, 0, self.used_domains(stmt) if stmt.touched else None))
            demands = [Demand(c.classes, c.need) for c in gp.children]
            outcome = search_members(self.table, dom, demands, order, self.budget, releasing_ok=stmt.pipelining)
            if outcome.placement is not None:
                used = apply_outcome(stmt, outcome)
                for c in gp.children:
                    for cls in c.classes:
                        chosen[id(cls)] = (dom, used.get(id(cls), 0))
                return True
        # leave the greedy partial for the caller to count (and roll back)
        stmt.rollback(mark)
        self._children(gp, dom, stmt, chosen, 0, 0, greedy=True)
        return False

    def _children(
        self, gp: GroupPlan, dom: Domain, stmt: Statement, chosen: Chosen, i: int, satisfied: int, greedy: bool = False
    ) -> bool:
        """Children i.. of `gp` (depth first over each child's domains); on False nothing of them is left
        placed, except with `greedy` (first domains only, partial kept)."""
        n = len(gp.children)
        if i == n:
            return satisfied >= gp.need
        optional = gp.group.min_sub_group is not None
        if satisfied + (n - i) < gp.need:
            return False
        first = True
        for mark in self.alternatives(gp.children[i], dom, stmt, chosen):
            if self._children(gp, dom, stmt, chosen, i + 1, satisfied + 1, greedy):
                return True
            if greedy:
                return False
            stmt.rollback(mark)
            if not first and not self.budget.take():
                return False
            first = False
        if optional:  # the gang can do without this child
            return self._children(gp, dom, stmt, chosen, i + 1, satisfied, greedy)
        return False


def _dynamic(gp: GroupPlan) -> bool:
    """Whether a pod filter must see some pod of the group (the exact member search cannot)."""
    return any(cls.dynamic for cls in gp.classes) or any(_dynamic(c) for c in gp.children)

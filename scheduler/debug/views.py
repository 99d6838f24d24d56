"""What the debug API shows, built from the history's records and the newest snapshot.

Nothing here recomputes a decision: reasons, closest domains and shortfalls come from the SessionRecord;
the snapshot supplies only the objects (queue specs, members, nodes) around them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from scheduler.api.queue import UNLIMITED
from scheduler.api.reasons import Reason
from scheduler.api.resources import Resources
from scheduler.api.topology import HOSTNAME_LABEL
from scheduler.cache.cluster_state import Snapshot
from scheduler.debug._pb import debug_pb2 as pb
from scheduler.debug.history import CycleEntry
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.nodes import NAME_ORDER, Domain, NodeTable, TopologyTree
from scheduler.framework.queues import QUEUE_DIMS, QueueTree, implicit_queues
from scheduler.framework.record import GangDecision, LevelAttempt, SessionRecord

STATES = ("Waiting", "Scheduled", "Running", "Pending")


def res_map(res: Resources) -> dict[str, int]:
    return dict(res.items)


def short_level(label: str) -> str:
    """topology.kubernetes.io/rack -> rack (for sentences)."""
    return label.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------------- decisions
def decision_message(d: GangDecision, cycle: int) -> pb.Decision:
    return pb.Decision(
        job=d.job,
        queue=d.queue,
        placed=d.placed,
        reason=str(d.reason) if d.reason else "",
        message=d.message,
        domain=d.domain,
        pods=dict(d.pods),
        cycle=cycle,
    )


def cycle_message(e: CycleEntry, include_decisions: bool) -> pb.Cycle:
    s = e.summary
    out = pb.Cycle(
        cycle=e.cycle,
        start_unix=e.start_unix,
        phases=[pb.Phase(name=n, seconds=v) for n, v in e.phases],
        events=int(s.get("events", 0)),
        gangs_tried=int(s.get("gangs_tried", 0)),
        gangs_placed=int(s.get("gangs_placed", 0)),
        gangs_waiting=int(s.get("gangs_waiting", 0)),
        gangs_deferred=int(s.get("gangs_deferred", 0)),
        pods_bound=int(s.get("pods_bound", 0)),
        bind_failures=int(s.get("bind_failures", 0)),
    )
    if include_decisions:
        out.decisions.extend(decision_message(e.record.decisions[k], e.cycle) for k in sorted(e.record.decisions))
    return out


# ------------------------------------------------------------------------------------------------ queues
def queue_messages(snapshot: Snapshot, record: SessionRecord, config: SchedulerConfig) -> list[pb.Queue]:
    tree = QueueTree(implicit_queues(snapshot.queues, config))
    out = []
    for name, node in sorted(tree.nodes.items()):
        q = node.queue
        share = record.queues.get(name)
        msg = pb.Queue(name=name, parent=q.parent, priority=q.priority)
        if node.problem is not None:
            msg.problem = f"{node.problem[0]}: {node.problem[1]}"
        over = False
        for dim in QUEUE_DIMS:
            spec = q.resource(dim)
            r = pb.QueueResource(
                resource=dim, quota=spec.quota, limit=spec.limit, over_quota_weight=spec.over_quota_weight
            )
            if share is not None:
                r.deserved = share.deserved.get(dim)
                r.fair_share = share.fair_share.get(dim)
                r.allocated = share.allocated.get(dim)
                r.requested = share.requested.get(dim)
                over = over or (spec.quota != UNLIMITED and r.allocated > spec.quota)
            msg.resources.append(r)
        msg.over_quota = over
        msg.under_fair_share = share is not None and share.under_fair_share  # as the session decided it
        out.append(msg)
    return out


# -------------------------------------------------------------------------------------------- pod groups
def _latest_decisions(entries: Sequence[CycleEntry]) -> dict[str, tuple[int, GangDecision]]:
    out: dict[str, tuple[int, GangDecision]] = {}
    for e in entries:  # oldest first: newer overwrite
        for k, d in e.record.decisions.items():
            out[k] = (e.cycle, d)
    return out


def pod_group_messages(entries: Sequence[CycleEntry], snapshot: Snapshot, config: SchedulerConfig) -> list[pb.PodGroup]:
    latest = entries[-1].record if entries else None
    decided = _latest_decisions(entries)
    keys = set(snapshot.pod_groups) | {k for k in (latest.decisions if latest else {}) if k not in snapshot.pod_groups}
    out = []
    for key in sorted(keys):
        ns, _, name = key.partition("/")
        pg = snapshot.pod_groups.get(key)
        members = snapshot.members.get(key, ())
        if pg is None and not members:  # a gang of one: the pod itself
            pod = snapshot.pending.get(key)
            members = (pod,) if pod is not None else ()
        cycle, d = decided.get(key, (0, None))
        now = latest.decisions.get(key) if latest else None
        placed = sum(1 for p in members if p.bound) + (len(now.pods) if now is not None else 0)
        required = (pg.min_member if pg.min_member is not None else 1) if pg is not None else 1
        if now is not None:
            state = "Scheduled" if now.placed else "Waiting"
        elif members and all(p.bound for p in members) and placed >= required:
            state = "Running"
        else:
            state = "Pending"
        queue = (pg.queue if pg is not None else "") or (d.queue if d is not None else "") or config.default_queue
        out.append(
            pb.PodGroup(
                namespace=ns,
                name=name,
                queue=queue,
                state=state,
                members_placed=placed,
                members_required=required,
                members_total=len(members),
                reason=str(d.reason) if d is not None and d.reason else "",
                message=d.message if d is not None else "",
                last_cycle=cycle,
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ explain
def _where(a: LevelAttempt, levels: Sequence[str]) -> str:
    if a.level == "cluster":
        return "the cluster"
    parts = a.domain.split("/")
    if a.level in levels and len(parts) > 1:
        idx = levels.index(a.level)
        names = [short_level(lv) for lv in levels[: idx + 1]]
        if len(names) == len(parts):
            inner = " of ".join(f"{n} {p}" for n, p in reversed(list(zip(names, parts, strict=True))))
            return inner
    return f"{short_level(a.level)} {a.domain}"


def _levels_for(snapshot: Snapshot | None, level: str) -> tuple[str, ...]:
    if snapshot is None:
        return ()
    for name in sorted(snapshot.topologies):
        levels = snapshot.topologies[name].levels
        if level in levels:
            return levels
    return ()


def attempt_message(a: LevelAttempt, snapshot: Snapshot | None) -> pb.LevelAttempt:
    where = _where(a, _levels_for(snapshot, a.level))
    if not a.domain:
        text = f"no {short_level(a.level)} has nodes carrying the topology's labels"
    elif a.short.is_zero():
        text = f"{where} has the capacity in total but fragmented: {a.placed}/{a.needed} pods fit"
    else:
        text = f"closest: {where}, short {a.short}"
    return pb.LevelAttempt(
        level=a.level, domain=a.domain, short=res_map(a.short), pods_fit=a.placed, pods_needed=a.needed, text=text
    )


def _tied_domains(snapshot: Snapshot, config: SchedulerConfig, a: LevelAttempt) -> tuple[list[Domain], int] | None:
    """Every domain of the attempt's level as short as the closest one (on the resources it lacked),
    from the snapshot: valid only when the snapshot's free capacity is what the attempt saw."""
    levels = _levels_for(snapshot, a.level)
    if not levels or a.short.is_zero():
        return None
    name = next(n for n in sorted(snapshot.topologies) if snapshot.topologies[n].levels == levels)
    nodes = [snapshot.nodes[n] for n in sorted(snapshot.nodes)]
    table = NodeTable(nodes, dict(snapshot.node_used), snapshot.pending_dims, NAME_ORDER)
    tree = TopologyTree(table, snapshot.topologies[name])
    lvl = tree.level_index(a.level)
    if lvl is None or lvl == tree.host_level:
        return None
    doms = tree.domains(lvl)
    closest = next((d for d in doms if d.path == a.domain), None)
    if closest is None:
        return None
    idx = {dim: table.dim_index[dim] for dim in a.short.names() if dim in table.dim_index}
    need = {dim: v + closest.free[idx[dim]] for dim, v in a.short.items if dim in idx}
    tied = [d for d in doms if all(need[dim] - d.free[i] == a.short.get(dim) for dim, i in idx.items())]
    return tied, len(doms)


def suggestions(
    d: GangDecision,
    snapshot: Snapshot | None,
    config: SchedulerConfig,
    queues: Mapping[str, pb.Queue],
    exact: bool,
) -> list[str]:
    """What would make the gang fit, from its reason and the closest domain of the widest level tried."""
    r = d.reason
    out: list[str] = []
    if r in (Reason.INSUFFICIENT_RESOURCES, Reason.TOPOLOGY_REQUIRED_UNSATISFIABLE) and d.attempts:
        a = d.attempts[-1]
        levels = _levels_for(snapshot, a.level)
        lvl = short_level(a.level)
        if not a.domain:
            out.append(f"label nodes with every level of the gang's Topology: no {lvl} has nodes carrying them")
        elif a.short.is_zero():
            out.append(
                f"{_where(a, levels)} has enough free in total but fragmented ({a.placed}/{a.needed} pods fit): "
                "free whole nodes there, or make the pods smaller"
            )
        elif a.level == "cluster":
            out.append(f"{a.short} more free anywhere in the cluster")
        else:
            tied = _tied_domains(snapshot, config, a) if exact and snapshot is not None else None
            where = _where(a, levels)
            if tied is not None and len(tied[0]) > 1:
                doms, total = tied
                parents = {d.parent.path if d.parent is not None else "" for d in doms}
                idx = levels.index(a.level)
                if len(doms) == total:
                    where = f"any {lvl}"
                elif len(parents) == 1 and idx > 0 and doms[0].parent is not None:
                    where = f"any {lvl} of {short_level(levels[idx - 1])} {doms[0].parent.value}"
                else:
                    where = f"any of {lvl}s {', '.join(d.path for d in doms)}"
            out.append(f"{a.short} more free in {where}")
        out.append("or wait for running pods to finish, or lower the gang's minMember or requests")
    elif r is Reason.GANG_TOO_LARGE:
        out.append("it can never fit as sized: add bigger nodes, or lower minMember or the pods' requests")
    elif r is Reason.OVER_LIMIT:
        q = queues.get(d.queue)
        chain = []
        while q is not None:
            chain.append(q)
            q = queues.get(q.parent) if q.parent else None
        for q in chain:
            for res in q.resources:
                if res.limit != UNLIMITED:
                    out.append(
                        f"queue {q.name} limits {res.resource} to {res.limit} and has {res.allocated} allocated: "
                        f"raise spec.resources limit or wait for its running jobs to finish"
                    )
    elif r in (Reason.UNKNOWN_TOPOLOGY, Reason.UNKNOWN_TOPOLOGY_LEVEL):
        known = ", ".join(sorted(snapshot.topologies)) if snapshot is not None else ""
        out.append(
            "create the Topology the gang names, or fix its kai.scheduler/topology annotation "
            f"(Topologies in the cluster: {known or 'none'})"
            if r is Reason.UNKNOWN_TOPOLOGY
            else "name one of the Topology's levels in the placement annotation"
        )
    elif r is Reason.QUEUE_DOES_NOT_EXIST:
        out.append(f"create Queue {d.queue}, or submit to an existing leaf queue")
    elif r is Reason.QUEUE_NOT_LEAF:
        out.append(f"submit to a child queue of {d.queue}")
    elif r is Reason.NOT_ENOUGH_PODS:
        out.append("create the missing pods, or lower minMember")
    elif r is Reason.POD_GROUP_NOT_FOUND:
        out.append("create the PodGroup the pods name, or fix their pod-group-name annotation")
    elif r is Reason.NO_FEASIBLE_NODE:
        out.append("relax the pods' nodeSelector, affinity or tolerations, or make matching nodes schedulable")
    elif r is Reason.BIND_BACKOFF:
        out.append("nothing: it is retried automatically when the backoff ends")
    elif r is not None and str(r).startswith("Unsupported"):
        out.append("remove the constraint kaisched does not evaluate yet")
    elif r is not None:
        out.append("fix the object as the message says")
    return out


def explain(
    entries: Sequence[CycleEntry], key: str, snapshot: Snapshot | None, config: SchedulerConfig
) -> pb.ExplainPodGroupResponse | None:
    found: tuple[CycleEntry, GangDecision] | None = None
    for e in reversed(entries):
        d = e.record.decisions.get(key)
        if d is not None:
            found = (e, d)
            break
    exists = snapshot is not None and (key in snapshot.pod_groups or key in snapshot.pending)
    deferred = bool(entries) and key in entries[-1].record.deferred
    note = (
        f"not tried in cycle {entries[-1].cycle}: it placed its pod budget (--cycle-pod-budget) before this gang's "
        "turn; the next cycle, which starts at once, tries it"
        if deferred
        else ""
    )
    if found is None:
        if not exists or snapshot is None:
            return None
        members = snapshot.members.get(key, ())
        state = "Running" if members and all(p.bound for p in members) else "Pending"
        return pb.ExplainPodGroupResponse(
            pod_group=key,
            state=state,
            message=note or f"no decision about it in the last {len(entries)} cycles",
        )
    e, d = found
    latest = entries[-1]
    state = ("Scheduled" if d.placed else "Waiting") if e is latest else "Running" if d.placed else "Pending"
    waiting = 0
    for old in reversed(entries):
        od = old.record.decisions.get(key)
        if od is None or od.placed or od.reason != d.reason:
            break
        waiting += 1
    qmsgs = {q.name: q for q in queue_messages(snapshot, e.record, config)} if snapshot is not None else {}
    order = e.record.order
    position = pb.QueuePosition(tried=len(order))
    if d.queue in qmsgs:
        position.queue.CopyFrom(qmsgs[d.queue])
    same = [k for k in order if e.record.decisions[k].queue == d.queue]
    position.jobs_in_queue = len(same)
    if key in order:
        position.position = order.index(key) + 1
        mine = same.index(key)
        position.position_in_queue = mine + 1
        position.placed_before_in_queue = sum(1 for k in same[:mine] if e.record.decisions[k].placed)
    # the snapshot's free capacity is what the attempt saw only if nothing was placed before it this cycle
    before = order[: order.index(key)] if key in order else order
    exact = e is latest and not any(e.record.decisions[k].pods for k in before)
    return pb.ExplainPodGroupResponse(
        pod_group=key,
        queue=d.queue,
        state=state,
        reason=str(d.reason) if d.reason else "",
        message=f"{note}; in cycle {e.cycle}: {d.message}" if note and d.message else note or d.message,
        cycle=e.cycle,
        attempts=[attempt_message(a, snapshot) for a in d.attempts],
        queue_position=position,
        suggestions=[] if d.placed else suggestions(d, snapshot, config, qmsgs, exact),
        waiting_cycles=waiting,
        domain=d.domain,
    )


# ----------------------------------------------------------------------------------------------- topology
def _domain_message(table: NodeTable, dom: Domain, levels: Sequence[str]) -> pb.Domain:
    level = levels[dom.level] if dom.level >= 0 else "cluster"
    msg = pb.Domain(
        level=level,
        name=dom.value,
        path=dom.path,
        capacity=res_map(table.resources(dom.alloc)),
        allocated=res_map(table.resources([a - f for a, f in zip(dom.alloc, dom.free, strict=True)])),
        free=res_map(table.resources(dom.free)),
        nodes=sum(1 for _ in dom.all_nodes()),
    )
    for child in dom.children:
        msg.children.append(_domain_message(table, child, levels))
    for i in dom.nodes:
        ok = table.schedulable[i]
        alloc = table.alloc[i] if ok else [0] * len(table.dims)
        free = table.free[i] if ok else [0] * len(table.dims)
        msg.children.append(
            pb.Domain(
                level=HOSTNAME_LABEL,
                name=table.names[i],
                path=f"{dom.path}/{table.names[i]}" if dom.level >= 0 else table.names[i],
                capacity=res_map(table.resources(alloc)),
                allocated=res_map(table.resources([a - f for a, f in zip(alloc, free, strict=True)])),
                free=res_map(table.resources(free)),
                nodes=1,
            )
        )
    return msg


def topology_messages(snapshot: Snapshot, config: SchedulerConfig, names: Iterable[str]) -> list[pb.Topology]:
    nodes = [snapshot.nodes[n] for n in sorted(snapshot.nodes)]
    out = []
    for name in names:
        table = NodeTable(nodes, dict(snapshot.node_used), snapshot.pending_dims, NAME_ORDER)
        topo = snapshot.topologies[name]
        tree = TopologyTree(table, topo)
        out.append(
            pb.Topology(
                name=name,
                levels=list(topo.levels),
                root=_domain_message(table, tree.root, topo.levels),
                unlabelled_nodes=len(nodes) - len(tree.node_chain),
            )
        )
    return out

"""`kaisched ctl`: the debug API from a terminal. Tables by default, `-o json` for scripts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from scheduler.api.resources import format_quantity
from scheduler.cli.table import table
from scheduler.debug._pb import debug_pb2 as pb
from scheduler.debug._pb import debug_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:8790"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ctl", help="ask a running scheduler (its debug API) what it sees and why it decided")
    p.add_argument("--address", default=os.environ.get("KAISCHED_DEBUG_ADDRESS", DEFAULT_ADDRESS))
    p.add_argument("--token-file", default=None, help="bearer token file (or $KAISCHED_DEBUG_TOKEN)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --tls-ca)")
    p.add_argument("--tls-ca", default=None, help="PEM CA that signed the server's certificate")
    p.add_argument("--tls-cert", default=None, help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls-key", default=None, help="PEM client key (mutual TLS)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    cmds = p.add_subparsers(dest="ctl_command", required=True)

    def fmt(c: argparse.ArgumentParser) -> None:
        c.add_argument("-o", "--output", choices=("table", "json"), default="table")

    fmt(cmds.add_parser("queues", help="queue hierarchy with quota, limit, fair share, allocated"))
    c = cmds.add_parser("podgroups", help="PodGroups with state and last reason")
    c.add_argument("-n", "--namespace", default="")
    c.add_argument("--queue", default="")
    c.add_argument("--state", default="", help="Waiting, Scheduled, Running or Pending")
    fmt(c)
    c = cmds.add_parser("explain", help="why a PodGroup waits and what would make it fit")
    c.add_argument("target", metavar="NS/NAME")
    fmt(c)
    c = cmds.add_parser("topology", help="domains with capacity, allocated and free")
    c.add_argument("name", nargs="?", default="")
    c.add_argument("--depth", type=int, default=0, help="levels to show (0: down to nodes)")
    fmt(c)
    c = cmds.add_parser("cycles", help="the last cycles with phase durations")
    c.add_argument("--limit", type=int, default=20)
    fmt(c)
    c = cmds.add_parser("watch", help="stream decisions as cycles make them (Ctrl-C ends)")
    c.add_argument("-n", "--namespace", default="")
    c.add_argument("--waiting", action="store_true", help="only gangs left waiting")
    c.add_argument("--all", action="store_true", help="every decision of every cycle, not only changes")
    fmt(c)
    c = cmds.add_parser("snapshot", help="save the cache as Kubernetes objects (for replay / simulate)")
    c.add_argument("-o", "--output", required=True, metavar="FILE", help="'-' for stdout")
    c.add_argument("--cycle", type=int, default=0, help="a retained cycle (default: the latest)")


def _channel(args: argparse.Namespace) -> grpc.Channel:
    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    if args.tls or args.tls_ca or args.tls_cert:
        creds = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
        return grpc.secure_channel(args.address, creds)
    return grpc.insecure_channel(args.address)


def _metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The bearer token header; raises ValueError for a --token-file that holds none (calls without it
    would only fail UNAUTHENTICATED, which hides the real mistake)."""
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
        if not token:
            raise ValueError(f"--token-file {args.token_file} is empty")
    else:
        token = os.environ.get("KAISCHED_DEBUG_TOKEN", "").strip()
    return [("authorization", f"Bearer {token}")] if token else []


def as_json(msg: Message) -> dict[str, Any]:
    return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _res(values: Mapping[str, int], dims: Iterable[str] | None = None) -> str:
    keys = list(dims) if dims is not None else sorted(values)
    return ", ".join(f"{k}={format_quantity(k, values.get(k, 0))}" for k in keys if k in values) or "-"


def _limit(v: int) -> str:
    return "∞" if v < 0 else str(v)


def render_queues(r: pb.ListQueuesResponse) -> str:
    rows = []
    for q in r.queues:
        for i, res in enumerate(q.resources):
            name = res.resource

            def qty(v: int, name: str = name) -> str:
                return format_quantity(name, v)

            rows.append(
                [
                    q.name if i == 0 else "",
                    (q.parent or "-") if i == 0 else "",
                    res.resource,
                    qty(res.quota) if res.quota >= 0 else "∞",
                    qty(res.limit) if res.limit >= 0 else "∞",
                    f"{res.over_quota_weight:g}",
                    qty(res.deserved),
                    qty(res.fair_share),
                    qty(res.allocated),
                    qty(res.requested),
                    ("under" if q.under_fair_share else "at/over") if i == 0 else "",
                    q.problem if i == 0 else "",
                ]
            )
    head = ["QUEUE", "PARENT", "RESOURCE", "QUOTA", "LIMIT", "WEIGHT", "DESERVED", "FAIR", "ALLOC", "REQ", "SHARE"]
    return table([*head, "PROBLEM"], rows) + f"\n(cycle {r.cycle})"


def render_podgroups(r: pb.ListPodGroupsResponse) -> str:
    rows = [
        [
            f"{g.namespace}/{g.name}",
            g.queue,
            g.state,
            f"{g.members_placed}/{g.members_required} ({g.members_total})",
            g.reason or "-",
            (g.message[:100] + "…") if len(g.message) > 100 else g.message,
        ]
        for g in r.pod_groups
    ]
    return table(["PODGROUP", "QUEUE", "STATE", "PLACED/MIN (PODS)", "REASON", "MESSAGE"], rows)


def render_explain(r: pb.ExplainPodGroupResponse) -> str:
    out = [f"{r.pod_group}: {r.state}" + (f" in cycle {r.cycle}" if r.cycle else "")]
    if r.queue:
        out.append(f"  queue:   {r.queue}")
    if r.reason:
        out.append(f"  reason:  {r.reason}" + (f" (for {r.waiting_cycles} cycles)" if r.waiting_cycles > 1 else ""))
    if r.message:
        out.append(f"  message: {r.message}")
    if r.domain:
        out.append(f"  placed in: {r.domain}")
    if r.attempts:
        out.append("  levels tried (narrowest first):")
        out.extend(f"    {a.level}: {a.text}" for a in r.attempts)
    qp = r.queue_position
    if qp.tried:
        where = f"{qp.position} of {qp.tried} gangs tried" if qp.position else f"not tried ({qp.tried} were)"
        out.append(
            f"  order:   {where}; {qp.position_in_queue} of {qp.jobs_in_queue} in its queue, "
            f"{qp.placed_before_in_queue} placed ahead of it"
        )
    if qp.HasField("queue"):
        q = qp.queue
        state = "under its fair share" if q.under_fair_share else "at or over its fair share"
        shares = "; ".join(
            f"{x.resource} fair {format_quantity(x.resource, x.fair_share)} alloc "
            f"{format_quantity(x.resource, x.allocated)} quota {_limit(x.quota)} limit {_limit(x.limit)}"
            for x in q.resources
            if x.fair_share or x.allocated or x.quota > 0 or x.limit >= 0
        )
        out.append(
            f"  queue {q.name}: {state}" + (", over quota" if q.over_quota else "") + (f" ({shares})" if shares else "")
        )
    if r.suggestions:
        out.append("  would fit with:")
        out.extend(f"    - {s}" for s in r.suggestions)
    return "\n".join(out)


def _walk(d: pb.Domain, level: int, depth: int, rows: list[list[str]]) -> None:
    name = "  " * level + (d.name or d.path)
    rows.append([name, d.level.rsplit("/", 1)[-1], str(d.nodes), _res(d.capacity), _res(d.free)])
    if depth == 0 or level < depth:
        for c in d.children:
            _walk(c, level + 1, depth, rows)


def render_topology(r: pb.GetTopologyResponse, depth: int) -> str:
    out = []
    for t in r.topologies:
        out.append(
            f"Topology {t.name} ({' > '.join(t.levels)})"
            + (f", {t.unlabelled_nodes} nodes unlabelled" if t.unlabelled_nodes else "")
        )
        rows: list[list[str]] = []
        _walk(t.root, 0, depth, rows)
        out.append(table(["DOMAIN", "LEVEL", "NODES", "CAPACITY", "FREE"], rows))
    return "\n".join(out) or "no Topology objects"


def render_cycles(r: pb.ListCyclesResponse) -> str:
    rows = [
        [
            str(c.cycle),
            *(f"{p.seconds * 1000:.1f}" for p in c.phases),
            str(c.events),
            str(c.gangs_tried),
            str(c.gangs_placed),
            str(c.gangs_waiting),
            str(c.gangs_deferred),
            str(c.pods_bound),
            str(c.bind_failures),
        ]
        for c in r.cycles
    ]
    phases = [f"{p.name.upper()}_MS" for p in r.cycles[0].phases] if r.cycles else []
    head = ["CYCLE", *phases, "EVENTS", "TRIED", "PLACED", "WAITING", "DEFERRED", "BOUND", "BIND_FAIL"]
    return table(head, rows)


def render_decision(d: pb.Decision) -> str:
    if d.placed:
        return f"cycle {d.cycle} {d.job} placed in {d.domain or 'the cluster'}: {len(d.pods)} pods"
    return f"cycle {d.cycle} {d.job} waits: {d.reason}: {d.message}"


def _emit(args: argparse.Namespace, resp: Message, text: Callable[[], str]) -> int:
    print(json.dumps(as_json(resp), indent=2) if args.output == "json" else text())
    return 0


def _watch(args: argparse.Namespace, stub: Any, md: list[tuple[str, str]]) -> int:
    req = pb.WatchDecisionsRequest(namespace=args.namespace, waiting_only=args.waiting, changes_only=not args.all)
    try:
        for ev in stub.WatchDecisions(req, metadata=md):
            d: pb.Decision = ev.decision
            print(json.dumps(as_json(d)) if args.output == "json" else render_decision(d), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _snapshot(args: argparse.Namespace, stub: Any, md: list[tuple[str, str]]) -> int:
    resp: pb.GetSnapshotResponse = stub.GetSnapshot(
        pb.GetSnapshotRequest(cycle=args.cycle), metadata=md, timeout=args.timeout
    )
    text = json.dumps(json.loads(resp.snapshot_json), indent=1) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {resp.objects} objects of cycle {resp.cycle} to {args.output}", file=sys.stderr)
    return 0


def ctl(args: argparse.Namespace) -> int:
    try:
        md = _metadata(args)
    except (OSError, ValueError) as err:
        print(f"kaisched ctl: {err}", file=sys.stderr)
        return 2
    channel = _channel(args)
    make_stub: Callable[[grpc.Channel], Any] = pb_grpc.DebugStub
    stub = make_stub(channel)
    t = args.timeout
    cmd = args.ctl_command
    try:
        if cmd == "watch":
            return _watch(args, stub, md)
        if cmd == "snapshot":
            return _snapshot(args, stub, md)
        if cmd == "queues":
            qr: pb.ListQueuesResponse = stub.ListQueues(pb.ListQueuesRequest(), metadata=md, timeout=t)
            return _emit(args, qr, lambda: render_queues(qr))
        if cmd == "podgroups":
            req = pb.ListPodGroupsRequest(namespace=args.namespace, queue=args.queue, state=args.state)
            pr: pb.ListPodGroupsResponse = stub.ListPodGroups(req, metadata=md, timeout=t)
            return _emit(args, pr, lambda: render_podgroups(pr))
        if cmd == "explain":
            ns, sep, name = args.target.partition("/")
            if not sep:
                print("kaisched ctl explain: give NAMESPACE/NAME", file=sys.stderr)
                return 2
            ereq = pb.ExplainPodGroupRequest(namespace=ns, name=name)
            er: pb.ExplainPodGroupResponse = stub.ExplainPodGroup(ereq, metadata=md, timeout=t)
            return _emit(args, er, lambda: render_explain(er))
        if cmd == "topology":
            tr: pb.GetTopologyResponse = stub.GetTopology(pb.GetTopologyRequest(name=args.name), metadata=md, timeout=t)
            return _emit(args, tr, lambda: render_topology(tr, args.depth))
        if cmd == "cycles":
            cr: pb.ListCyclesResponse = stub.ListCycles(pb.ListCyclesRequest(limit=args.limit), metadata=md, timeout=t)
            return _emit(args, cr, lambda: render_cycles(cr))
        return 2
    except grpc.RpcError as err:
        code = err.code() if isinstance(err, grpc.Call) else None
        detail = err.details() if isinstance(err, grpc.Call) else str(err)
        print(f"kaisched ctl {cmd}: {code.name if code else 'error'}: {detail}", file=sys.stderr)
        return 1
    finally:
        channel.close()

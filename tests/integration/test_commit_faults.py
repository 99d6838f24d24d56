"""Atomic gang commit under faults, against the real API server through a fault-injecting proxy.

After every fault: no partial gang, no lost pod, no pod bound twice, no over-committed node."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.integration.test_daemon import GPU, Daemons, Kube, wait_for
from tests.kubecluster import LocalCluster

BIND = r"/pods/[^/?]+/binding$"  # real binds (the dry runs carry ?dryRun=All)
INTENT = "kai.scheduler/commit-intent"


@pytest.fixture
def proxy(kube_cluster: LocalCluster) -> Iterator[FaultProxy]:
    p = FaultProxy(kube_cluster.server, str(kube_cluster.ca_file)).start()
    yield p
    p.stop()


@pytest.fixture
def kube(kube_cluster: LocalCluster, kai_crds: list[str], namespace: str) -> Iterator[Kube]:
    k = Kube(kube_cluster.kubeconfig, namespace)
    yield k
    k.cleanup()


@pytest.fixture
def daemon(proxy: FaultProxy, kube_cluster: LocalCluster, kai_crds: list[str], tmp_path: Path) -> Iterator[Daemons]:
    ds = Daemons(proxy.kubeconfig(kube_cluster.token, tmp_path / "proxy.kubeconfig"), tmp_path / "kaisched.log")
    yield ds
    for d in ds.procs:
        d.send(signal.SIGCONT)  # a test may have stopped it (SIGSTOP)
        d.kill()
    if ds.procs:
        print(f"---- daemon log tail ({ds.log}) ----\n{ds.tail()}")


class Watcher:
    """Remembers the first node each pod (by uid) was bound to: a later different node is a double bind."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.first: dict[str, str] = {}

    def observe(self) -> dict[str, dict[str, Any]]:
        pods = self.kube.pods()
        for p in pods.values():
            node = p["spec"].get("nodeName")
            if node:
                uid = p["metadata"]["uid"]
                assert self.first.setdefault(uid, node) == node, f"pod {p['metadata']['name']} bound twice"
        return pods


def invariants(
    kube: Kube, w: Watcher, gangs: dict[str, tuple[list[str], int]], nodes: dict[str, int], at_rest: bool = True
) -> None:
    """Double binds and over-commit are checked at every observation; partial gangs only at rest, because
    binds are separate API calls: a gang is partial for the moments between its binds (or its rollback)."""
    pods = w.observe()
    for pg, (names, minimum) in gangs.items():
        missing = [n for n in names if n not in pods]  # a rolled-back pod is briefly gone while re-created
        assert not at_rest or not missing, f"gang {pg} lost pods {missing}"
        if missing:
            continue
        bound = [n for n in names if pods[n]["spec"].get("nodeName")]
        assert not at_rest or len(bound) == 0 or len(bound) >= minimum, f"gang {pg} partially bound: {bound}"
    used: dict[str, int] = {}
    for p in pods.values():
        node = p["spec"].get("nodeName")
        if node:
            gpu = int(p["spec"]["containers"][0]["resources"].get("limits", {}).get(GPU, 0))
            used[node] = used.get(node, 0) + gpu
    for node, cap in nodes.items():
        assert used.get(node, 0) <= cap, f"node {node} over-committed: {used.get(node)} > {cap}"


def setup_gang(kube: Kube, n: int = 4, per_node: int = 2, name: str = "g") -> tuple[list[str], dict[str, int]]:
    nodes = {kube.node(f"{name}n{i}", per_node): per_node for i in range(n // per_node)}
    kube.podgroup(name, n)
    return kube.gang(name, n), nodes


def intent_of(kube: Kube, pg: str) -> str | None:
    """The gang's live commit record: on its PodGroup, or on the member that anchors a plain gang's commit
    (its bind, the first, wrote it) while a member it names is still unbound as the pod object it recorded,
    or while it holds a rollback. The anchor keeps a completed commit's record: that one is not live."""
    obj = kube.req("GET", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{kube.ns}/podgroups/{pg}")
    text = (obj["metadata"].get("annotations") or {}).get(INTENT)
    if text:
        return str(text)
    pods = kube.pods()
    for name, record in anchor_records(kube, pg, pods).items():
        uids = record.get("uids") or {}
        for key in record["bindings"]:
            member = pods.get(key.split("/", 1)[1])
            if member and member["metadata"]["uid"] == uids.get(key) and not member["spec"].get("nodeName"):
                return str(pods[name]["metadata"]["annotations"][INTENT])
        if record.get("rollback"):
            return str(pods[name]["metadata"]["annotations"][INTENT])
    return None


def anchor_records(kube: Kube, pg: str, pods: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Member name -> the commit record it carries (live or not), of `pods` (else the namespace's now)."""
    out = {}
    for name, p in (kube.pods() if pods is None else pods).items():
        ann = p["metadata"].get("annotations") or {}
        if ann.get("pod-group-name") == pg and ann.get(INTENT):
            out[name] = json.loads(ann[INTENT])
    return out


@pytest.mark.parametrize("status", [500, 409, 429])
def test_kth_bind_fails_gang_rolls_back_then_binds(status: int, kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    names, nodes = setup_gang(kube)
    uids = {n: p["metadata"]["uid"] for n, p in kube.pods().items()}
    w = Watcher(kube)
    rule = proxy.add(Rule("POST", BIND, "status", status=status, nth=(3,)))
    daemon.start()
    placed = wait_for(
        lambda: (invariants(kube, w, {"g": (names, 4)}, nodes, at_rest=False), kube.all_bound(names))[1],
        "the gang bound after the injected failure",
        daemon,
    )
    assert rule.fired == 1
    assert len(set(placed.values())) == 2
    ev = wait_for(lambda: kube.events("FailedBinding"), "a FailedBinding event", daemon)
    assert "rolled back" in ev[0]["note"], ev[0]["note"]
    recreated = [n for n, p in kube.pods().items() if p["metadata"]["uid"] != uids[n]]
    # the anchor's bind goes first and alone, the other three together after it: the anchor and the two of
    # those that succeeded were returned (re-created unbound, so new uids)
    assert len(recreated) == 3, recreated
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)


def test_slow_binds_still_commit_whole(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    proxy.add(Rule("POST", BIND, "delay", delay=1.5))
    daemon.start()
    wait_for(
        lambda: (invariants(kube, w, {"g": (names, 4)}, nodes, at_rest=False), kube.all_bound(names))[1],
        "bound",
        daemon,
    )
    assert not kube.events("FailedBinding")


def test_connection_cut_on_a_bind(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    rule = proxy.add(Rule("POST", BIND, "drop", nth=(2,)))
    daemon.start()
    wait_for(
        lambda: (invariants(kube, w, {"g": (names, 4)}, nodes, at_rest=False), kube.all_bound(names))[1],
        "bound",
        daemon,
    )
    assert rule.fired == 1
    assert kube.events("FailedBinding")


def _held(rule: Rule, n: int) -> bool:
    return rule.seen >= n


def hold_all_binds(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> tuple[list[str], dict[str, int], Watcher]:
    """A gang of 4 whose binds sit at the proxy until `proxy.clear()` lets them go: the anchor's first (the
    others wait for it), then the other three together."""
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    rule = proxy.add(Rule("POST", BIND, "delay", hold=threading.Event(), delay=30))
    daemon.start()
    wait_for(lambda: _held(rule, 1) or None, "the anchor's bind held at the proxy", daemon)
    return names, nodes, w


def all_pending(kube: Kube, names: list[str]) -> bool:
    """Every named pod exists and is unbound (a rolled-back pod is briefly absent while re-created)."""
    pods = kube.pods()
    return all(n in pods and not pods[n]["spec"].get("nodeName") for n in names)


def test_member_deleted_mid_commit(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    names, nodes, w = hold_all_binds(kube, daemon, proxy)
    kube.req("DELETE", f"/api/v1/namespaces/{kube.ns}/pods/{names[1]}", body={"gracePeriodSeconds": 0})
    proxy.clear()  # release: the deleted member's bind fails, the others must be rolled back
    survivors = [n for n in names if n != names[1]]
    wait_for(lambda: kube.events("FailedBinding"), "FailedBinding", daemon)
    wait_for(lambda: all_pending(kube, survivors) or None, "the survivors pending again", daemon)
    invariants(kube, w, {"g": (survivors, 4)}, nodes)
    wait_for(lambda: kube.condition_reason("g") == "NotEnoughPods" or None, "NotEnoughPods", daemon)
    kube.pod(names[1], pg="g")  # the user (or a controller) brings the member back
    wait_for(lambda: kube.all_bound(names), "the whole gang bound", daemon)
    invariants(kube, w, {"g": (names, 4)}, nodes)


def test_node_deleted_mid_commit(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    names, nodes, w = hold_all_binds(kube, daemon, proxy)
    gone = sorted(nodes)[1]
    kube.req("DELETE", f"/api/v1/nodes/{gone}")
    proxy.clear()  # the binds land (the API does not check the node); the gang must not stay half-placed
    wait_for(lambda: gone in w.first.values() or (w.observe() and None), "a member bound to the gone node", daemon)
    wait_for(lambda: all_pending(kube, names) or None, "every member pending again", daemon)
    live = {n: c for n, c in nodes.items() if n != gone}
    invariants(kube, w, {"g": (names, 4)}, live)
    kube.node("gn9", 2)  # capacity comes back: the gang binds whole
    wait_for(lambda: kube.all_bound(names), "the whole gang bound", daemon)
    final = {n: p["spec"].get("nodeName") for n, p in kube.pods().items()}
    assert gone not in final.values(), f"{final} (gone: {gone})\n{daemon.tail()}"


def test_sigkill_mid_commit_then_restart(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    hold = threading.Event()
    rule = proxy.add(Rule("POST", BIND, "drop", hold=hold, nth=(3,), delay=60))
    d = daemon.start()
    wait_for(
        lambda: sum(1 for n in names if kube.pods()[n]["spec"].get("nodeName")) == 3 or None,
        "three members bound (the anchor first), the fourth held",
        daemon,
    )
    assert intent_of(kube, "g"), "the commit record is on the API server while binding"
    d.kill()
    proxy.clear()  # the held request is dropped: the old process never learns its fate
    assert rule.fired == 1
    time.sleep(0.5)
    assert sum(1 for n in names if kube.pods()[n]["spec"].get("nodeName")) == 3
    daemon.start()
    wait_for(lambda: kube.all_bound(names), "recovery completed the gang", daemon)
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    invariants(kube, w, {"g": (names, 4)}, nodes)
    line = wait_for(lambda: "recovery" in daemon.tail() and daemon.tail(), "the recovery log line", daemon)
    assert "completed (1 members bound)" in line, line


def test_apiserver_restart_mid_commit(
    kube_cluster: LocalCluster, kube: Kube, daemon: Daemons, proxy: FaultProxy
) -> None:
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    hold = threading.Event()
    proxy.add(Rule("POST", BIND, "delay", hold=hold, nth=(3, 4), delay=60))
    daemon.start()
    wait_for(
        lambda: sum(1 for n in names if kube.pods()[n]["spec"].get("nodeName")) == 2 or None,
        "two members bound, two held",
        daemon,
    )
    kube_cluster.stop_apiserver()
    hold.set()  # the held binds now meet a dead API server
    time.sleep(1.0)
    kube_cluster.restart_apiserver()
    kube.reconnect()
    wait_for(lambda: kube.all_bound(names), "the whole gang bound after the restart", daemon, timeout=60)
    invariants(kube, w, {"g": (names, 4)}, nodes)
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)


def gang_writes(proxy: FaultProxy, ns: str, pg: str, names: list[str]) -> dict[str, int]:
    """The daemon's requests that commit gang `pg`, as the proxy saw them arrive: real binds, dry-run binds
    and writes of the commit record (on the PodGroup itself, or on a member through its status)."""
    pods = {f"/api/v1/namespaces/{ns}/pods/{n}/binding" for n in names}
    records = {f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups/{pg}"}
    records |= {f"/api/v1/namespaces/{ns}/pods/{n}/status" for n in names}
    seen = {"binds": 0, "dry runs": 0, "record writes": 0}
    for _t, method, path, _ua in list(proxy.received):
        bare, _, query = path.partition("?")
        if method == "POST" and bare in pods:
            seen["dry runs" if "dryRun" in query else "binds"] += 1
        elif method == "PATCH" and bare in records:
            seen["record writes"] += 1
    return seen


def test_gang_happy_path_costs_one_request_per_pod(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    """Issue 15 point 3: a gang whose binds are not expected to fail is not dry-run first, and its record
    is written by its anchor's bind: one bind per member and nothing else (N requests; N + 1 with the record
    written apart, 2N + 2 with every bind dry-run and the record cleared by a request of its own). The
    anchor keeps the record, which a daemon started afresh reads as done: it touches nothing."""
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    first = daemon.start()
    wait_for(lambda: kube.all_bound(names), "the gang bound", daemon)
    invariants(kube, w, {"g": (names, 4)}, nodes)
    assert gang_writes(proxy, kube.ns, "g", names) == {"binds": 4, "dry runs": 0, "record writes": 0}
    records = anchor_records(kube, "g")
    assert len(records) == 1 and intent_of(kube, "g") is None, records
    ((anchor, record),) = records.items()
    assert kube.pods()[anchor]["spec"]["nodeName"] == record["bindings"][f"{kube.ns}/{anchor}"]
    assert sorted(record["bindings"]) == sorted(f"{kube.ns}/{n}" for n in names) and record["gang"] == f"{kube.ns}/g"
    uids = {n: p["metadata"]["uid"] for n, p in kube.pods().items()}
    first.kill()
    seen = len(proxy.received)
    second = daemon.start()  # recovery reads the anchor's record every cycle: a completed commit, left alone
    daemon.wait_cycles(second, 3)
    later = list(proxy.received)[seen:]
    writes = [(m, p) for _t, m, p, _ua in later if m in ("POST", "PATCH", "PUT", "DELETE") and "/leases/" not in p]
    assert not [w for w in writes if f"/namespaces/{kube.ns}/" in w[1]], writes
    assert {n: p["metadata"]["uid"] for n, p in kube.pods().items()} == uids
    assert anchor_records(kube, "g") == records
    assert "recovery" not in daemon.tail()


def test_a_large_gangs_record_goes_on_its_podgroup(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    """A record too large to ride on a member for good (over 8 KiB: here 40 members with long names) is
    written on the PodGroup and cleared by a request of its own (N + 2), and no member keeps one."""
    pg = "large-gang-whose-members-have-rather-long-names"
    names, nodes = setup_gang(kube, n=40, per_node=2, name=pg)
    w = Watcher(kube)
    daemon.start()
    wait_for(lambda: kube.all_bound(names), "the gang bound", daemon)
    wait_for(lambda: intent_of(kube, pg) is None or None, "intent cleared", daemon)
    invariants(kube, w, {pg: (names, 40)}, nodes)
    assert gang_writes(proxy, kube.ns, pg, names) == {"binds": 40, "dry runs": 0, "record writes": 2}
    assert not anchor_records(kube, pg)


def test_a_member_replaced_after_the_commit_leaves_the_gang_alone(
    kube: Kube, daemon: Daemons, proxy: FaultProxy
) -> None:
    """The anchor's record names every member by uid: a member deleted after the commit and created again
    (a new pod object, pending) does not make the record live. Here its room was taken meanwhile, so a
    record read as live would roll the three running members back (no room to finish the plan); instead
    they run on untouched, and the new member binds once room comes back."""
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    first = daemon.start()
    wait_for(lambda: kube.all_bound(names), "the gang bound", daemon)
    (anchor,) = anchor_records(kube, "g")
    other = next(n for n in names if n != anchor)
    node = kube.pods()[other]["spec"]["nodeName"]
    first.kill()
    kube.req("DELETE", f"/api/v1/namespaces/{kube.ns}/pods/{other}", body={"gracePeriodSeconds": 0})
    wait_for(lambda: other not in kube.pods() or None, "the member gone", daemon)
    kube.pod("filler", 1, scheduler="default-scheduler", node_name=node)  # its room taken
    kube.pod(other, pg="g")  # created again: pending, a new uid
    kept = {n: p["metadata"]["uid"] for n, p in kube.pods().items() if n != other}
    second = daemon.start()
    daemon.wait_cycles(second, 5)
    pods = kube.pods()
    assert {n: p["metadata"]["uid"] for n, p in pods.items() if n != other} == kept, daemon.tail()
    assert not pods[other]["spec"].get("nodeName")
    assert "recovery" not in daemon.tail()
    kube.req("DELETE", f"/api/v1/namespaces/{kube.ns}/pods/filler", body={"gracePeriodSeconds": 0})
    wait_for(lambda: kube.all_bound(names), "the new member bound beside the others", daemon)
    assert {n: p["metadata"]["uid"] for n, p in kube.pods().items() if n != other} == {
        n: u for n, u in kept.items() if n != "filler"
    }
    invariants(kube, w, {"g": (names, 4)}, nodes)


def test_sigkill_after_the_anchor_bound_then_restart(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    """The daemon dies right after the anchor's bind (which wrote the record) while the other binds are held:
    the next daemon finds the record live on the bound anchor and completes the gang."""
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    rule = proxy.add(Rule("POST", BIND, "drop", hold=threading.Event(), nth=(2, 3, 4), delay=60))
    d = daemon.start()
    wait_for(lambda: rule.seen >= 4 or None, "the anchor bound, the other three binds held", daemon)
    bound = [n for n in names if kube.pods()[n]["spec"].get("nodeName")]
    assert len(bound) == 1 and list(anchor_records(kube, "g")) == bound
    assert intent_of(kube, "g"), "the anchor's record is live: three members it names are unbound"
    d.kill()
    proxy.clear()
    daemon.start()
    wait_for(lambda: kube.all_bound(names), "recovery completed the gang", daemon)
    invariants(kube, w, {"g": (names, 4)}, nodes)
    line = wait_for(lambda: "recovery" in daemon.tail() and daemon.tail(), "the recovery log line", daemon)
    assert "completed (3 members bound)" in line, line
    wait_for(lambda: intent_of(kube, "g") is None or None, "no live record", daemon)


def test_retry_after_a_refused_bind_is_dry_run_first(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    """Where a refusal is likely (the gang's last commit had a bind refused), the retry validates every bind
    with a server-side dry run before the real binds; the first commit did not."""
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    rule = proxy.add(Rule("POST", BIND, "status", status=500, nth=(3,)))
    daemon.start()
    wait_for(lambda: kube.all_bound(names), "the gang bound after the injected failure", daemon)
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    invariants(kube, w, {"g": (names, 4)}, nodes)
    assert rule.fired == 1
    binds = [
        "dry" if "dryRun" in path else "bind"
        for _t, method, path, _ua in list(proxy.received)
        if method == "POST" and path.partition("?")[0].endswith("/binding")
    ]
    # first commit: 4 real binds (the anchor's, then three together, one refused), no dry run; the retry: 4
    # dry runs, then 4 real binds
    assert binds == ["bind"] * 4 + ["dry"] * 4 + ["bind"] * 4, binds

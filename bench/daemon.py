"""Daemon benchmark: the real `kaisched run` against a local kube-apiserver + etcd, vs upstream kube-scheduler.

Starts a LocalCluster (tests/kubecluster.py), applies the CRDs, creates 500 Nodes (5 zones x 10 racks x 10
nodes; cpu 64, memory 256Gi, nvidia.com/gpu 8, pods 110), then a backlog of 1,000 single pods (cpu 100m) and
100 PodGroups of 8 pods (minMember 8, 1 GPU each via limits), all with schedulerName kai-scheduler, created
from a thread pool as fast as the API server takes them. Then it starts the daemon with the given client
QPS/burst and watches the pods until every one has spec.nodeName. Prints throughput, bind latencies
(bound time - the time the pod's create call returned), the gang all-or-nothing check and the per-node
over-commit check, and the daemon's slow cycle phases / warnings from its log.

Baseline, same run: the bench's pods are deleted, a fresh namespace gets the same 1,000 single pods with
schedulerName default-scheduler, and upstream kube-scheduler (from the testbin folder, same QPS/burst through
a KubeSchedulerConfiguration's clientConnection) schedules them. Prints pods/s for both and the ratio.

    python bench/daemon.py [--qps 200 --burst 400 --schedule-period 1]

Take-back case (issue 12), `python bench/daemon.py takeback [--rounds 3 --victim-grace 30]`: 1,000 kwok nodes x 8
GPUs, each held by one low-priority (50) 8-GPU pod placed by hand; with the daemon running (the default five
actions), a high-priority (125) gang of 8 x 8 GPUs (PodGroup minMember 8) is created. Prints, per round, the
time from the first create call to all 8 bound and the number of victims (exactly 8 is right); between rounds
the gang is deleted and its nodes filled again. KAI-Scheduler's figure on the same setup: 2.75 s, 8 victims.

Every process (etcd, kube-apiserver, the daemon, kube-scheduler) belongs to the LocalCluster and is killed
when it stops; the processes' logs are copied to --log-dir first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scheduler.kube.client import ApiError, KubeClient  # noqa: E402
from scheduler.kube.paths import WATCHED  # noqa: E402
from scheduler.kube.quantity import parse_quantity  # noqa: E402
from tests.kubecluster import LocalCluster, apply_crds, free_port  # noqa: E402

GPU = "nvidia.com/gpu"
ZONES, RACKS, PER_RACK = 5, 10, 10
NODE_ALLOC = {"cpu": "64", "memory": "256Gi", GPU: "8", "pods": "110"}
KAI_NS, KUBE_NS = "bench-kai", "bench-kube"
GROUP_ANNOTATION = "pod-group-name"


# ------------------------------------------------------------------------------------------ creation
def make_nodes(
    client: KubeClient,
    pool: ThreadPoolExecutor,
    zones: int = ZONES,
    racks: int = RACKS,
    per_rack: int = PER_RACK,
    *,
    kwok: bool = False,
) -> float:
    """zones x racks x per_rack Nodes. kwok=False: the bench patches a Ready status itself (no controller);
    kwok=True: the Node carries kwok's annotation and its capacity on create, and the kwok controller
    (LocalCluster.start_kwok) adds the Ready condition and heartbeats."""
    t0 = time.monotonic()

    def one(i: int) -> None:
        z, r = i // (racks * per_rack), (i // per_rack) % racks
        name = f"node-{i:04d}"
        meta: dict[str, Any] = {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": f"zone-{z}",
                "topology.kubernetes.io/rack": f"zone-{z}-rack-{r}",
            },
        }
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": meta}
        if kwok:
            meta["annotations"] = {LocalCluster.KWOK_NODE_ANNOTATION: "fake"}
            body["status"] = {"allocatable": NODE_ALLOC, "capacity": NODE_ALLOC}
        client.request("POST", "/api/v1/nodes", body=body)
        if kwok:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        client.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            body={
                "status": {
                    "allocatable": NODE_ALLOC,
                    "capacity": NODE_ALLOC,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "bench",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                }
            },
            content_type="application/merge-patch+json",
        )

    list(pool.map(one, range(zones * racks * per_rack)))
    return time.monotonic() - t0


def pod_body(ns: str, name: str, scheduler: str, *, gpu: bool, group: str = "") -> dict[str, Any]:
    resources = {"limits": {GPU: "1"}} if gpu else {"requests": {"cpu": "100m"}}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": {"bench": "1"}}
    if group:
        meta["annotations"] = {GROUP_ANNOTATION: group}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "schedulerName": scheduler,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": resources}],
        },
    }


def bench_setup(cluster: LocalCluster, workers: int) -> tuple[str, KubeClient, ThreadPoolExecutor]:
    """The CRDs applied; the kubeconfig, the bench's own client (no rate limit: creation goes as fast as the
    API server allows) and a pool of `workers` threads to create objects with."""
    api = cluster.api_client()
    apply_crds(api)
    api.close()
    kubeconfig = str(cluster.kubeconfig)
    client = KubeClient.from_kubeconfig(kubeconfig, qps=0, burst=1)
    client.pool.connection_pool_kw["maxsize"] = workers + 4
    warm_up(client)
    return kubeconfig, client, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="create")


def warm_up(client: KubeClient, timeout: float = 30.0) -> None:
    """List every kind the daemon watches once, as a long-running API server has been asked before: the API
    server makes a custom resource's storage on its first request, and answers lists 429 'storage is
    (re)initializing' until it is ready, which put a 0.2-0.4 s retry into a contender's start-up."""
    deadline = time.monotonic() + timeout
    for res in WATCHED:
        while True:
            try:
                client.request("GET", res.collection(), params={"limit": 1})
                break
            except ApiError as err:
                if err.status not in (404, 429, 503) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def create_namespace(client: KubeClient, ns: str) -> None:
    client.request(
        "POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )


def create_pods(
    client: KubeClient, pool: ThreadPoolExecutor, bodies: list[dict[str, Any]]
) -> tuple[dict[str, float], float]:
    """Create every pod; returns {name: monotonic time its create call returned} and the wall time taken."""
    t0 = time.monotonic()

    def one(body: dict[str, Any]) -> tuple[str, float]:
        ns = body["metadata"]["namespace"]
        client.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)
        return body["metadata"]["name"], time.monotonic()

    created = dict(pool.map(one, bodies))
    return created, time.monotonic() - t0


def create_podgroups(
    client: KubeClient,
    pool: ThreadPoolExecutor,
    ns: str,
    names: list[str],
    size: int,
    annotations: dict[str, str] | None = None,
    priority_class: str = "",
) -> None:
    def one(name: str) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if annotations:
            meta["annotations"] = dict(annotations)
        spec: dict[str, Any] = {"minMember": size}
        if priority_class:
            spec["priorityClassName"] = priority_class
        client.request(
            "POST",
            f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups",
            body={"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": meta, "spec": spec},
        )

    list(pool.map(one, names))


def delete_pods(client: KubeClient, ns: str, timeout: float = 60.0) -> bool:
    """Delete every pod of the namespace (grace 0: gone at once, kubelet or not); True when none is left.

    A large collection can outlast the API server's request timeout (it deletes with
    --delete-collection-workers, default 1): the deletion goes on server-side, so wait for the pods anyway."""
    try:
        client.request("DELETE", f"/api/v1/namespaces/{ns}/pods", params={"gracePeriodSeconds": 0}, timeout=120)
    except Exception as err:
        print(f"delete {ns}/pods: {err!r}; waiting for the pods to go", flush=True)
    deadline = time.monotonic() + timeout
    while list_all(client, f"/api/v1/namespaces/{ns}/pods"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def kaisched_argv(kubeconfig: str, qps: float, burst: int, schedule_period: float, http_port: int = 0) -> list[str]:
    return [
        sys.executable, "-m", "scheduler.cli.main", "run",
        "--kubeconfig", kubeconfig,
        "--http-port", str(http_port), "--http-address", "127.0.0.1",
        "--schedule-period", str(schedule_period),
        "--qps", str(qps), "--burst", str(burst),
    ]  # fmt: skip


def repo_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def kube_scheduler_argv(cluster: LocalCluster, kubeconfig: str, qps: float, burst: int) -> list[str]:
    """Upstream kube-scheduler from the testbin folder, client QPS/burst via its KubeSchedulerConfiguration."""
    cfg = Path(cluster.workdir or "/tmp") / "kube-scheduler.yaml"
    cfg.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        f"clientConnection:\n  kubeconfig: {kubeconfig}\n  qps: {qps}\n  burst: {burst}\n"
        "leaderElection:\n  leaderElect: false\n"
    )
    return [str(cluster.bin_dir / "kube-scheduler"), f"--config={cfg}", "--secure-port=0", "-v=1"]


# ------------------------------------------------------------------------------------------ watching
class BindWatcher(threading.Thread):
    """List the namespace's pods, then watch from the list's resourceVersion; record when each gets a node."""

    def __init__(self, client: KubeClient, ns: str, expected: int) -> None:
        super().__init__(name=f"watch-{ns}", daemon=True)
        self.client, self.ns, self.expected = client, ns, expected
        self.bound: dict[str, float] = {}
        self.node: dict[str, str] = {}
        self.done = threading.Event()
        self.ready = threading.Event()
        self.stop_event = threading.Event()
        self.errors: list[str] = []

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        node = (obj.get("spec") or {}).get("nodeName")
        if node and name not in self.bound:
            self.bound[name] = time.monotonic()
            self.node[name] = node
            if len(self.bound) >= self.expected:
                self.done.set()

    def run(self) -> None:
        path = f"/api/v1/namespaces/{self.ns}/pods"
        rv = ""
        while not self.stop_event.is_set() and not self.done.is_set():
            try:
                if not rv:
                    page = self.client.request("GET", path, params={"limit": 5000})
                    for item in page.get("items") or []:
                        self._see(item)
                    rv = str(page["metadata"]["resourceVersion"])
                    self.ready.set()
                for ev in self.client.watch(
                    path, {"resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": 600}, timeout=620
                ):
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":
                        rv = ""
                        self.errors.append(str(obj.get("message")))
                        break
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        self._see(obj)
                    if self.done.is_set() or self.stop_event.is_set():
                        return
            except Exception as err:  # reconnect
                self.errors.append(repr(err))
                time.sleep(0.2)


# ------------------------------------------------------------------------------------------ checks
def _requests(pod: dict[str, Any]) -> dict[str, Fraction]:
    out: dict[str, Fraction] = defaultdict(Fraction)
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        req = dict(res.get("limits") or {})  # the API server defaults requests to limits
        req.update(res.get("requests") or {})
        for k, v in req.items():
            out[k] += parse_quantity(v)
    out["pods"] += 1
    return out


def list_all(client: KubeClient, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cont = None
    while True:
        page = client.request("GET", path, params={"limit": 5000, "continue": cont})
        items.extend(page.get("items") or [])
        cont = (page.get("metadata") or {}).get("continue")
        if not cont:
            return items


def wait_nodes_ready(client: KubeClient, n: int, timeout: float) -> tuple[int, float]:
    t0 = time.monotonic()
    ready = 0
    while time.monotonic() - t0 < timeout:
        ready = 0
        for node in list_all(client, "/api/v1/nodes"):
            conds = (node.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                ready += 1
        if ready >= n:
            break
        time.sleep(1.0)
    return ready, time.monotonic() - t0


def overcommitted(client: KubeClient) -> list[str]:
    nodes = {n["metadata"]["name"]: n["status"]["allocatable"] for n in list_all(client, "/api/v1/nodes")}
    used: dict[str, dict[str, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
    for pod in list_all(client, "/api/v1/pods"):
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            for k, v in _requests(pod).items():
                used[node][k] += v
    bad = []
    for node, req in sorted(used.items()):
        alloc = nodes.get(node)
        if alloc is None:
            bad.append(f"{node}: not a node")
            continue
        for k, v in req.items():
            if v > parse_quantity(alloc.get(k, "0")):
                bad.append(f"{node}: {k} {float(v):g} > {alloc.get(k, '0')}")
    return bad


def gang_check(pods: list[dict[str, Any]]) -> tuple[int, int, list[str]]:
    """(fully bound gangs, unbound gangs, partially bound gangs)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for p in pods:
        g = ((p.get("metadata") or {}).get("annotations") or {}).get(GROUP_ANNOTATION)
        if g:
            groups[g].append(bool((p.get("spec") or {}).get("nodeName")))
    full = sum(1 for v in groups.values() if all(v))
    none = sum(1 for v in groups.values() if not any(v))
    partial = [f"{g}: {sum(v)}/{len(v)}" for g, v in sorted(groups.items()) if any(v) and not all(v)]
    return full, none, partial


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def fmt_lat(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<22} (none bound)"
    return (
        f"  {label:<22} n={len(values):<5d} p50={pct(values, 0.50):7.2f}s  p95={pct(values, 0.95):7.2f}s  "
        f"max={max(values):7.2f}s"
    )


# ------------------------------------------------------------------------------------------ daemon log
_CYCLE = re.compile(r"^(\S+ \S+) INFO kaisched (cycle=.*)$")


def summarize_daemon_log(text: str) -> list[str]:
    out: list[str] = []
    cycles = []
    for line in text.splitlines():
        m = _CYCLE.match(line)
        if m:
            kv = dict(part.split("=", 1) for part in m.group(2).split())
            cycles.append((m.group(1), kv))
    out.append(f"  cycles logged: {len(cycles)}")
    for ts, kv in cycles[:12]:
        out.append(
            f"    {ts[11:]} cycle={kv['cycle']:>3} events={kv['events']:>5} tried={kv['gangs_tried']:>5} "
            f"placed={kv['gangs_placed']:>5} waiting={kv['gangs_waiting']:>4} bound={kv['pods_bound']:>5} "
            f"fail={kv['bind_failures']} snapshot={kv['snapshot_ms']}ms allocate={kv['allocate_ms']}ms "
            f"commit={kv['commit_ms']}ms status={kv['status_ms']}ms"
        )
    if len(cycles) > 12:
        out.append(f"    ... {len(cycles) - 12} more")
    for phase in ("snapshot_ms", "allocate_ms", "commit_ms", "status_ms"):
        vals = [float(kv[phase]) for _, kv in cycles if phase in kv]
        if vals:
            out.append(f"  {phase:<12} total={sum(vals):9.1f}  max={max(vals):8.1f}")
    problems = [
        ln
        for ln in text.splitlines()
        if (" WARNING " in ln or " ERROR " in ln or "Traceback" in ln or "Error" in ln) and not ln.startswith("====")
    ]
    out.append(f"  warning/error lines: {len(problems)}")
    for ln in problems[:15]:
        out.append(f"    {ln[:300]}")
    return out


# ------------------------------------------------------------------------------------------ one run
def run_backlog(
    cluster: LocalCluster,
    client: KubeClient,
    pool: ThreadPoolExecutor,
    bodies: list[dict[str, Any]],
    proc_name: str,
    argv: list[str],
    env: dict[str, str] | None,
    timeout: float,
    wait_log: str = "",
    wait_log_timeout: float = 60.0,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Create the backlog, start the contender and wait until every pod is bound (or `timeout`); `on_start`
    runs once the backlog exists, right before the contender starts (bench/commit.py counts requests)."""
    created, create_s = create_pods(client, pool, bodies)
    watcher = BindWatcher(client, bodies[0]["metadata"]["namespace"], len(bodies))
    watcher.start()
    watcher.ready.wait(30)
    if on_start is not None:
        on_start()
    t_start = time.monotonic()
    wall_start = time.time()
    proc = cluster.spawn(proc_name, argv, env=env)
    finished = watcher.done.wait(timeout)
    t_end = time.monotonic()
    watcher.stop_event.set()
    exited = proc.poll()
    log_wait = None
    if wait_log and exited is None:
        # the daemon logs a cycle's line only when the cycle ends (after its status writes): wait for it, so
        # the summary below has the phases of the cycle that did the binding, and how long it ran past them
        deadline = time.monotonic() + wait_log_timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if wait_log in cluster.log_path(proc_name).read_text(errors="replace"):
                log_wait = time.monotonic() - t_end
                break
            time.sleep(0.2)
    time.sleep(0.3)
    cluster.kill(proc_name)
    return {
        "created": created,
        "create_s": create_s,
        "bound": dict(watcher.bound),
        "t_start": t_start,
        "wall_start": wall_start,
        "finished": finished,
        "t_end": t_end,
        "exited": exited,
        "watch_errors": watcher.errors,
        "log_wait": log_wait,
    }


def throughput(res: dict[str, Any], n: int) -> tuple[float, float, float, float]:
    """(seconds start->all bound, pods/s, seconds start->first bind, pods/s first->last bind)."""
    times = sorted(res["bound"].values())
    if not times:
        return float("inf"), 0.0, float("inf"), 0.0
    last = times[-1] if res["finished"] else res["t_end"]
    total = last - res["t_start"]
    first = times[0] - res["t_start"]
    span = times[-1] - times[0]
    return total, len(times) / total, first, (len(times) - 1) / span if span > 0 else float("inf")


def daemon_args(ap: argparse.ArgumentParser, *, timeout: float, log_dir: str = "") -> None:
    """The options every bench that runs the daemon on the local API server takes (defaults alike, but the
    wait and where the logs go)."""
    ap.add_argument("--qps", type=float, default=200.0, help="client QPS of every contender")
    ap.add_argument("--burst", type=int, default=400, help="client burst of every contender")
    ap.add_argument("--schedule-period", type=float, default=1.0, help="kaisched --schedule-period")
    ap.add_argument("--workers", type=int, default=32, help="the bench's threads creating objects")
    ap.add_argument("--timeout", type=float, default=timeout, help="seconds to wait for all bound, per contender")
    if log_dir:
        ap.add_argument("--log-dir", default=log_dir, help="the processes' logs are copied here")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--singles", type=int, default=1000)
    ap.add_argument("--gangs", type=int, default=100)
    ap.add_argument("--gang-size", type=int, default=8)
    ap.add_argument(
        "--log-wait", type=float, default=60.0, help="after all bound, seconds to wait for the daemon's cycle log line"
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the kube-scheduler run")
    daemon_args(ap, timeout=120.0, log_dir="/tmp/kaisched-bench-daemon-logs")
    args = ap.parse_args()

    t_bench = time.monotonic()
    out: list[str] = []
    with LocalCluster() as cluster:
        kubeconfig, client, pool = bench_setup(cluster, args.workers)
        try:
            nodes_s = make_nodes(client, pool)
            n_nodes = ZONES * RACKS * PER_RACK
            print(f"cluster: {n_nodes} nodes created+status-patched in {nodes_s:.1f}s", flush=True)

            # ---------------------------------------------------------------- kaisched
            create_namespace(client, KAI_NS)
            groups = [f"pg-{g:03d}" for g in range(args.gangs)]
            create_podgroups(client, pool, KAI_NS, groups, args.gang_size)
            bodies = [pod_body(KAI_NS, f"single-{i:04d}", "kai-scheduler", gpu=False) for i in range(args.singles)]
            bodies += [
                pod_body(KAI_NS, f"{g}-{m}", "kai-scheduler", gpu=True, group=g)
                for g in groups
                for m in range(args.gang_size)
            ]
            n_kai = len(bodies)
            argv = kaisched_argv(kubeconfig, args.qps, args.burst, args.schedule_period)
            env = repo_env()
            kai = run_backlog(
                cluster, client, pool, bodies, "kaisched", argv, env, args.timeout, " cycle=", args.log_wait
            )
            kai_pods = list_all(client, f"/api/v1/namespaces/{KAI_NS}/pods")
            full, none, partial = gang_check(kai_pods)
            over_kai = overcommitted(client)
            daemon_log = cluster.log_path("kaisched").read_text(errors="replace")

            # ---------------------------------------------------------------- kube-scheduler baseline
            base = None
            over_base: list[str] = []
            if not args.no_baseline:
                # same empty cluster for the baseline: drop the bench's pods (no kubelet: grace 0 deletes at once)
                delete_pods(client, KAI_NS)
                ks_argv = kube_scheduler_argv(cluster, kubeconfig, args.qps, args.burst)
                kbodies = [
                    pod_body(KUBE_NS, f"single-{i:04d}", "default-scheduler", gpu=False) for i in range(args.singles)
                ]
                create_namespace(client, KUBE_NS)
                base = run_backlog(cluster, client, pool, kbodies, "kube-scheduler", ks_argv, None, args.timeout)
                over_base = overcommitted(client)
                ks_log = cluster.log_path("kube-scheduler").read_text(errors="replace")
            else:
                ks_log = ""

            # copy logs out before the cluster's temp dir goes away
            logdir = Path(args.log_dir)
            logdir.mkdir(parents=True, exist_ok=True)
            for name in ("kaisched", "kube-scheduler", "kube-apiserver", "etcd"):
                src = cluster.log_path(name)
                if src.exists():
                    shutil.copy(src, logdir / f"{name}.log")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------------ report
    singles = [n for n in kai["created"] if n.startswith("single-")]
    gang_pods = [n for n in kai["created"] if not n.startswith("single-")]
    lat_s = [kai["bound"][n] - kai["created"][n] for n in singles if n in kai["bound"]]
    lat_g = [kai["bound"][n] - kai["created"][n] for n in gang_pods if n in kai["bound"]]
    total, rate, first, bind_rate = throughput(kai, n_kai)
    n_kai_bound = len(kai["bound"])
    # the singles alone: daemon start -> last single bound
    single_times = [kai["bound"][n] for n in singles if n in kai["bound"]]
    single_total = (max(single_times) - kai["t_start"]) if single_times else float("inf")
    single_rate = len(single_times) / single_total if single_times else 0.0

    out.append("")
    out.append("=== kaisched daemon ===")
    out.append(
        f"pods: {n_kai} ({args.singles} singles + {args.gangs} gangs x {args.gang_size}); nodes: {n_nodes}; "
        f"client QPS/burst: {args.qps:g}/{args.burst}; schedule period: {args.schedule_period:g}s"
    )
    out.append(f"backlog creation: {kai['create_s']:.1f}s ({n_kai / kai['create_s']:.0f} pods/s)")
    status = "all bound" if kai["finished"] else f"TIMEOUT after {args.timeout:g}s"
    out.append(
        f"daemon start -> {status}: {total:.2f}s  ({n_kai_bound}/{n_kai} bound, {rate:.1f} pods/s); "
        f"first bind after {first:.2f}s; first->last bind {bind_rate:.1f} pods/s"
    )
    out.append(f"singles only: daemon start -> last single bound {single_total:.2f}s ({single_rate:.1f} pods/s)")
    out.append("bind latency (bound time - create time):")
    out.append(fmt_lat("singles", lat_s))
    out.append(fmt_lat("gang pods", lat_g))
    out.append(
        f"gangs: {full} fully bound, {none} unbound, {len(partial)} partially bound"
        + (f" {partial[:5]}" if partial else "")
        + ("  -> OK (all-or-nothing)" if not partial else "  -> FAIL")
    )
    out.append(
        f"over-committed nodes: {len(over_kai)}"
        + (f" {over_kai[:5]}" if over_kai else "")
        + ("  -> OK" if not over_kai else "  -> FAIL")
    )
    if kai["log_wait"] is not None:
        out.append(f"the daemon logged its first cycle line {kai['log_wait']:.1f}s after the last pod was bound")
    else:
        out.append(f"the daemon logged NO cycle line within {args.log_wait:g}s after the last pod was bound")
    if kai["exited"] is not None:
        out.append(f"daemon EXITED early with code {kai['exited']}")
    if kai["watch_errors"]:
        out.append(f"bench watch errors: {kai['watch_errors'][:3]}")
    out.append("daemon log:")
    out.extend(summarize_daemon_log(daemon_log))

    if base is not None:
        b_total, b_rate, b_first, b_bind_rate = throughput(base, args.singles)
        lat_b = [base["bound"][n] - base["created"][n] for n in base["created"] if n in base["bound"]]
        b_status = "all bound" if base["finished"] else f"TIMEOUT after {args.timeout:g}s"
        out.append("")
        out.append("=== kube-scheduler baseline (singles only) ===")
        out.append(f"pods: {args.singles}; client QPS/burst: {args.qps:g}/{args.burst}")
        out.append(f"backlog creation: {base['create_s']:.1f}s")
        out.append(
            f"kube-scheduler start -> {b_status}: {b_total:.2f}s  ({len(base['bound'])}/{args.singles} bound, "
            f"{b_rate:.1f} pods/s); first bind after {b_first:.2f}s; first->last bind {b_bind_rate:.1f} pods/s"
        )
        out.append(fmt_lat("singles", lat_b))
        out.append(
            f"over-committed nodes: {len(over_base)}" + ("  -> OK" if not over_base else f" {over_base[:5]} -> FAIL")
        )
        if base["exited"] is not None:
            out.append(f"kube-scheduler EXITED early with code {base['exited']}")
            out.append("\n".join(ks_log.splitlines()[-10:]))
        out.append("")
        out.append("=== single pods: pods/s, start -> all bound ===")
        out.append(f"kaisched       {single_rate:8.1f} pods/s  ({len(single_times)} singles in {single_total:.2f}s)")
        out.append(f"kube-scheduler {b_rate:8.1f} pods/s  ({len(base['bound'])} in {b_total:.2f}s)")
        out.append(f"ratio ours/kube-scheduler: {single_rate / b_rate:.2f}x" if b_rate else "ratio: n/a")
        out.append(
            f"(all {n_kai} kaisched pods incl. gangs: {rate:.1f} pods/s; "
            f"first->last bind: kaisched {bind_rate:.1f} vs kube-scheduler {b_bind_rate:.1f} pods/s)"
        )
    out.append("")
    out.append(f"bench wall time: {time.monotonic() - t_bench:.0f}s; logs in {args.log_dir}")
    print("\n".join(out), flush=True)
    ok = kai["finished"] and not partial and not over_kai and not over_base
    return 0 if ok else 1


# ------------------------------------------------------------------------------------------ take-back case
TB_LOW_NS = "takeback-low"
LOW_CLASS, HIGH_CLASS = ("bench-low", 50), ("bench-high", 125)


def whole_node_pod(
    ns: str, name: str, priority_class: str, grace: int, node: str = "", group: str = ""
) -> dict[str, Any]:
    """An 8-GPU pod (a whole node); `node`: placed by hand (spec.nodeName), as if scheduled long ago."""
    body = pod_body(ns, name, "kai-scheduler", gpu=True, group=group)
    body["spec"]["containers"][0]["resources"] = {"limits": {GPU: NODE_ALLOC[GPU]}}
    body["spec"]["priorityClassName"] = priority_class
    body["spec"]["terminationGracePeriodSeconds"] = grace
    if node:
        body["spec"]["nodeName"] = node
    return body


def wait_running(client: KubeClient, ns: str, n: int, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        pods = list_all(client, f"/api/v1/namespaces/{ns}/pods")
        if sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running") >= n:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"{ns}: fewer than {n} pods Running after {timeout:.0f}s")


def daemon_cycles(port: int) -> float:
    import urllib.request

    from tests.daemonproc import parse_metrics

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return parse_metrics(r.read().decode()).get("kaisched_cycles_total", 0.0)


def live_pods(client: KubeClient, ns: str) -> dict[str, str]:
    """Pods not terminating: name -> node."""
    return {
        p["metadata"]["name"]: str(p["spec"].get("nodeName") or "")
        for p in list_all(client, f"/api/v1/namespaces/{ns}/pods")
        if not p["metadata"].get("deletionTimestamp")
    }


def takeback_round(client: KubeClient, pool: ThreadPoolExecutor, r: int, size: int, timeout: float) -> dict[str, Any]:
    """Create the high-priority gang (PodGroup, then its pods at once); wait until every member is bound."""
    ns, pg = f"takeback-gang-{r}", f"hi-{r}"
    create_namespace(client, ns)
    before = live_pods(client, TB_LOW_NS)
    watcher = BindWatcher(client, ns, size)
    watcher.start()
    watcher.ready.wait(30)
    bodies = [whole_node_pod(ns, f"{pg}-{m}", HIGH_CLASS[0], 30, group=pg) for m in range(size)]
    wall0 = time.time()
    t0 = time.monotonic()
    create_podgroups(client, pool, ns, [pg], size, priority_class=HIGH_CLASS[0])
    create_pods(client, pool, bodies)
    created = time.monotonic() - t0
    finished = watcher.done.wait(timeout)
    watcher.stop_event.set()
    times = sorted(watcher.bound.values())
    after = live_pods(client, TB_LOW_NS)
    victims = sorted(set(before) - set(after))
    return {
        "ns": ns,
        "finished": finished,
        "created_s": created,
        "first_s": times[0] - t0 if times else float("inf"),
        "all_s": times[-1] - t0 if finished else float("inf"),
        "bound": len(times),
        "victims": victims,
        "victims_on_gang_nodes": sorted({before[v] for v in victims}) == sorted(set(watcher.node.values())),
        "nodes": sorted(set(watcher.node.values())),
        "wall0": wall0,
    }


def refill(client: KubeClient, pool: ThreadPoolExecutor, res: dict[str, Any], r: int, grace: int) -> None:
    """Give the gang's nodes back to low-priority pods, for the next round."""
    delete_pods(client, res["ns"])
    bodies = [
        whole_node_pod(TB_LOW_NS, f"low-r{r}-{i}", LOW_CLASS[0], grace, node=n) for i, n in enumerate(res["nodes"])
    ]
    create_pods(client, pool, bodies)


def binding_cycle(text: str, wall0: float) -> dict[str, float] | None:
    """The first cycle logged after `wall0` that queued commits (it decided the gang; the binds run beside the
    loop and are reported by a later cycle): when it started (wall clock) and its phases (ms)."""
    for line in text.splitlines():
        m = _CYCLE.match(line)
        if not m:
            continue
        kv = dict(part.split("=", 1) for part in m.group(2).split())
        ended = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, as logged
        phases = {k: float(kv[f"{k}_ms"]) for k in ("snapshot", "allocate", "commit", "status")}
        if ended >= wall0 and kv.get("gangs_committing") not in (None, "0"):
            return {"started": ended - sum(phases.values()) / 1000, **phases}
    return None


def takeback_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="daemon.py takeback", description="high-priority gang on a full cluster")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gang-size", type=int, default=8)
    ap.add_argument("--victim-grace", type=int, default=30, help="the low-priority pods' terminationGracePeriodSeconds")
    daemon_args(ap, timeout=60.0, log_dir="/tmp/kaisched-bench-takeback-logs")
    args = ap.parse_args(argv)
    zones, racks, per_rack = 10, 10, 10
    n_nodes = zones * racks * per_rack
    t_bench = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t_bench:6.1f}s] {msg}", flush=True)

    rounds: list[dict[str, Any]] = []
    with LocalCluster() as cluster:
        kubeconfig, client, pool = bench_setup(cluster, args.workers)
        cluster.start_kwok()
        try:
            for name, value in (LOW_CLASS, HIGH_CLASS):
                client.request(
                    "POST",
                    "/apis/scheduling.k8s.io/v1/priorityclasses",
                    body={"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                          "value": value},
                )  # fmt: skip
            nodes_s = make_nodes(client, pool, zones, racks, per_rack, kwok=True)
            ready, ready_s = wait_nodes_ready(client, n_nodes, 180)
            say(f"{n_nodes} kwok nodes created in {nodes_s:.1f}s, {ready} Ready {ready_s:.1f}s later")
            create_namespace(client, TB_LOW_NS)
            names = sorted(n["metadata"]["name"] for n in list_all(client, "/api/v1/nodes"))
            low = [whole_node_pod(TB_LOW_NS, f"low-{i:04d}", LOW_CLASS[0], args.victim_grace, node=n)
                   for i, n in enumerate(names)]  # fmt: skip
            _, create_s = create_pods(client, pool, low)
            run_s = wait_running(client, TB_LOW_NS, len(low), 300)
            say(f"{len(low)} low-priority 8-GPU pods created in {create_s:.1f}s, Running {run_s:.1f}s later")
            port = free_port()
            argv_d = kaisched_argv(kubeconfig, args.qps, args.burst, args.schedule_period, http_port=port)
            cluster.spawn("kaisched", argv_d, env=repo_env())
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if daemon_cycles(port) >= 3:
                        break
                except OSError:
                    pass
                time.sleep(0.3)
            else:
                print(cluster.logs("kaisched"), flush=True)
                return 1
            say("daemon up, cycling")
            for r in range(args.rounds):
                res = takeback_round(client, pool, r, args.gang_size, args.timeout)
                rounds.append(res)
                say(
                    f"round {r}: all {res['bound']}/{args.gang_size} bound {res['all_s']:.2f}s after creation "
                    f"(first {res['first_s']:.2f}s), {len(res['victims'])} victims"
                )
                time.sleep(max(2.0, 2 * args.schedule_period))  # the cycle line of the binding cycle is logged
                if r + 1 < args.rounds:
                    refill(client, pool, res, r, args.victim_grace)
                    wait_running(client, TB_LOW_NS, n_nodes, 120)
                    time.sleep(2 * args.schedule_period)
            log_text = cluster.log_path("kaisched").read_text(errors="replace")
            logdir = Path(args.log_dir)
            logdir.mkdir(parents=True, exist_ok=True)
            for name in ("kaisched", "kwok", "kube-apiserver"):
                if cluster.log_path(name).exists():
                    shutil.copy(cluster.log_path(name), logdir / f"{name}.log")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    out = [
        "",
        f"=== take-back: {n_nodes} kwok nodes x 8 GPUs, each held by a low-priority ({LOW_CLASS[1]}) 8-GPU pod "
        f"(grace {args.victim_grace}s); a priority-{HIGH_CLASS[1]} gang of {args.gang_size} x 8 GPUs arrives; "
        f"schedule period {args.schedule_period:g}s, QPS/burst {args.qps:g}/{args.burst} ===",
        f"{'round':>5} {'create':>7} {'1st bound':>9} {'all bound':>9} {'victims':>7}  "
        "the deciding cycle: started after creation, then its phases",
    ]
    ok = True
    for r, res in enumerate(rounds):
        c = binding_cycle(log_text, res["wall0"])
        phases = (
            f"+{c['started'] - res['wall0']:.2f}s; snapshot {c['snapshot']:.0f} ms, session {c['allocate']:.0f} ms, "
            f"queue the commit {c['commit']:.0f} ms"
            if c
            else "(no cycle line)"
        )
        out.append(
            f"{r:>5} {res['created_s']:>6.2f}s {res['first_s']:>8.2f}s {res['all_s']:>8.2f}s "
            f"{len(res['victims']):>7}  {phases}"
        )
        ok = ok and res["finished"] and len(res["victims"]) == args.gang_size
    alls = sorted(res["all_s"] for res in rounds)
    if alls:
        out.append(
            f"median creation -> all {args.gang_size} bound: {alls[len(alls) // 2]:.2f}s (KAI-Scheduler: 2.75s; "
            f"target: within 3s); victims exactly {args.gang_size} in every round: "
            + ("yes" if all(len(r["victims"]) == args.gang_size for r in rounds) else "NO")
            + "; the victims' nodes are the gang's: "
            + ("yes" if all(r["victims_on_gang_nodes"] for r in rounds) else "NO")
            + f"; slowest {alls[-1]:.2f}s"
        )
    out.append(f"bench wall time: {time.monotonic() - t_bench:.0f}s; logs in {args.log_dir}")
    print("\n".join(out), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "takeback":
        sys.exit(takeback_main(sys.argv[2:]))
    try:
        sys.exit(main())
    except ApiError as e:
        print(f"API error: {e}", file=sys.stderr)
        sys.exit(2)

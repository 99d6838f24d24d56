"""Start-up to first bind (issue 15): `kaisched run` from process start to its first bind, ours beside a baseline.

Starts a LocalCluster (tests/kubecluster.py) with the CRDs, --nodes Ready nodes (10 zones x 10 racks, as
bench/commit.py's), --running pods already bound (what a busy cluster's relist returns) and, per run, a
namespace of --pending single pods for one scheduler name. Each run spawns one contender's daemon with that
scheduler name (`python -c` running the checkout's scheduler.cli.main, so the interpreter start is counted)
and watches the namespace: the first pod with a node ends the run. Contenders alternate (baseline, ours,
baseline, ours...); every run's pods exist from the start, so every contender lists the same cluster.
Prints, per contender, the median over --repeat runs of, in seconds after the process was spawned: the
'starting:' log line (imports and set-up done), 'cache synced' (every kind listed and applied), the first
cycle's snapshot + allocate time (from its log line), and the first bind (seen by a watch).

    python bench/startup.py [--nodes 1000 --running 5000 --pending 1000 --repeat 3 --baseline main]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from daemon import BindWatcher, bench_setup, create_namespace, create_pods, make_nodes, pod_body  # noqa: E402

from tests.kubecluster import LocalCluster  # noqa: E402

BG_NS = "startup-running"
_STARTING = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO kaisched starting:", re.M)
_SYNCED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO kaisched cache synced", re.M)
_CYCLE = re.compile(r"cycle=1 .*?snapshot_ms=([\d.]+) allocate_ms=([\d.]+)")


def _at(rx: re.Pattern[str], log: str) -> float:
    """The wall time of the first log line `rx` matches (the daemon's text log format), nan if none."""
    m = rx.search(log)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else float("nan")


def running_bodies(n: int, nodes: int) -> list[dict[str, Any]]:
    """Pods created already bound (spec.nodeName set): they need no scheduler, and a relist returns them."""
    out = []
    for i in range(n):
        body = pod_body(BG_NS, f"run-{i:05d}", "default-scheduler", gpu=False)
        body["spec"]["nodeName"] = f"node-{i % nodes:04d}"
        out.append(body)
    return out


def contender_argv(repo: Path, kubeconfig: str, scheduler: str) -> list[str]:
    code = f"import sys; sys.path.insert(0, {str(repo)!r}); from scheduler.cli.main import main; sys.exit(main())"
    return [
        sys.executable, "-c", code, "run",
        "--kubeconfig", kubeconfig,
        "--http-port", "0", "--http-address", "127.0.0.1",
        "--scheduler-name", scheduler,
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000, help="a multiple of 100")
    ap.add_argument("--running", type=int, default=5000)
    ap.add_argument("--pending", type=int, default=1000, help="pending pods per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", default="main", help="a git ref of this repository ('' for none)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kaisched-startup-"))
    contenders: list[tuple[str, Path]] = [("ours", REPO)]
    if args.baseline:
        tar = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline, "scheduler"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=tar, check=True)
        contenders.insert(0, (f"baseline {args.baseline}", work))
    with LocalCluster() as cluster:
        _, client, pool = bench_setup(cluster, 32)
        t = time.monotonic()
        make_nodes(client, pool, 10, 10, args.nodes // 100)
        create_namespace(client, BG_NS)
        create_pods(client, pool, running_bodies(args.running, args.nodes))
        runs = [(r, name, repo) for r in range(args.repeat) for name, repo in contenders]
        for i in range(len(runs)):
            ns = f"startup-{i}"
            create_namespace(client, ns)
            create_pods(client, pool, [pod_body(ns, f"p-{j:04d}", f"kai-{i}", gpu=False) for j in range(args.pending)])
        print(
            f"cluster: {args.nodes} nodes, {args.running} running pods, {len(runs)} x {args.pending} pending "
            f"(one scheduler name each), made in {time.monotonic() - t:.0f}s",
            flush=True,
        )
        results: dict[str, list[tuple[float, ...]]] = {name: [] for name, _ in contenders}
        for i, (r, name, repo) in enumerate(runs):
            watcher = BindWatcher(client, f"startup-{i}", 1)
            watcher.start()
            watcher.ready.wait(30)
            proc_name = f"daemon-{i}"
            t0, wall0 = time.monotonic(), time.time()
            cluster.spawn(proc_name, contender_argv(repo, str(cluster.kubeconfig), f"kai-{i}"))
            ok = watcher.done.wait(60)
            first = min(watcher.bound.values()) - t0 if ok else float("nan")
            deadline = time.monotonic() + 30  # the first cycle's line comes when its binds are done
            while time.monotonic() < deadline and not _CYCLE.search(cluster.log_path(proc_name).read_text()):
                time.sleep(0.2)
            cluster.kill(proc_name)
            log = cluster.log_path(proc_name).read_text(errors="replace")
            started, synced = (_at(rx, log) - wall0 for rx in (_STARTING, _SYNCED))
            c = _CYCLE.search(log)
            decide = (float(c.group(1)) + float(c.group(2))) / 1000 if c else float("nan")
            results[name].append((started, synced, decide, first))
            print(
                f"run {r + 1} {name:<16} 'starting:' {started:5.2f}s  synced {synced:5.2f}s  "
                f"first cycle's snapshot+allocate {decide:5.2f}s  first bind {first:5.2f}s",
                flush=True,
            )
        print(f"median of {args.repeat}, seconds after spawn (synced: not logged before this change)")
        print(f"{'contender':<16} {'starting:':>10} {'synced':>8} {'decide':>8} {'first bind':>11}")
        for name, rows in results.items():
            med = [statistics.median(col) for col in zip(*rows, strict=True)]
            print(f"{name:<16} {med[0]:>9.2f}s {med[1]:>7.2f}s {med[2]:>7.2f}s {med[3]:>10.2f}s")
        pool.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

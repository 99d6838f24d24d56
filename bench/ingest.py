"""Event ingest, side by side (issue 15): pod watch events/s and relist time into the cache, ours and a baseline.

A stand-in API server (this file's `serve` sub-command, its own process) answers a pod LIST (pages of 5,000,
`continue` tokens, as the API server pages) and a pod WATCH with pre-recorded bytes (bench/podstream.py: real
pod objects with managedFields, conditions and container statuses; adds, binds, status-only heartbeats,
graceful deletes, deletes). Each contender is this file's `contender` sub-command run against a checkout's
`scheduler` package: the daemon's own KubeBackend with its pod Reflector over HTTP, i.e. the real watch
decoding (kube/client.py), conversion (kube/convert.py) and cache (cache/cluster_state.py), drained the
way the daemon's cycle drains it. For each cluster size it prints

  relist   time from the reflector's start until a LIST of N pods is in the cache;
  watch    events/s applied into the cache holding those N pods (from the watch's start until its last
           event, a sentinel pod, is in the cache), and the peak RSS of the contender;

and whether ours and the baseline ended with the same cache (pods, nodes, phases, requests). The baseline
is `git archive <ref>` of this repository (default main), extracted to a temporary folder; contenders
alternate, ours last. Before that it prints what each JSON library takes to decode the recorded lines
(json, orjson if installed, msgspec to dicts, msgspec typed as kube/podwire.py does).

    python bench/ingest.py [--sizes 10000,100000] [--stream-pods 4000] [--heartbeats 4] [--baseline main]
                           [--repeat N] [--data DIR]

`python bench/ingest.py daemon` measures the daemon's RSS and cycle time at 5,000 nodes and 50,000 running
pods, without and with the debug API's retained copies (see `daemon_main`).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import podstream  # noqa: E402

PAGE = 5000
LIST_RV = 999
STREAM_FIRST = 10_000_000  # watch-stream pods are named apart from listed ones
SENTINEL = f"{podstream.NAMESPACE}/ingest-sentinel"


# ------------------------------------------------------------------------------------------ the data
def write_data(folder: Path, sizes: list[int], stream_pods: int, heartbeats: int) -> int:
    """List pages per size and one watch stream; returns the number of watch events."""
    biggest = max(sizes)
    for start in range(0, biggest, PAGE):
        items = podstream.running_pods(start, min(PAGE, biggest - start))
        (folder / f"items-{start // PAGE}.jsonl").write_bytes(  # one pod a line: a page of any size is cheap
            b"".join(json.dumps(p, separators=(",", ":")).encode() + b"\n" for p in items)
        )
    sentinel = podstream.new_pod(0, 0, 0)
    sentinel["metadata"]["name"] = SENTINEL.split("/")[1]
    sentinel["metadata"]["resourceVersion"] = str(10**9)
    last = json.dumps({"type": "ADDED", "object": sentinel}, separators=(",", ":")).encode()
    n = 0
    # as the API server sends a watch: chunked transfer encoding, one event (and its newline) a chunk
    with open(folder / "watch.jsonl", "wb") as f, open(folder / "watch.chunked", "wb") as framed:
        for line in [*podstream.watch_lines(stream_pods, heartbeats, first=STREAM_FIRST), last]:
            f.write(line + b"\n")
            framed.write(b"%x\r\n%s\n\r\n" % (len(line) + 1, line))
            n += 1
        # then the API server's answer when the watch fell behind a compaction: relist
        gone = (
            b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","code":410,'
            b'"reason":"Expired","message":"too old resource version"}}'
        )
        framed.write(b"%x\r\n%s\n\r\n" % (len(gone) + 1, gone))
        framed.write(b"0\r\n\r\n")
    return n


# ------------------------------------------------------------------------------------------ the server
def serve_main(argv: list[str]) -> int:
    """GET /s<N>/api/v1/pods: the LIST of the first N pods, paged; with watch=true from the first list's
    resourceVersion, the recorded stream, sent once /s<N>/go was asked for (so the relist and the watch are
    timed apart); the watch after a relist idles."""
    ap = argparse.ArgumentParser(prog="ingest.py serve")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    go: dict[str, threading.Event] = {}
    lists: dict[str, int] = {}  # lists begun per contender
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            prefix, _, rest = url.path.lstrip("/").partition("/")
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            with lock:
                event = go.setdefault(prefix, threading.Event())
            if rest == "go":
                event.set()
                self._send(b"{}")
                return
            if q.get("watch") == "true":
                # the stream goes to a watch from the first list (also one that reconnected because the
                # contender took longer than its read timeout to apply that list); a relist's watch idles
                first = q.get("resourceVersion") == str(LIST_RV)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                if first:
                    event.wait()
                    with open(folder / "watch.chunked", "rb") as f:
                        shutil.copyfileobj(f, self.wfile, 1 << 20)
                else:
                    time.sleep(600)
                self.close_connection = True
                return
            size = int(prefix[1:].split("-")[0])
            page = int(q.get("continue") or 0)
            start = page * PAGE
            nxt = str(page + 1) if start + PAGE < size else ""
            lines = (folder / f"items-{page}.jsonl").read_bytes().splitlines() if start < size else []
            items = b",".join(lines[: size - start])
            with lock:
                lists[prefix] = lists.get(prefix, 0) + (page == 0)
                again = lists[prefix] > 1
            meta = json.dumps({"resourceVersion": str(LIST_RV * 1000 if again else LIST_RV), "continue": nxt})
            meta = meta.encode()
            self._send(b'{"kind":"PodList","apiVersion":"v1","metadata":' + meta + b',"items":[' + items + b"]}")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
    return 0


# ------------------------------------------------------------------------------------------ a contender
def contender_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ingest.py contender")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--debug-copies", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.repo)
    import scheduler
    from scheduler.backends.kubernetes import KubeBackend
    from scheduler.kube.client import KubeClient

    assert Path(scheduler.__file__).resolve().is_relative_to(Path(args.repo).resolve()), scheduler.__file__
    client = KubeClient(args.host, qps=0, burst=1)
    backend = KubeBackend(client, podstream.SCHEDULER)
    backend.reflectors = [r for r in backend.reflectors if r.res.kind == "Pod"]
    # the grouper's owner kinds are not served here (every path answers with pods): not watched
    backend.owner_reflectors = [r for r in getattr(backend, "owner_reflectors", []) if r.res.kind == "Pod"]
    if args.debug_copies:
        backend.raw = {}  # as the daemon with its debug API on: each object is kept for snapshots too
    state = backend.state
    t0, c0 = time.perf_counter(), time.process_time()
    backend.start()
    backend.wait_synced(600)  # as `kaisched run` waits for its first lists
    gc.freeze()  # as `kaisched run` does after them (given to the baseline too)
    while len(state.pods()) < args.size:
        if not backend.drain():
            time.sleep(0.001)
    t1, c1 = time.perf_counter(), time.process_time()
    # the watch ends with the sentinel: timed once it is applied, i.e. when the event after it is asked for
    # (one drain may apply the sentinel, the 410 and the relist that removes it again, when the reflector
    # runs ahead of the cache)
    marks: list[tuple[float, float]] = []
    seen = [False]
    get = backend.events.get_nowait

    def get_marking() -> tuple[str, str, Any]:
        if seen[0] and not marks:
            marks.append((time.perf_counter(), time.process_time()))
        item = get()
        seen[0] = seen[0] or _is_sentinel(item[2])
        return item

    backend.events.get_nowait = get_marking  # type: ignore[method-assign]
    client.request("GET", "/go")
    t2, c2 = time.perf_counter(), time.process_time()
    while not marks:
        if not backend.drain():
            time.sleep(0.001)
    (t3, c3) = marks[0]
    # the stream ends in 410 Gone: the reflector lists again, into a cache that holds every listed pod
    reflector = backend.reflectors[0]
    while reflector.relists < 2 or backend.events.qsize():
        if not backend.drain():
            time.sleep(0.001)
    backend.drain()
    t4, c4 = time.perf_counter(), time.process_time()
    backend.stop_event.set()
    digest = hashlib.sha256()
    for key in sorted(state.pods()):
        p = state.pod(key)
        assert p is not None
        digest.update(repr((key, p.node_name, p.phase, p.deleting, p.request, p.start_time, p.labels)).encode())
    snap = state.snapshot()
    digest.update(repr(sorted(snap.node_used.items())).encode())
    out = {
        "relist_s": t1 - t0,
        "relist_cpu_s": c1 - c0,
        "warm_s": t4 - t3,
        "warm_cpu_s": c4 - c3,
        "watch_s": t3 - t2,
        "events_per_s": args.events / (t3 - t2),
        "events_per_cpu_s": args.events / (c3 - c2),
        "pods": len(state.pods()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cache": digest.hexdigest()[:16],
    }
    print(json.dumps(out), flush=True)
    os._exit(0)  # the reflector's idle watch holds a daemon thread; nothing to clean up


def _is_sentinel(payload: Any) -> bool:
    """The watch's last pod, typed (a PodWire: its key) or a dict (the baseline may decode to dicts)."""
    if isinstance(payload, dict):
        meta = payload.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}" == SENTINEL
    return getattr(payload, "key", None) == SENTINEL


# ------------------------------------------------------------------------------------------ daemon memory
def _node(i: int) -> dict[str, Any]:
    """A kwok-like Ready node: 16 GPUs, zone and rack labels."""
    name = f"node-{i:04d}"
    labels = {
        "kubernetes.io/hostname": name,
        "topology.kubernetes.io/region": "r1",
        "topology.kubernetes.io/zone": f"zone-{i // 1000}",
        "topology.kubernetes.io/rack": f"rack-{i // 20}",
        "type": "kwok",
    }
    alloc = {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "16", "pods": "110"}
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": name, "uid": f"n-{i}", "resourceVersion": str(i + 1), "labels": labels},
        "spec": {},
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [{"type": "InternalIP", "address": f"10.0.{i // 250}.{i % 250}"}],
            "nodeInfo": {"kubeletVersion": "fake", "architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def _podgroup(job: int, min_member: int) -> dict[str, Any]:
    name = f"job-{job:05d}"
    return {
        "kind": "PodGroup",
        "apiVersion": "scheduling.run.ai/v2alpha2",
        "metadata": {"name": name, "namespace": podstream.NAMESPACE, "uid": f"pg-{job}", "resourceVersion": "1"},
        "spec": {"minMember": min_member, "queue": "team-a"},
    }


def _queues() -> list[dict[str, Any]]:
    def queue(name: str, parent: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"resources": {"gpu": {"quota": -1, "limit": -1, "overQuotaWeight": 1}}}
        if parent:
            spec["parentQueue"] = parent
        return {"kind": "Queue", "apiVersion": "scheduling.run.ai/v2", "metadata": {"name": name}, "spec": spec}

    return [queue("research", None), queue("team-a", "research")]


def daemon_child(argv: list[str]) -> int:
    """One daemon's cache and cycles at the given size, in this process: the lists go through the real
    decode (podwire for pods) and the backend's apply, then the daemon's own cycle runs (drain, snapshot,
    session, submit, status to a sink that writes nothing); between cycles `churn` pods end and as many new
    ones start (watch events through the same decode). Prints one JSON line."""
    ap = argparse.ArgumentParser(prog="ingest.py daemon-child")
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--pods", type=int, required=True)
    ap.add_argument("--waiting", type=int, required=True)
    ap.add_argument("--cycles", type=int, required=True)
    ap.add_argument("--churn", type=int, required=True)
    ap.add_argument("--debug", action="store_true")
    ap.add_argument("--history", type=int, default=50)
    ap.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import statistics
    import tracemalloc

    from scheduler.backends.kubernetes import KubeBackend
    from scheduler.daemon.runner import Daemon
    from scheduler.debug.history import CycleHistory
    from scheduler.debug.snapshot import SnapshotRecorder
    from scheduler.framework.config import SchedulerConfig
    from scheduler.framework.cycleinfo import CycleInfo
    from scheduler.kube import podwire
    from scheduler.kube.client import KubeClient, decode_dict
    from scheduler.telemetry.metrics import Metrics

    class NoStatus:
        def write(self, *_: Any, **__: Any) -> None:
            pass

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    if args.tracemalloc:
        tracemalloc.start()
    backend = KubeBackend(KubeClient("http://127.0.0.1:9", qps=0, burst=1), podstream.SCHEDULER)  # never connects
    history = CycleHistory(args.history)
    if args.debug:  # as debugattach.attach wires it, without the gRPC server
        backend.raw = {}
    config = SchedulerConfig()
    daemon = Daemon(backend, NoStatus(), config, Metrics())
    if args.debug:
        recorder = SnapshotRecorder(history, backend.raw or {}, backend.assumed)

        def observe(info: CycleInfo) -> None:
            recorder.observe(info, backend.state.generation)

        daemon.observers.append(observe)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def put_list(kind: str, items: list[dict[str, Any]], last: bool = True) -> None:
        """One page as the reflector queues it (JSON bytes through the real decode), applied at once: the
        bench holds no more of a list than the daemon does."""
        body = dumps({"kind": f"{kind}List", "metadata": {"resourceVersion": "1"}, "items": items})
        items.clear()
        decode = podwire.decode_list if kind == "Pod" else decode_dict
        decoded = decode(body)["items"]
        del body
        for item in decoded:
            if isinstance(item, dict):
                item.setdefault("kind", kind)
        if kind not in backend.listed:
            backend.events.put(("LIST", kind, []))
        backend.events.put(("SYNC" if last else "PAGE", kind, decoded))
        del decoded
        backend.drain()

    rss0 = rss_mb()
    t_gen = c_gen = 0.0  # making the pods' dicts: the bench's, not the daemon's
    t1, c1 = time.perf_counter(), time.process_time()
    put_list("Queue", _queues())
    put_list("Node", [_node(i) for i in range(args.nodes)])
    jobs = args.pods // 8
    put_list("PodGroup", [_podgroup(j, 8) for j in range(jobs + args.waiting)])
    for start in range(0, args.pods, PAGE):
        t, cp = time.perf_counter(), time.process_time()
        page = podstream.running_pods(start, min(PAGE, args.pods - start), pending_every=0, nodes=args.nodes)
        t_gen, c_gen = t_gen + time.perf_counter() - t, c_gen + time.process_time() - cp
        put_list("Pod", page, last=False)
    waiting = []
    for g in range(args.waiting):  # gangs that cannot fit (64 GPUs a pod): tried and explained every cycle
        for m in range(8):
            pod = podstream.new_pod(8 * (jobs + g) + m, jobs + g, 0)
            pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "64"
            waiting.append(pod)
    put_list("Pod", waiting)
    load_s, load_cpu = time.perf_counter() - t1 - t_gen, time.process_time() - c1 - c_gen
    gc.collect()
    gc.freeze()  # as `kaisched run` does after its first lists
    rss_loaded = rss_mb()
    traced_loaded = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    cycles: list[float] = []
    cpu: list[float] = []
    next_pod = args.pods + 8 * args.waiting
    for c in range(args.cycles):
        if c and args.churn:  # `churn` running pods end (deleted) and as many new ones start bound
            lines = []
            for k in range(args.churn):
                gone = podstream.running_pods((c * args.churn + k) % args.pods, 1, 0, args.nodes)[0]
                lines.append(dumps({"type": "DELETED", "object": gone}))
                new = podstream.running_pods(next_pod, 1, 0, args.nodes)[0]
                next_pod += 1
                lines.append(dumps({"type": "ADDED", "object": new}))
            for line in lines:
                ev = podwire.decode_event(line)
                backend.events.put((ev["type"], "Pod", ev["object"]))
        t, cp = time.perf_counter(), time.process_time()
        record = daemon.cycle()
        cycles.append(time.perf_counter() - t)
        cpu.append(time.process_time() - cp)
        assert not record.commits, "the bench cluster places nothing: no binds to a dead API"
    traced = tracemalloc.get_traced_memory() if args.tracemalloc else (0, 0)
    steady = cycles[1:] or cycles
    out = {
        "nodes": args.nodes,
        "pods": len(backend.state.pods()),
        "debug": args.debug,
        "gen_s": t_gen,
        "load_s": load_s,
        "load_cpu_s": load_cpu,
        "first_cycle_s": cycles[0],
        "steady_median_s": statistics.median(steady),
        "steady_max_s": max(steady),
        "steady_cpu_median_s": statistics.median(cpu[1:] or cpu),
        "rss_start_mb": rss0,
        "rss_loaded_mb": rss_loaded,
        "rss_end_mb": rss_mb(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced_loaded_mb": traced_loaded / 2**20,
        "traced_end_mb": traced[0] / 2**20,
        "traced_peak_mb": traced[1] / 2**20,
        "history": len(history.entries()),
        "kept_snapshots": sum(e.snapshot is not None for e in history.entries()),
    }
    print(json.dumps(out), flush=True)
    os._exit(0)


def daemon_main(argv: list[str]) -> int:
    """Peak RSS and cycle time of the daemon at a size (issue 15: 5,000 nodes and 50,000 running pods),
    without and with what the debug API keeps (each object's debug copy, the last --history cycles'
    records, the snapshots of two of them); each run in its own process."""
    ap = argparse.ArgumentParser(prog="ingest.py daemon", description=daemon_main.__doc__)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=50000, help="running pods, in gangs of 8 (a PodGroup each)")
    ap.add_argument("--waiting", type=int, default=50, help="gangs of 8 that cannot fit, waiting every cycle")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--churn", type=int, default=100, help="pods that end and start between cycles")
    ap.add_argument("--history", type=int, default=50, help="cycles the debug API keeps (--debug-history)")
    ap.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations (slower cycles)")
    args = ap.parse_args(argv)
    rows = []
    for debug in (False, True):
        cmd = [sys.executable, __file__, "daemon-child"]
        cmd += ["--nodes", str(args.nodes), "--pods", str(args.pods), "--waiting", str(args.waiting)]
        cmd += ["--cycles", str(args.cycles), "--churn", str(args.churn), "--history", str(args.history)]
        cmd += ["--debug"] * debug + ["--tracemalloc"] * args.tracemalloc
        out = subprocess.run(cmd, check=True, capture_output=True).stdout.splitlines()[-1]
        rows.append(json.loads(out))
    print(
        f"{args.nodes:,} nodes, {args.pods:,} running pods ({args.pods // 8:,} gangs of 8) and {args.waiting} "
        f"waiting gangs; {args.cycles} cycles, {args.churn} pods ending and starting between cycles"
    )
    print(
        f"{'debug API':<22} {'load':>13} {'1st cycle':>9} {'steady':>8} {'(max)':>7} {'CPU':>7} "
        f"{'RSS loaded':>10} {'end':>7} {'peak':>7}" + ("  traced: loaded end peak" if args.tracemalloc else "")
    )
    for r in rows:
        name = f"on (history {args.history})" if r["debug"] else "off (--debug-address none)"
        line = (
            f"{name:<22} {r['load_s']:>6.2f}s ({r['load_cpu_s']:>4.1f}s) {r['first_cycle_s']:>8.3f}s "
            f"{r['steady_median_s']:>7.3f}s {r['steady_max_s']:>6.3f}s {r['steady_cpu_median_s']:>6.3f}s "
            f"{r['rss_loaded_mb']:>8.0f}MB {r['rss_end_mb']:>5.0f}MB {r['peak_rss_mb']:>5.0f}MB"
        )
        if args.tracemalloc:
            line += f"  {r['traced_loaded_mb']:>6.0f} {r['traced_end_mb']:>5.0f} {r['traced_peak_mb']:>5.0f} MB"
        print(line)
    off, on = rows
    print(
        f"the debug API's copies: +{on['rss_loaded_mb'] - off['rss_loaded_mb']:.0f} MB loaded, "
        f"+{on['peak_rss_mb'] - off['peak_rss_mb']:.0f} MB peak after {args.cycles} cycles "
        f"({on['history']} cycles kept, {on['kept_snapshots']} with their snapshot)"
    )
    return 0


# ------------------------------------------------------------------------------------------ the bench
def decode_table(lines: list[bytes]) -> list[str]:
    """Each JSON library on the same recorded lines (best of 3): the choice of msgspec, measured."""
    sys.path.insert(0, str(REPO))
    from scheduler.kube import podwire

    out = []
    libs: list[tuple[str, Any]] = [("json", json.loads)]
    try:
        import orjson

        libs.append(("orjson", orjson.loads))
    except ImportError:
        out.append("orjson: not installed (pip install orjson to compare)")
    import msgspec

    libs += [("msgspec (dicts)", msgspec.json.Decoder().decode), ("msgspec typed (podwire)", podwire.decode_event)]
    base = 0.0
    for name, fn in libs:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for line in lines:
                fn(line)
            best = min(best, time.perf_counter() - t)
        base = base or best
        out.append(f"decode {name:<24} {len(lines) / best:>10,.0f} lines/s  {base / best:5.1f}x json")
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        return serve_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "contender":
        return contender_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "daemon-child":
        return daemon_child(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "daemon":
        return daemon_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="pods in the cluster (the relist)")
    ap.add_argument("--stream-pods", type=int, default=4000, help="pods whose whole lives the watch stream holds")
    ap.add_argument("--heartbeats", type=int, default=4, help="status-only updates per running pod")
    ap.add_argument("--baseline", default="main", help="a git ref of this repository ('' for none)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender and size (the best is shown)")
    ap.add_argument(
        "--debug-copies",
        action="store_true",
        help="keep each object for the debug API's snapshots, as `kaisched run` does unless --debug-address none",
    )
    ap.add_argument("--data", help="keep the recorded stream and lists in this folder and reuse them next time")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="kaisched-ingest-"))
    data = Path(args.data) if args.data else work
    stamp = f"{max(sizes)} {args.stream_pods} {args.heartbeats}\n"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t = time.perf_counter()
        if (data / "stamp").exists() and (data / "stamp").read_text().split("\n")[0] == stamp.strip():
            events = int((data / "stamp").read_text().split("\n")[1])  # recorded by an earlier run: reused
        else:
            data.mkdir(parents=True, exist_ok=True)
            events = write_data(data, sizes, args.stream_pods, args.heartbeats)
            (data / "stamp").write_text(f"{stamp}{events}\n")
        print(
            f"recorded {events:,} watch events ({args.stream_pods:,} pods, {args.heartbeats} heartbeats each) "
            f"and lists up to {max(sizes):,} pods in {time.perf_counter() - t:.1f}s"
        )
        with open(data / "watch.jsonl", "rb") as f:
            lines = [line.rstrip(b"\n") for _, line in zip(range(20000), f, strict=False)]
        print(f"average event {sum(map(len, lines)) / len(lines):,.0f} bytes")
        for row in decode_table(lines):
            print(row)
        del lines
        contenders = [("ours", REPO)]
        if args.baseline:
            base = work / "baseline"
            base.mkdir()
            tar = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.baseline, "scheduler"], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=tar, check=True)
            contenders.insert(0, (f"baseline {args.baseline}", base))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", "--dir", str(data), "--port", str(port)], stdout=subprocess.PIPE
        )
        procs.append(server)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        results: dict[tuple[str, int], dict[str, Any]] = {}
        run = 0
        for size in sizes:
            for _ in range(max(1, args.repeat)):
                for name, repo in contenders:
                    run += 1
                    cmd = [
                        sys.executable,
                        __file__,
                        "contender",
                        "--repo",
                        str(repo),
                        "--host",
                        f"http://127.0.0.1:{port}/s{size}-{run}",
                        "--size",
                        str(size),
                        "--events",
                        str(events),
                        *(["--debug-copies"] if args.debug_copies else []),
                    ]
                    res = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout.splitlines()[-1])
                    best = results.get((name, size))
                    if best is None or res["watch_s"] + res["relist_s"] < best["watch_s"] + best["relist_s"]:
                        results[(name, size)] = res
        print("relist: into an empty cache (start-up), and again after the watch's 410 Gone (every pod cached);")
        print("wall (CPU) seconds. watch: events/s by wall clock, and per CPU second of the contender.")
        print("ratio: baseline's time / ours, our rate / the baseline's")
        print(
            f"{'contender':<16} {'pods':>8} {'relist':>15} {'relist again':>15} {'events/s':>9} "
            f"{'per CPU s':>10} {'peakMB':>7}  cache"
        )
        for size in sizes:
            for name, _ in contenders:
                r = results[(name, size)]
                print(
                    f"{name:<16} {size:>8,} {r['relist_s']:>6.2f}s ({r['relist_cpu_s']:>5.2f}s) "
                    f"{r['warm_s']:>6.2f}s ({r['warm_cpu_s']:>5.2f}s) "
                    f"{r['events_per_s']:>9,.0f} {r['events_per_cpu_s']:>10,.0f} {r['peak_rss_mb']:>7.0f}  {r['cache']}"
                )
            if len(contenders) == 2:
                b, o = results[(contenders[0][0], size)], results[(contenders[1][0], size)]
                same = "same cache" if b["cache"] == o["cache"] else "CACHES DIFFER"

                def x(key: str, b: dict[str, Any] = b, o: dict[str, Any] = o) -> float:
                    return float(b[key] / o[key])

                print(
                    f"{'ratio':<16} {size:>8,} {x('relist_s'):>6.1f}x ({x('relist_cpu_s'):>4.1f}x) "
                    f"{x('warm_s'):>6.1f}x ({x('warm_cpu_s'):>4.1f}x) "
                    f"{1 / x('events_per_s'):>8.1f}x {1 / x('events_per_cpu_s'):>9.1f}x {'':>7}  {same}"
                )
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())

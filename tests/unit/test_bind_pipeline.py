"""The bind pipeline (binder/pipeline.py): highest gang priority first, never a gang twice, and a stop that
starts nothing queued. Real worker threads; each test gates the runner with events, so the order of work is
decided by the pipeline, not by timing."""

from __future__ import annotations

import threading
from typing import Any

from scheduler.binder.pipeline import BindPipeline


def _pending_member(name: str, priority: int = 0) -> dict[str, Any]:
    """A pending pod of PodGroup ns/g (its uid is its name), as the API server sends it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": name, "annotations": {"pod-group-name": "g"}},
        "spec": {"schedulerName": "kai-scheduler", "priority": priority, "containers": [{"name": "c"}]},
        "status": {"phase": "Pending"},
    }


WAIT_S = 30.0  # a generous bound on a hang; never part of what is asserted


class Gate:
    """A runner that holds the first commit until released and records the order commits ran in."""

    def __init__(self, expect: int) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.all_done = threading.Event()
        self.order: list[str] = []
        self.expect = expect

    def __call__(self, job: str) -> str:
        self.order.append(job)
        self.started.set()
        assert self.release.wait(WAIT_S)
        if len(self.order) == self.expect:
            self.all_done.set()
        return f"done {job}"


def test_a_high_priority_gang_decided_later_runs_before_the_low_priority_backlog() -> None:
    gate = Gate(expect=4)
    p: BindPipeline[str, str] = BindPipeline(gate, in_flight=1)
    assert p.submit("low-0", "low-0", 0)
    assert gate.started.wait(WAIT_S)  # low-0 holds the only worker
    for job, prio in (("low-1", 0), ("low-2", 0), ("high", 1000)):
        assert p.submit(job, job, prio)
    gate.release.set()
    assert gate.all_done.wait(WAIT_S)
    assert gate.order == ["low-0", "high", "low-1", "low-2"]


def test_a_gang_in_the_pipeline_is_not_queued_twice_and_is_free_again_once_taken() -> None:
    gate = Gate(expect=1)
    p: BindPipeline[str, str] = BindPipeline(gate, in_flight=2)
    assert p.submit("g", "g", 0)
    assert gate.started.wait(WAIT_S)
    assert not p.submit("g", "g-again", 0)  # running: its placement is the one in flight
    assert p.busy() == {"g"}
    gate.release.set()
    assert gate.all_done.wait(WAIT_S)
    taken: list[tuple[str, str]] = []
    while not taken:  # the result lands right after the runner returns
        taken = p.take()
    assert taken == [("g", "done g")]
    assert p.busy() == frozenset()
    assert p.submit("g", "g", 0)
    p.abandon()


def test_abandon_starts_nothing_queued_and_returns_it() -> None:
    gate = Gate(expect=1)
    p: BindPipeline[str, str] = BindPipeline(gate, in_flight=1)
    assert p.submit("running", "running", 0)
    assert gate.started.wait(WAIT_S)
    p.submit("low", "low", 0)
    p.submit("high", "high", 5)
    assert p.abandon() == ["high", "low"]  # highest priority first
    assert p.busy() == {"running"}  # a commit already under way finishes on its own
    assert not p.submit("late", "late", 0)
    gate.release.set()
    assert gate.all_done.wait(WAIT_S)
    assert gate.order == ["running"]


def test_a_gang_commits_requests_wait_for_tokens_in_its_priority_line() -> None:
    """Every request of one gang's commit (its record, its binds on the committer's bind threads) reaches
    the rate limiter with the gang's priority: the highest of its pods'."""

    from scheduler.binder.commit import GangCommitter
    from scheduler.cache.cluster_state import ClusterState
    from scheduler.framework.record import GangCommit
    from scheduler.kube.client import KubeClient, TokenBucket, request_priority

    class Recording(TokenBucket):
        def __init__(self) -> None:
            super().__init__(qps=0, burst=1)
            self.seen: list[int | None] = []
            self.lock = threading.Lock()

        def take(self, priority: int | None = None) -> None:
            with self.lock:
                self.seen.append(priority)

    state = ClusterState()
    for name, priority in (("a", 10), ("b", 500), ("c", 10)):
        state.apply_object(_pending_member(name, priority))
    client = KubeClient("http://127.0.0.1:9", qps=0)  # nothing listens: every request fails, after the limiter
    bucket = client.bucket = Recording()
    committer = GangCommitter(client, state, "me", parallelism=4)
    c = GangCommit("ns/g", True, binds=(("ns/a", "n1"), ("ns/b", "n1"), ("ns/c", "n2")))
    assert committer.gang_priority(c) == 500
    assert committer.commit_gang(c).error
    # the anchor's bind (it carries the record), then the read of it (whether it landed): nothing else
    assert bucket.seen == [500, 500]
    bucket.seen.clear()
    lone = GangCommit("ns/b", False, binds=(("ns/b", "n1"),))  # no record: its bind is the first request
    assert committer.commit_gang(lone).error
    assert bucket.seen == [500]  # made on the committing thread itself
    bucket.seen.clear()
    with request_priority(7):  # calls beside the last are made on the committer's bind threads: they inherit it
        assert len(committer._run([("ns/g", "ns/a", "n1", False), ("ns/g", "ns/c", "n2", False)])) == 2
    assert bucket.seen == [7, 7]
    bucket.seen.clear()
    assert committer._run([("ns/g", "ns/a", "n1", False)]) and bucket.seen == [None]  # outside a commit: no gang
    committer.close()


def test_binds_in_flight_never_exceed_the_parallelism_whichever_thread_makes_them() -> None:
    """A gang's binds are made on its committing thread and on bind threads; `parallelism` commits of 4 would
    send up to twice `parallelism` binds at once without the committer's slots. A real HTTP server counts the
    binds it holds at once."""
    import json
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from scheduler.binder.commit import GangCommitter
    from scheduler.cache.cluster_state import ClusterState
    from scheduler.framework.record import GangCommit
    from scheduler.kube.client import KubeClient

    lock = threading.Lock()
    now = [0, 0]  # in flight, most at once

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                now[0] += 1
                now[1] = max(now)
            time.sleep(0.05)
            with lock:
                now[0] -= 1
            body = json.dumps({"kind": "Status", "status": "Success"}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    state = ClusterState()
    gangs = []
    for g in range(3):
        names = [f"g{g}-{i}" for i in range(4)]
        for name in names:
            state.apply_object(_pending_member(name))
        gangs.append(GangCommit(f"ns/g{g}", True, binds=tuple((f"ns/{n}", "n1") for n in names)))
    client = KubeClient(f"http://127.0.0.1:{server.server_address[1]}", qps=0, pool_size=32)
    committer = GangCommitter(client, state, "me", parallelism=3)
    try:
        out = committer.commit(gangs)
        assert not out.errors and len(out.bound) == 3
        assert now[1] == 3, now  # three gangs in flight at once, never more than three binds
    finally:
        committer.close()
        server.shutdown()

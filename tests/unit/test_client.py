import contextlib
import time

from scheduler.kube import client as kclient
from scheduler.kube.client import KubeClient, TokenBucket


def test_service_account_token_is_reread(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("first")
    c = KubeClient("https://127.0.0.1:1", headers={"Authorization": "Bearer first"}, token_file=str(token))
    assert c._auth_headers()["Authorization"] == "Bearer first"
    token.write_text("second\n")
    monkeypatch.setattr(kclient, "TOKEN_REFRESH_S", 0.0)
    time.sleep(0.01)
    assert c._auth_headers()["Authorization"] == "Bearer second"


def test_token_bucket_paces_after_the_burst():
    b = TokenBucket(qps=50, burst=5)
    start = time.monotonic()
    for _ in range(10):
        b.take()
    # a lower bound only (a slow machine can only make it longer): 5 beyond the burst at 50/s need 0.1 s
    assert time.monotonic() - start >= 0.09


def test_run_takes_the_bind_parallelism_and_sizes_the_pool_from_it():
    from scheduler.backends.kubernetes import BIND_PARALLELISM
    from scheduler.cli.main import _parser

    args = _parser("run").parse_args(["run"])
    assert args.bind_parallelism == BIND_PARALLELISM == 128
    args = _parser("run").parse_args(["run", "--bind-parallelism", "8"])
    assert args.bind_parallelism == 8
    from scheduler.daemon.runner import CYCLE_POD_BUDGET

    assert _parser("run").parse_args(["run"]).cycle_pod_budget == CYCLE_POD_BUDGET == 500
    assert _parser("run").parse_args(["run", "--cycle-pod-budget", "0"]).cycle_pod_budget == 0  # no limit
    client = KubeClient("http://127.0.0.1:9", pool_size=2 * 8 + 64)
    assert client.pool.connection_pool_kw["maxsize"] == 80


def _chunked(payload: list[bytes], ext: bool = False) -> bytes:
    out = b""
    for part in payload:
        size = b"%x" % len(part) + (b";name=value" if ext else b"")
        out += size + b"\r\n" + part + b"\r\n"
    return out + b"0\r\n\r\n"


def _reads(data: bytes, sizes: list[int]):
    """`read` returning `data` in pieces of the given sizes (cycled), then b""."""
    pieces, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        pieces.append(data[i : i + n])
        i, k = i + n, k + 1
    it = iter(pieces)
    return lambda: next(it, b"")


def test_dechunk_takes_the_framing_off_wherever_the_reads_split_it():
    import random

    rng = random.Random(7)
    events = [
        (b'{"type":"MODIFIED","object":{"n":%d,"pad":"%s"}}\n' % (i, b"x" * rng.randrange(0, 9000))) for i in range(60)
    ]
    # an event a chunk (as the API server writes a watch), and events split across chunks
    framings = [events, [b"".join(events)[i : i + 700] for i in range(0, len(b"".join(events)), 700)]]
    for payload in framings:
        for ext in (False, True):
            data = _chunked(payload, ext)
            for sizes in ([1], [2, 3], [7, 4096], [65536], [len(data)], [rng.randrange(1, 20000) for _ in range(50)]):
                got = b"".join(kclient.dechunk(_reads(data, sizes)))
                assert got == b"".join(events), (ext, sizes[:3])
                lines = list(kclient.split_lines(kclient.dechunk(_reads(data, sizes)), kclient.decode_dict))
                assert [ev["object"]["n"] for ev in lines] == list(range(60))


def test_dechunk_ends_at_the_last_chunk_or_when_the_connection_closes_and_refuses_a_broken_frame():
    import pytest

    data = _chunked([b"a\n", b"b\n"]) + b"trailer: x\r\n\r\nGARBAGE"
    assert b"".join(kclient.dechunk(_reads(data, [3]))) == b"a\nb\n"  # nothing after the last chunk is read
    cut = _chunked([b"abc\n", b"defgh"])[:-9]  # the connection closed inside the second chunk
    assert b"".join(kclient.dechunk(_reads(cut, [4]))) == b"abc\ndef"
    with pytest.raises(kclient.ChunkedError):
        list(kclient.dechunk(_reads(b"3\r\nabcXY0\r\n\r\n", [64])))  # no CRLF after the data
    with pytest.raises(kclient.ChunkedError):
        list(kclient.dechunk(_reads(b"zz\r\nabc\r\n", [64])))


def _in_line(b: TokenBucket, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(b._line) < n and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(b._line) == n


def test_token_bucket_serves_its_line_by_priority_then_arrival():
    """Requests of no gang first, then by gang priority, first come first served within one."""
    import threading

    b = TokenBucket(qps=20, burst=1)
    b.take()
    b.tokens = -20.0  # in debt for a second: everyone below is in line before the first token
    order: list[str] = []

    def wait(name: str, priority: int | None) -> None:
        b.take(priority)
        order.append(name)

    threads = []
    for i, (name, priority) in enumerate([("low0", 10), ("low1", 10), ("high", 1000), ("low2", 10), ("lease", None)]):
        t = threading.Thread(target=wait, args=(name, priority))
        t.start()
        threads.append(t)
        _in_line(b, i + 1)
    for t in threads:
        t.join(10)
    assert order == ["lease", "high", "low0", "low1", "low2"]


def test_request_priority_reaches_the_limiter_from_worker_threads():
    from concurrent.futures import ThreadPoolExecutor

    class Recording(TokenBucket):
        def __init__(self) -> None:
            super().__init__(qps=0, burst=1)
            self.seen: list[int | None] = []

        def take(self, priority: int | None = None) -> None:
            self.seen.append(priority)

    client = KubeClient("http://127.0.0.1:9", qps=0)
    bucket = client.bucket = Recording()

    def call() -> None:
        with contextlib.suppress(Exception):  # nothing listens there: only the limiter's view matters
            client.request("GET", "/api/v1/nodes", timeout=1.0)

    call()
    with kclient.request_priority(125), ThreadPoolExecutor(2) as pool:
        pool.submit(kclient.inherit(call)).result()
        pool.submit(call).result()  # a worker thread without `inherit`: no gang
    call()
    assert bucket.seen == [None, 125, None, None]


def test_owner_kinds_are_listed_and_probed_on_the_groupers_client():
    """The workloads' owner kinds (17 of them, mostly CRDs a cluster does not have, probed every 10 s) are
    the grouper's data: their requests take the grouper's tokens, never the binder's."""
    from scheduler.backends.kubernetes import KubeBackend

    binds, grouper = KubeClient("http://127.0.0.1:9"), KubeClient("http://127.0.0.1:9")
    b = KubeBackend(binds, "kai-scheduler")
    b.grouper.client = grouper  # as `kaisched run` sets it
    b.stop_event.set()  # the reflectors end at once: only who they would ask is checked
    b.start()
    assert b.owner_reflectors and all(r.client is grouper for r in b.owner_reflectors)
    assert all(r.client is binds for r in b.reflectors)
    b.stop()


def test_a_waiter_interrupted_in_line_leaves_it():
    """A request interrupted while it waits for a token (a signal, a shutdown) must not stay at the head of
    the line: everyone behind it would wait forever."""
    import signal
    import threading

    import pytest

    b = TokenBucket(qps=20, burst=1)
    b.take()
    b.tokens = -2.0  # in debt: the next token is 150 ms away
    behind: list[str] = []
    t = threading.Thread(target=lambda: (b.take(10), behind.append("served")))
    t.start()
    _in_line(b, 1)

    def interrupt(*_: object) -> None:
        raise TimeoutError("interrupted")

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(TimeoutError):
            b.take()  # a request of no gang: ahead of the waiting thread, then interrupted
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    t.join(10)
    assert behind == ["served"] and b._line == []


def test_a_negative_cycle_pod_budget_is_refused_before_anything_starts():
    import logging

    import pytest

    from scheduler.cli.main import _parser
    from scheduler.cli.run import run

    args = _parser("run").parse_args(["run", "--kubeconfig", "/nonexistent", "--cycle-pod-budget", "-1"])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # run() configures logging for the process
    try:
        with pytest.raises(SystemExit, match="--cycle-pod-budget must be 0"):
            run(args)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

"""A small raw-JSON REST client for the Kubernetes API.

The official client loads the configuration (kubeconfig or in-cluster) and nothing else: its typed models
cost seconds per 10,000 pods to decode, and it cannot parse the Status that `pods/binding` returns. QPS
and burst are explicit (a token bucket), because the default limits, not the scheduler, usually cap
published scheduler throughput.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import msgspec
import urllib3

if TYPE_CHECKING:
    from scheduler.kube.fence import Fence

TOKEN_REFRESH_S = 60.0
T = TypeVar("T")


# msgspec parses the API server's JSON several times faster than the json module (bench/ingest.py measures
# json, orjson and msgspec); decoding to dicts here, and to typed pods in kube/podwire.py.
decode_json: Callable[[bytes], Any] = msgspec.json.Decoder().decode


def decode_dict(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = decode_json(data)
    return out


def split_lines(chunks: Iterable[bytes], decode: Callable[[bytes], Any]) -> Iterator[Any]:
    """Decode newline-delimited JSON (a watch stream) as it arrives: whole lines of each chunk at once,
    the partial tail carried to the next chunk (and dropped if the stream ends inside a line)."""
    tail = b""
    for chunk in chunks:
        if b"\n" not in chunk:
            tail += chunk
            continue
        lines = chunk.split(b"\n")
        if tail:
            lines[0] = tail + lines[0]
        tail = lines.pop()
        for line in lines:
            if line and not line.isspace():
                yield decode(line)


class ChunkedError(ValueError):
    """A chunked body that breaks the framing (RFC 9112 section 7.1)."""


def dechunk(read: Callable[[], bytes]) -> Iterator[bytes]:
    """The payload of an HTTP/1.1 chunked body, a block per read: `read` returns what the connection has
    (b"" at its end) and the framing of every chunk in it is taken off in one pass. A watch sends an event
    a chunk; urllib3 handles each chunk with a few calls of its own (bench/ingest.py: 7 us an event here,
    this 4). Ends after the last (zero-size) chunk; a connection that closes first ends it too (the
    caller's reader drops a partial line, as before)."""
    buf = b""
    pos = 0  # where the next chunk-size line (or the rest of a chunk's data) starts in buf
    left = 0  # data bytes of the current chunk not yet delivered; -1: its closing CRLF is due
    while True:
        view = memoryview(buf)
        out: list[memoryview] = []
        while True:
            if left > 0:
                take = view[pos : pos + left]
                if not take:
                    break
                out.append(take)
                pos += len(take)
                left -= len(take)
                if left:
                    break
                left = -1
            if left == -1:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ChunkedError("chunk data not followed by CRLF")
                pos += 2
                left = 0
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > 4096:
                    raise ChunkedError("chunk-size line longer than 4 KiB")
                break
            line = buf[pos:end]
            try:
                size = int(line, 16)
            except ValueError:  # a chunk extension (";name=value"), or not a size at all
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ChunkedError(f"bad chunk-size line {line[:40]!r}") from None
            if size < 0:
                raise ChunkedError("negative chunk size")
            pos = end + 2
            if size == 0:  # the last chunk (trailers, if any, are not read)
                if out:
                    yield b"".join(out)
                return
            left = size
        if out:
            yield b"".join(out)
        del view, out  # buf is replaced below: no view may hold it
        buf = buf[pos:]
        pos = 0
        more = read()
        if not more:
            return
        buf = buf + more if buf else more


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: Mapping[str, Any] | None = None) -> None:
        message = str((body or {}).get("message") or reason)
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.reason = str((body or {}).get("reason") or reason)
        self.message = message
        self.body = body or {}


_context = threading.local()


@contextlib.contextmanager
def request_priority(priority: int) -> Iterator[None]:
    """Requests this thread makes inside the block wait for the rate limiter by `priority` (a gang's
    commit: its binds, record and evictions), behind requests made outside any block (lists, watches, the
    lease, status), which go first: a high-priority gang's commit is not queued behind a low-priority
    backlog's binds for tokens. `inherit` carries the priority to a worker thread."""
    before = getattr(_context, "priority", None)
    _context.priority = priority
    try:
        yield
    finally:
        _context.priority = before


def current_priority() -> int | None:
    return getattr(_context, "priority", None)


def inherit(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn`, run on another thread with this thread's request priority."""
    priority = current_priority()
    if priority is None:
        return fn

    def run(*args: Any, **kwargs: Any) -> T:
        with request_priority(priority):
            return fn(*args, **kwargs)

    return run


@dataclass(order=True, slots=True)
class _Waiter:
    rank: tuple[int, int, int]  # (0 for a request of no gang, else 1; -priority; arrival): the heap's head first
    woken: threading.Event = field(compare=False, default_factory=threading.Event)


class TokenBucket:
    """qps tokens a second, at most `burst` saved. Waiters take tokens in rank order (`request_priority`),
    first come first served within a rank; only the head of the line watches the clock, the others sleep
    until they become the head (one wake-up per token, not one per waiter)."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.capacity = max(1, burst)
        self.tokens = float(self.capacity)
        self.updated = time.monotonic()
        self.lock = threading.Lock()
        self._line: list[_Waiter] = []
        self._arrivals = 0

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.qps)
        self.updated = now

    def take(self, priority: int | None = None) -> None:
        if self.qps <= 0:
            return
        with self.lock:
            self._refill()
            if not self._line and self.tokens >= 1:
                self.tokens -= 1
                return
            self._arrivals += 1
            me = _Waiter((0, 0, self._arrivals) if priority is None else (1, -priority, self._arrivals))
            heapq.heappush(self._line, me)
        served = False
        try:
            while True:
                with self.lock:
                    self._refill()
                    wait: float | None = None
                    if self._line[0] is me:
                        if self.tokens >= 1:
                            self.tokens -= 1
                            heapq.heappop(self._line)
                            served = True
                            if self._line:
                                self._line[0].woken.set()  # the next in line watches the clock now
                            return
                        wait = (1 - self.tokens) / self.qps
                    me.woken.clear()  # set by the waiter before it in line as it leaves with its token
                me.woken.wait(wait)  # the head: until its token is due (one who comes in ahead watches its own)
        finally:
            if not served:  # left the line without a token (interrupted): never block those behind
                with self.lock:
                    self._line.remove(me)
                    heapq.heapify(self._line)
                    if self._line:
                        self._line[0].woken.set()


class KubeClient:
    def __init__(
        self,
        host: str,
        *,
        headers: Mapping[str, str] | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        verify: bool = True,
        qps: float = 200.0,
        burst: int = 400,
        pool_size: int = 64,
        token_file: str | None = None,
    ) -> None:
        self.token_file = token_file
        self._token_read = time.monotonic()
        self.host = host.rstrip("/")
        self.headers = {"Accept": "application/json", **(headers or {})}
        kwargs: dict[str, Any] = {"maxsize": pool_size, "block": False, "retries": False}
        if self.host.startswith("https"):
            kwargs.update(
                cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
                ca_certs=ca_file,
                cert_file=cert_file,
                key_file=key_file,
            )
        self.pool = urllib3.PoolManager(**kwargs)
        self.bucket = TokenBucket(qps, burst)
        self.fence: Fence | None = None  # set under leader election: writes need the lease

    @staticmethod
    def from_kubeconfig(path: str | None, qps: float = 200.0, burst: int = 400, pool_size: int = 64) -> KubeClient:
        """Kubeconfig at `path`; else in-cluster; else ~/.kube/config (the usual order). The common cases
        are read by kube/kubeconfig.py; the rest (exec plugins...) by the official client."""
        from scheduler.kube import kubeconfig

        conn = kubeconfig.load(path) or kubeconfig.official(path)
        return KubeClient(
            conn.host,
            headers=conn.headers,
            ca_file=conn.ca_file,
            cert_file=conn.cert_file,
            key_file=conn.key_file,
            verify=conn.verify,
            qps=qps,
            burst=burst,
            pool_size=pool_size,
            token_file=conn.token_file,
        )

    def _auth_headers(self) -> dict[str, str]:
        """Projected service-account tokens rotate: re-read the file now and then, as client-go does."""
        if self.token_file is not None and time.monotonic() - self._token_read > TOKEN_REFRESH_S:
            try:
                token = open(self.token_file).read().strip()  # noqa: SIM115 - tiny file, read whole
                self.headers["Authorization"] = f"Bearer {token}"
            except OSError:
                pass  # keep the last token; the API server will say if it expired
            self._token_read = time.monotonic()
        return dict(self.headers)

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        return f"{self.host}{path}" + (f"?{query}" if query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        fenced: bool = True,
        decode: Callable[[bytes], dict[str, Any]] = decode_dict,
    ) -> dict[str, Any]:
        """One API call. Writes are fenced (`self.fence`, set under leader election): checked after the
        rate limiter's wait, right before sending, so a write never leaves a replica that may have lost its
        lease. Only the lease's own renewal passes `fenced=False`. `decode` parses a successful answer
        (kube/podwire.py's for pod lists). The rate limiter's line is kept by `request_priority`."""
        self.bucket.take(current_priority())
        if fenced and method != "GET" and self.fence is not None:
            self.fence.check(f"{method} {path}")
        headers = self._auth_headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        resp = self.pool.request(
            method, self._url(path, params), body=data, headers=headers, timeout=timeout, preload_content=True
        )
        payload: dict[str, Any] = {}
        if resp.data:
            try:
                payload = decode(resp.data) if resp.status < 400 else decode_dict(resp.data)
            except ValueError:  # msgspec.DecodeError is one
                payload = {"message": resp.data[:500].decode(errors="replace")}
        if resp.status >= 400:
            raise ApiError(resp.status, resp.reason or "", payload)
        return payload

    def watch(
        self,
        path: str,
        params: Mapping[str, Any],
        timeout: float,
        decode: Callable[[bytes], dict[str, Any]] = decode_dict,
    ) -> Iterator[dict[str, Any]]:
        """Stream watch events (dicts with type and object; `decode` makes each from its line) until the
        server ends the watch."""
        self.bucket.take()
        resp = self.pool.request(
            "GET",
            self._url(path, {**params, "watch": "true"}),
            headers=self._auth_headers(),
            timeout=urllib3.Timeout(connect=10.0, read=timeout),
            preload_content=False,
        )
        try:
            if resp.status >= 400:
                body = resp.read()
                try:
                    payload = decode_dict(body)
                except ValueError:  # msgspec.DecodeError is one
                    payload = {}
                raise ApiError(resp.status, resp.reason or "", payload)
            fp: Any = getattr(getattr(resp, "_fp", None), "fp", None)  # http.client's buffered socket file
            if resp.chunked and hasattr(fp, "read1"):
                # the body is read past http.client's own chunk state: the connection is not reused
                raw_read: Callable[[int], bytes] = fp.read1
                try:
                    yield from split_lines(dechunk(lambda: raw_read(65536)), decode)
                finally:
                    resp.close()
                return
            yield from split_lines(resp.stream(65536), decode)
        finally:
            resp.release_conn()

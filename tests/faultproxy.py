"""A fault-injecting HTTP proxy on loopback, between the scheduler and the kube-apiserver.

The scheduler talks plain HTTP to the proxy; the proxy forwards to the API server over TLS, streaming
watch responses through. Rules, changed at run time by the test, make chosen requests fail: answer with a
status, wait first, or cut the connection without an answer.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import urllib3


@dataclass(slots=True)
class Rule:
    method: str
    path: str  # regex matched against the path (with query)
    action: str  # "status" | "delay" | "drop"
    status: int = 500
    delay: float = 0.0
    nth: tuple[int, ...] = ()  # 1-based matches to act on; empty = every match
    seen: int = 0
    fired: int = 0
    hold: threading.Event | None = None  # wait for this event (at most `delay` s, or 60) before the action
    agent: str = ""  # only requests whose User-Agent contains this (one replica of several)

    def matches(self, method: str, path: str, agent: str = "") -> bool:
        if method != self.method or not re.search(self.path, path) or self.agent not in agent:
            return False
        self.seen += 1
        if self.nth and self.seen not in self.nth:
            return False
        self.fired += 1
        return True


@dataclass(slots=True)
class FaultProxy:
    upstream: str
    ca_file: str
    rules: list[Rule] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # every request as it arrives: (monotonic time, method, path, user agent), before any rule acts
    received: list[tuple[float, str, str, str]] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            for r in self.rules:
                if r.hold is not None:
                    r.hold.set()
            self.rules.clear()

    def _match(self, method: str, path: str, agent: str = "") -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path, agent):
                    return rule
        return None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FaultProxy:
        pool = urllib3.PoolManager(maxsize=64, cert_reqs="CERT_REQUIRED", ca_certs=self.ca_file, retries=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                method, path = self.command, self.path
                proxy.received.append((time.monotonic(), method, path, self.headers.get("User-Agent") or ""))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None  # always: the connection is reused
                rule = proxy._match(method, path, self.headers.get("User-Agent") or "")
                if rule is not None:
                    if rule.hold is not None:  # hold the request until the test lets it go, then act
                        rule.hold.wait(rule.delay or 60)
                    elif rule.action == "delay":
                        time.sleep(rule.delay)
                    if rule.action == "drop":
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        proxy.log.append((method, path, -1))
                        return
                    elif rule.action == "status":
                        body = (
                            f'{{"kind":"Status","apiVersion":"v1","status":"Failure","code":{rule.status},'
                            f'"reason":"Injected","message":"fault injected by test proxy"}}'
                        ).encode()
                        self.send_response(rule.status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        if rule.status == 429:
                            self.send_header("Retry-After", "1")
                        self.end_headers()
                        self.wfile.write(body)
                        proxy.log.append((method, path, rule.status))
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                watch = "watch=true" in path
                try:
                    resp = pool.request(
                        method,
                        proxy.upstream + path,
                        body=body,
                        headers=headers,
                        preload_content=False,
                        timeout=urllib3.Timeout(connect=5, read=None if watch else 60),
                    )
                except Exception:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.send_error(502)
                    return
                proxy.log.append((method, path, resp.status))
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in resp.stream(65536):
                        if chunk:
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (OSError, ssl.SSLError, urllib3.exceptions.HTTPError):
                    self.close_connection = True
                finally:
                    resp.release_conn()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                return

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # as an API server's listen backlog: a gang's binds open connections at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="faultproxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def kubeconfig(self, token: str, path: Path) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n"
            f"    server: {self.url}\nusers:\n- name: admin\n  user:\n    token: {token}\n"
            "contexts:\n- name: proxy\n  context: {cluster: proxy, user: admin}\ncurrent-context: proxy\n"
        )
        return path

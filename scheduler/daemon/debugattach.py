"""Wiring the debug API and telemetry into `kaisched run`: flags, the cycle observers, start and stop."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scheduler.backends.kubernetes import KubeBackend
from scheduler.daemon.runner import Daemon
from scheduler.debug.history import CycleHistory
from scheduler.debug.server import ServerOptions, start_server
from scheduler.debug.snapshot import SnapshotRecorder
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycleinfo import CycleInfo
from scheduler.telemetry.metrics import Metrics
from scheduler.telemetry.otel import Telemetry

log = logging.getLogger("kaisched.debug")
DEFAULT_PORT = 8790
TOKEN_ENV = "KAISCHED_DEBUG_TOKEN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("debug API (gRPC kai.scheduler.debug.v1; `kaisched ctl` talks to it)")
    g.add_argument("--debug-address", default="127.0.0.1", help="listen address; 'none' turns the API off")
    g.add_argument("--debug-port", type=int, default=DEFAULT_PORT, help="0: any free port (logged)")
    g.add_argument("--debug-history", type=int, default=50, help="cycles kept for explain and ListCycles")
    g.add_argument("--debug-token-file", default=None, help=f"bearer token clients must send (or ${TOKEN_ENV})")
    g.add_argument("--debug-tls-cert", default=None, help="PEM certificate: serve TLS")
    g.add_argument("--debug-tls-key", default=None, help="PEM private key of --debug-tls-cert")
    g.add_argument("--debug-tls-client-ca", default=None, help="PEM CA: require client certificates it signed")


def _read(path: str | None) -> bytes:
    return Path(path).read_bytes() if path else b""


def _stop_all(stops: list[Callable[[], Any]]) -> None:
    for stop in reversed(stops):
        try:
            stop()
        except Exception:
            log.exception("stopping the debug API or telemetry failed")


def attach(
    args: argparse.Namespace, daemon: Daemon, backend: KubeBackend, config: SchedulerConfig, metrics: Metrics
) -> Callable[[], None]:
    """Add the observers and start the server; returns the function that stops them. Raises ValueError for
    bad options (the caller exits); a port that cannot be bound only disables the API, with an error logged."""
    telemetry = Telemetry.from_env(metrics)
    daemon.observers.append(telemetry.observe)
    stops: list[Callable[[], Any]] = [telemetry.shutdown]
    if str(args.debug_address).lower() in ("", "none", "off"):
        return lambda: _stop_all(stops)
    token = _read(args.debug_token_file).decode().strip() if args.debug_token_file else os.environ.get(TOKEN_ENV, "")
    opts = ServerOptions(
        address=args.debug_address,
        port=args.debug_port,
        token=token,
        tls_cert=_read(args.debug_tls_cert),
        tls_key=_read(args.debug_tls_key),
        tls_client_ca=_read(args.debug_tls_client_ca),
    )
    history = CycleHistory(args.debug_history)
    backend.raw = {}
    recorder = SnapshotRecorder(history, backend.raw, backend.assumed)

    def observe(info: CycleInfo) -> None:
        recorder.observe(info, backend.state.generation)

    try:
        server = start_server(history, config, opts)
    except RuntimeError as err:
        log.error("debug API disabled: %s", err)
        backend.raw = None
        return lambda: _stop_all(stops)
    daemon.observers.append(observe)
    stops.append(server.stop)
    return lambda: _stop_all(stops)

"""Wiring the debug API and telemetry into `kaisched run`: flags, the cycle observers, start and stop.

grpc, the debug stubs and OpenTelemetry are imported in `attach()`, which `kaisched run` calls while the
cache's first lists are in flight: the flags and options need none of them."""

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
from scheduler.debug.options import DEFAULT_MAX_STREAMS, ServerOptions, SimulateLimits
from scheduler.debug.snapshot import SnapshotRecorder
from scheduler.framework.config import SchedulerConfig
from scheduler.framework.cycleinfo import CycleInfo
from scheduler.telemetry.metrics import Metrics

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
    lim = SimulateLimits()
    g.add_argument(
        "--debug-max-streams",
        type=int,
        default=DEFAULT_MAX_STREAMS,
        help="WatchDecisions streams open at once; one more is refused (RESOURCE_EXHAUSTED)",
    )
    g.add_argument(
        "--debug-max-simulations", type=int, default=lim.concurrency, help="Simulate calls at once; more are refused"
    )
    g.add_argument(
        "--debug-simulate-max-bytes", type=int, default=lim.max_bytes, help="largest Simulate request, in bytes"
    )
    g.add_argument(
        "--debug-simulate-max-objects", type=int, default=lim.max_objects, help="objects one Simulate call may send"
    )
    g.add_argument(
        "--debug-simulate-max-nodes",
        type=int,
        default=lim.max_nodes,
        help="YAML/JSON nodes one Simulate call may send, each alias counted as the nodes it stands for",
    )
    g.add_argument(
        "--debug-simulate-timeout",
        type=float,
        default=lim.timeout_s,
        help="seconds a Simulate call may run when its caller's deadline is later or unset",
    )


def _read(path: str | None) -> bytes:
    return Path(path).read_bytes() if path else b""


def _token(args: argparse.Namespace) -> str:
    """The bearer token from --debug-token-file, else $KAISCHED_DEBUG_TOKEN, else none. A file (or variable)
    that is given but holds no token is refused: it means a secret failed to mount, and serving without
    the token it was meant to require would be the silent opposite of what was asked for."""
    if args.debug_token_file:
        source, raw = f"--debug-token-file {args.debug_token_file}", _read(args.debug_token_file)
    elif TOKEN_ENV in os.environ:
        source, raw = f"${TOKEN_ENV}", os.environ[TOKEN_ENV].encode()
    else:
        return ""
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = None
    if token == "":
        raise ValueError(
            f"{source} is empty: refusing to serve the debug API without the token it should require "
            "(put the token in it, or leave it out to serve without one)"
        )
    if token is None or not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError(f"{source}: the token must be one word of printable ASCII (it travels in a gRPC header)")
    return token


def server_options(args: argparse.Namespace) -> ServerOptions | None:
    """The debug API's options from the flags, with their files read; None when the API is off. Raises
    ValueError (or OSError for a file that cannot be read) so `kaisched run` can refuse to start before
    anything else does."""
    if str(args.debug_address).lower() in ("", "none", "off"):
        return None
    simulate = SimulateLimits(
        max_bytes=args.debug_simulate_max_bytes,
        max_objects=args.debug_simulate_max_objects,
        max_nodes=args.debug_simulate_max_nodes,
        timeout_s=args.debug_simulate_timeout,
        concurrency=args.debug_max_simulations,
    )
    return ServerOptions(
        address=args.debug_address,
        port=args.debug_port,
        token=_token(args),
        tls_cert=_read(args.debug_tls_cert),
        tls_key=_read(args.debug_tls_key),
        tls_client_ca=_read(args.debug_tls_client_ca),
        max_streams=args.debug_max_streams,
        simulate=simulate,
    )


def _stop_all(stops: list[Callable[[], Any]]) -> None:
    for stop in reversed(stops):
        try:
            stop()
        except Exception:
            log.exception("stopping the debug API or telemetry failed")


def attach(
    args: argparse.Namespace,
    daemon: Daemon,
    backend: KubeBackend,
    config: SchedulerConfig,
    metrics: Metrics,
    opts: ServerOptions | None,
) -> Callable[[], None]:
    """Add the observers and start the server (`opts` from `server_options`; None: no debug API); returns
    the function that stops them. Raises ValueError for bad options (the caller exits); a port that cannot
    be bound only disables the API, with an error logged."""
    from scheduler.debug.server import start_server
    from scheduler.telemetry.otel import Telemetry

    telemetry = Telemetry.from_env(metrics)
    daemon.observers.append(telemetry.observe)
    stops: list[Callable[[], Any]] = [telemetry.shutdown]
    if opts is None:
        return lambda: _stop_all(stops)
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

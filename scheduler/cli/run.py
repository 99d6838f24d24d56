"""`kaisched run`: the scheduler daemon against a real Kubernetes API server."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
import time

import yaml

from scheduler.backends.kubernetes import BIND_PARALLELISM, KubeBackend
from scheduler.binder.volumes import DEFAULT_TIMEOUT_S
from scheduler.daemon.http import serve
from scheduler.daemon.leader import LeaderElector
from scheduler.daemon.runner import CYCLE_POD_BUDGET, Daemon
from scheduler.daemon.status import StatusWriter
from scheduler.framework.config import ConfigError, SchedulerConfig
from scheduler.kube.client import KubeClient
from scheduler.kube.fence import Fence
from scheduler.telemetry.metrics import Metrics


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the scheduler against a Kubernetes API server")
    p.add_argument("--kubeconfig", default=None, help="default: in-cluster, then ~/.kube/config")
    p.add_argument("--scheduler-name", default=None, help="pods with this spec.schedulerName (default kai-scheduler)")
    p.add_argument("--config", default=None, help="scheduler configuration YAML")
    p.add_argument("--schedule-period", type=float, default=None, help="seconds between cycles (default 1)")
    p.add_argument("--qps", type=float, default=200.0, help="client requests per second (token bucket)")
    p.add_argument("--burst", type=int, default=400, help="client burst")
    p.add_argument(
        "--bind-parallelism",
        type=int,
        default=BIND_PARALLELISM,
        help="gang commits and binds in flight at once (each a request the API server answers in tens of ms)",
    )
    p.add_argument(
        "--cycle-pod-budget",
        type=int,
        default=CYCLE_POD_BUDGET,
        help="pods a cycle places before its commits go to the binder and the next cycle decides the rest at "
        "once (0: no limit)",
    )
    p.add_argument("--leader-elect", action="store_true", help="hold a Lease so only one replica schedules")
    p.add_argument("--leader-elect-namespace", default="kube-system")
    p.add_argument("--leader-elect-name", default="kai-scheduler")
    p.add_argument("--lease-duration", type=int, default=15, help="seconds")
    p.add_argument("--identity", default=None, help="leader identity (default hostname_pid)")
    p.add_argument("--http-address", default="0.0.0.0", help="address for /healthz, /readyz, /metrics")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument(
        "--no-bind-dry-run",
        action="store_true",
        help="never dry-run a gang's binds (made only where they pay: evictions, claims, a retry after a refused bind)",
    )
    p.add_argument(
        "--volume-bind-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds a gang's WaitForFirstConsumer claims may take to be bound before it gives them back",
    )
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--max-cycles", type=int, default=None, help=argparse.SUPPRESS)
    from scheduler.daemon.debugattach import add_arguments

    add_arguments(p)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        try:
            payload = json.loads(msg)
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            payload = {"msg": msg}
        return json.dumps({"ts": self.formatTime(record), "level": record.levelname, "logger": record.name, **payload})


def run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    log = logging.getLogger("kaisched")
    try:
        config = SchedulerConfig.load(args.config)
    except (OSError, ConfigError, yaml.YAMLError) as err:
        print(f"kaisched: {args.config}: {err}", file=sys.stderr)  # refuse to start: nothing has run yet
        return 2
    from scheduler.daemon.debugattach import attach, server_options

    try:
        debug_opts = server_options(args)
    except (OSError, ValueError) as err:
        print(f"kaisched: debug API: {err}", file=sys.stderr)
        return 2
    if args.scheduler_name:
        config = dataclasses.replace(config, scheduler_name=args.scheduler_name)
    if args.schedule_period:
        config = dataclasses.replace(config, schedule_period_seconds=args.schedule_period)
    if args.bind_parallelism < 1:
        raise SystemExit("--bind-parallelism must be at least 1")
    if args.cycle_pod_budget < 0:
        raise SystemExit("--cycle-pod-budget must be 0 (no limit) or more")
    # connections: the binds and the gang commits in flight, the watches, the rest
    client = KubeClient.from_kubeconfig(
        args.kubeconfig, qps=args.qps, burst=args.burst, pool_size=2 * args.bind_parallelism + 64
    )
    identity = args.identity or f"{socket.gethostname()}_{os.getpid()}"
    backend = KubeBackend(
        client,
        config.scheduler_name,
        identity,
        bind_parallelism=args.bind_parallelism,
        dry_run=not args.no_bind_dry_run,
        watch_owners=config.grouping,
    )
    backend.committer.claims.timeout = args.volume_bind_timeout
    metrics = Metrics()
    # events and status get a client (and rate limit) of their own, as kube-scheduler's event client does,
    # so a burst of events never slows binding
    status_client = KubeClient.from_kubeconfig(args.kubeconfig, qps=args.qps, burst=args.burst)
    # under leader election every write of both clients needs the lease (kube/fence.py)
    fence = Fence(args.lease_duration * 2 / 3) if args.leader_elect else None
    client.fence = status_client.fence = fence
    for c in (client, status_client):  # audit logs (and fault tests) tell replicas apart by it
        c.headers["User-Agent"] = f"kaisched/0.1.0 ({identity})"
    # the grouper's writes (PodGroups, one patch per new pod) get a client of their own too, so a burst of
    # new workloads never takes the binder's rate
    backend.grouper.client = KubeClient.from_kubeconfig(args.kubeconfig, qps=args.qps, burst=args.burst)
    backend.grouper.client.fence = fence
    backend.grouper.client.headers["User-Agent"] = f"kaisched/0.1.0 ({identity})"
    # the first lists of every kind start now, in flight while the rest is set up (the debug API's and
    # telemetry's imports among it); their events wait in the queue until wait_synced drains them
    backend.start()
    status = StatusWriter(status_client, config.scheduler_name, identity)
    backend.committer.event = status.event  # Preempted / Reclaimed / ... on each victim the committer evicts
    daemon = Daemon(
        backend,
        status,
        config,
        metrics,
        json_logs=args.log_format == "json",
        pod_budget=args.cycle_pod_budget or None,
    )
    try:
        stop_debug = attach(args, daemon, backend, config, metrics, debug_opts)
    except (OSError, ValueError) as err:
        log.error("debug API / telemetry: %s", err)
        backend.stop()
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = serve(args.http_address, args.http_port, metrics, backend.synced)
    log.info(
        "starting: scheduler-name=%s api=%s qps=%s burst=%s period=%ss http=%s:%s",
        config.scheduler_name,
        client.host,
        args.qps,
        args.burst,
        config.schedule_period_seconds,
        args.http_address,
        server.server_port,
    )
    if backend.wait_synced(timeout=120):
        log.info("cache synced: %d pods", len(backend.state.pods()))
        # what the first lists built lives about as long as the process: the cyclic collector's full
        # passes leave it alone from now on (reference counting still frees what the cache drops)
        gc.freeze()
    else:
        log.error("cache did not sync within 120s; is the API server reachable?")
    leader = None
    if args.leader_elect:
        elector = LeaderElector(
            client,
            identity,
            args.leader_elect_namespace,
            args.leader_elect_name,
            args.lease_duration,
            fence=fence,
        )
        backend.committer.lease_holder = lambda: elector.holder  # recovery leaves a live leader's intents alone
        threading.Thread(target=elector.run, args=(stop,), name="leader", daemon=True).start()
        leader = elector.is_leader

        def stop_when_lost() -> None:
            elector.lost.wait()
            stop.set()

        threading.Thread(target=stop_when_lost, name="leader-watch", daemon=True).start()
    try:
        if args.max_cycles:
            for _ in range(args.max_cycles):
                if leader is None or leader.is_set():
                    daemon.cycle()
                time.sleep(config.schedule_period_seconds)
        else:
            daemon.run(stop, leader)
    finally:
        status.close()
        backend.stop()
        server.shutdown()
        stop_debug()
    return 0

"""`kaisched simulate FILE...`: schedule Kubernetes objects from YAML files on an in-memory cluster.

The loop itself (backends/simulation.py) is shared with `replay`, `demo` and the debug API's Simulate."""

from __future__ import annotations

import argparse
import json
import sys

from scheduler.backends.simulation import simulate
from scheduler.cli.table import render_result
from scheduler.framework.config import ConfigError, SchedulerConfig
from scheduler.kube.loader import LoadError, load_objects


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="schedule Kubernetes objects from YAML files on an in-memory cluster")
    sim.add_argument("files", nargs="+", metavar="FILE")
    sim.add_argument("--cycles", type=int, default=None, help="stop after N cycles (default: until nothing changes)")
    sim.add_argument("--config", default=None, help="scheduler configuration YAML")
    sim.add_argument("--output", choices=("json", "table"), default="table")


def run(args: argparse.Namespace) -> int:
    try:
        config = SchedulerConfig.load(args.config)
        objects = load_objects(args.files)
    except (OSError, LoadError, ConfigError) as err:
        print(f"kaisched: {err}", file=sys.stderr)
        return 2
    if args.cycles is not None and args.cycles < 1:
        print("kaisched: --cycles must be >= 1", file=sys.stderr)
        return 2
    result = simulate(objects, config, args.cycles)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2, sort_keys=False))
    else:
        print(render_result(result))
    return 0

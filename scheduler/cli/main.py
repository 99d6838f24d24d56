"""`kaisched` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from scheduler.framework.config import ConfigError, SchedulerConfig
from scheduler.kube.loader import LoadError, load_objects


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kaisched", description="Gang- and topology-aware batch scheduler")
    sub = p.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="schedule Kubernetes objects from YAML files on an in-memory cluster")
    sim.add_argument("files", nargs="+", metavar="FILE")
    sim.add_argument("--cycles", type=int, default=None, help="stop after N cycles (default: until nothing changes)")
    sim.add_argument("--config", default=None, help="scheduler configuration YAML")
    sim.add_argument("--output", choices=("json", "table"), default="table")
    sub.add_parser("demo", help="an embedded cluster and workload, scheduled and explained (no cluster needed)")
    from scheduler.cli.run import add_parser

    add_parser(sub)
    from scheduler.cli import ctl, replay

    ctl.add_parser(sub)
    replay.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from scheduler.cli.run import run

        return run(args)
    if args.command == "ctl":
        from scheduler.cli.ctl import ctl

        return ctl(args)
    if args.command == "replay":
        from scheduler.cli.replay import replay

        return replay(args)
    if args.command == "demo":
        from scheduler.cli.demo import run_demo

        print(run_demo())
        return 0
    from scheduler.cli.simulate import simulate
    from scheduler.cli.table import render_result

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


if __name__ == "__main__":
    sys.exit(main())

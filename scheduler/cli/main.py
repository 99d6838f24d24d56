"""`kaisched` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kaisched", description="Gang- and topology-aware batch scheduler")
    sub = p.add_subparsers(dest="command", required=True)
    from scheduler.cli import simulate

    simulate.add_parser(sub)
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
    from scheduler.cli.simulate import run as simulate

    return simulate(args)


if __name__ == "__main__":
    sys.exit(main())

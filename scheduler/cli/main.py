"""`kaisched` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """All commands' parsers; with `command` (one of them, the first argument) only that one's is built
    with its flags, so `kaisched run` never imports what simulate, replay or ctl need (grpc among it)."""
    p = argparse.ArgumentParser(prog="kaisched", description="Gang- and topology-aware batch scheduler")
    sub = p.add_subparsers(dest="command", required=True)

    def wanted(name: str) -> bool:
        return command is None or command == name

    if wanted("simulate"):
        from scheduler.cli import simulate

        simulate.add_parser(sub)
    sub.add_parser("demo", help="an embedded cluster and workload, scheduled and explained (no cluster needed)")
    if wanted("run"):
        from scheduler.cli.run import add_parser

        add_parser(sub)
    if wanted("ctl"):
        from scheduler.cli import ctl

        ctl.add_parser(sub)
    if wanted("replay"):
        from scheduler.cli import replay

        replay.add_parser(sub)
    return p


COMMANDS = ("simulate", "demo", "run", "ctl", "replay")


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = _parser(given[0] if given and given[0] in COMMANDS else None).parse_args(given)
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

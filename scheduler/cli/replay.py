"""`kaisched replay SNAPSHOT`: the scheduling cycle, offline, on a snapshot the daemon handed out
(`kaisched ctl snapshot`). Prints what `simulate --output json` prints: given the same snapshot and
configuration the core decides the same, so this shows what the daemon decided and why."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from scheduler.backends.simulation import simulate
from scheduler.debug.snapshot import split_document
from scheduler.framework.config import ConfigError, SchedulerConfig
from scheduler.kube.loader import LoadError, flatten


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="run the cycle offline on a snapshot from `kaisched ctl snapshot`")
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p.add_argument("--cycles", type=int, default=None, help="stop after N cycles (default: until nothing changes)")
    p.add_argument("--config", default=None, help="override the configuration the snapshot carries")


def load_snapshot(path: str) -> tuple[list[dict[str, Any]], SchedulerConfig | None]:
    text = Path(path).read_text()
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        raise LoadError(f"{path}: not valid JSON or YAML: {err}") from err
    objects: list[dict[str, Any]] = []
    config: SchedulerConfig | None = None
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise LoadError(f"{path}: expected Kubernetes objects, got {type(doc).__name__}")
        items, found = split_document(doc)
        objects.extend(flatten(items, path))
        config = found or config
    return objects, config


def replay(args: argparse.Namespace) -> int:
    if args.cycles is not None and args.cycles < 1:
        print("kaisched: --cycles must be >= 1", file=sys.stderr)
        return 2
    try:
        objects, carried = load_snapshot(args.snapshot)
        config = SchedulerConfig.load(args.config) if args.config else carried or SchedulerConfig()
    except (OSError, LoadError, ConfigError) as err:
        print(f"kaisched: {err}", file=sys.stderr)
        return 2
    result = simulate(objects, config, args.cycles)
    print(json.dumps(result.to_json(), indent=2, sort_keys=False))
    return 0

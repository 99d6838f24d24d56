"""Declarative scenario tests for ``kaisched simulate``.

Each ``cases/*.yaml`` file is one YAML document::

    description: one sentence: the rule it checks
    config: {nodeOrder: spread}      # optional, written to a --config file
    cycles: 3                        # optional, passed as --cycles
    objects: [ ...Kubernetes objects... ]
    expect:
      placements: {ns/pod: node}     # exact node
      placed: [ns/pod]               # placed somewhere
      not_placed: [ns/pod]
      placed_count: 8                # total placements
      node_counts: {node: 2}         # how many of this run's placements landed on each listed node
      absent: [ns/pod]               # neither placed nor reported (not ours)
      unscheduled: {ns/pg: ReasonCode}
      message_contains: {ns/pg: ["substring"]}
      same_domain: [{label: topology.kubernetes.io/zone, pods: [ns/a, ns/b]}]
      in_domain: [{label: topology.kubernetes.io/rack, value: r1, pods: [ns/a]}]
      all_scheduled: true            # unscheduled must be empty
      evictions: {ns/pod: "reclaim for ns/pg"}  # exactly these evictions ("stalegang for " for a stale gang)

The objects are written as a multi-document YAML file and run in-process through
``scheduler.cli.main.main(["simulate", FILE, "--output", "json", ...])``.
"""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CASES_DIR = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))

TOP_KEYS = {"description", "config", "cycles", "objects", "expect"}
EXPECT_KEYS = {
    "placements",
    "placed",
    "not_placed",
    "placed_count",
    "node_counts",
    "absent",
    "unscheduled",
    "message_contains",
    "same_domain",
    "in_domain",
    "all_scheduled",
    "evictions",
}
SCHEDULER_NAME = "kai-scheduler"


# --------------------------------------------------------------------------- helpers


def load_case(path: Path) -> dict[str, Any]:
    with path.open() as f:
        docs = list(yaml.safe_load_all(f))
    assert len(docs) == 1, f"{path.name}: a case file is exactly one YAML document"
    case = docs[0]
    assert isinstance(case, dict), f"{path.name}: a case is a mapping"
    return case


def key_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def nodes_of(case: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Node name -> labels, from the scenario's Node objects."""
    return {
        o["metadata"]["name"]: dict(o["metadata"].get("labels") or {})
        for o in case["objects"]
        if o.get("kind") == "Node"
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Case files may share specs through YAML anchors; write every object out in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_inputs(case: dict[str, Any], tmp_path: Path) -> list[str]:
    objects_file = tmp_path / "objects.yaml"
    objects_file.write_text(yaml.dump_all(case["objects"], Dumper=_NoAliasDumper, sort_keys=False))
    argv = ["simulate", str(objects_file)]
    if case.get("config") is not None:
        config_file = tmp_path / "config.yaml"
        config_file.write_text(yaml.safe_dump(case["config"], sort_keys=False))
        argv += ["--config", str(config_file)]
    if case.get("cycles") is not None:
        argv += ["--cycles", str(case["cycles"])]
    return argv


def run_cli(argv: list[str]) -> tuple[int, str]:
    from scheduler.cli.main import main  # imported late: the static checks run without the engine

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def parse_single_json_object(out: str) -> dict[str, Any]:
    """stdout must be exactly one JSON object (json.loads rejects trailing data)."""
    try:
        result = json.loads(out)
    except json.JSONDecodeError as e:  # pragma: no cover - failure path
        pytest.fail(f"stdout is not exactly one JSON document ({e}):\n{out}")
    assert isinstance(result, dict), f"stdout is JSON but not an object:\n{out}"
    assert set(result) >= {"placements", "unscheduled", "cycles"}, f"missing keys:\n{out}"
    assert isinstance(result["placements"], dict), out
    assert isinstance(result["unscheduled"], dict), out
    assert isinstance(result["cycles"], int), out
    for key, value in result["unscheduled"].items():
        assert isinstance(value, dict) and {"reason", "message"} <= set(value), f"{key}: {value}"
    return result


def check_expect(case: dict[str, Any], result: dict[str, Any], name: str) -> None:
    expect = case["expect"]
    placements: dict[str, str] = result["placements"]
    unscheduled: dict[str, dict[str, str]] = result["unscheduled"]
    nodes = nodes_of(case)
    ctx = f"\n[{name}] {case['description']}\nresult = {json.dumps(result, indent=2, sort_keys=True)}"
    errors: list[str] = []

    for pod, node in (expect.get("placements") or {}).items():
        if placements.get(pod) != node:
            errors.append(f"placements: {pod} expected on {node}, got {placements.get(pod)}")
    for pod in expect.get("placed") or []:
        if pod not in placements:
            errors.append(f"placed: {pod} expected to be placed, it was not")
    for pod in expect.get("not_placed") or []:
        if pod in placements:
            errors.append(f"not_placed: {pod} expected NOT placed, got {placements[pod]}")
    if "placed_count" in expect and len(placements) != expect["placed_count"]:
        errors.append(f"placed_count: expected {expect['placed_count']}, got {len(placements)}")
    if "node_counts" in expect:
        counts = Counter(placements.values())
        for node, n in expect["node_counts"].items():
            if counts.get(node, 0) != n:
                errors.append(f"node_counts: {node} expected {n} placements, got {counts.get(node, 0)}")
    for pod in expect.get("absent") or []:
        if pod in placements or pod in unscheduled:
            errors.append(f"absent: {pod} is not ours and must not appear in the output")
    for key, reason in (expect.get("unscheduled") or {}).items():
        got = unscheduled.get(key)
        if got is None:
            errors.append(f"unscheduled: {key} expected {reason}, but it is not in unscheduled")
        elif got.get("reason") != reason:
            errors.append(f"unscheduled: {key} expected {reason}, got {got.get('reason')}")
    for key, subs in (expect.get("message_contains") or {}).items():
        msg = (unscheduled.get(key) or {}).get("message")
        if msg is None:
            errors.append(f"message_contains: {key} has no unscheduled message")
            continue
        for sub in subs:
            if sub not in msg:
                errors.append(f"message_contains: {key} message {msg!r} lacks {sub!r}")
    for item in expect.get("same_domain") or []:
        label = item["label"]
        values: dict[str, str | None] = {}
        for pod in item["pods"]:
            if pod not in placements:
                errors.append(f"same_domain[{label}]: {pod} was not placed")
                continue
            values[pod] = nodes.get(placements[pod], {}).get(label)
        if len(set(values.values())) > 1:
            errors.append(f"same_domain[{label}]: pods span several domains: {values}")
    for item in expect.get("in_domain") or []:
        label, value = item["label"], item["value"]
        for pod in item["pods"]:
            if pod not in placements:
                errors.append(f"in_domain[{label}={value}]: {pod} was not placed")
                continue
            got_value = nodes.get(placements[pod], {}).get(label)
            if got_value != value:
                errors.append(f"in_domain[{label}={value}]: {pod} on {placements[pod]} which has {label}={got_value}")
    if case.get("cycles") is not None and result["cycles"] > case["cycles"]:
        errors.append(f"cycles: ran {result['cycles']} cycles, more than --cycles {case['cycles']}")
    if "evictions" in expect:
        got_ev = {pod: f"{e['action']} for {e['for']}".rstrip() for pod, e in (result.get("evictions") or {}).items()}
        want_ev = {pod: str(v).rstrip() for pod, v in (expect["evictions"] or {}).items()}
        if got_ev != want_ev:
            errors.append(f"evictions: expected {want_ev}, got {got_ev}")
    if expect.get("all_scheduled") and unscheduled:
        errors.append(f"all_scheduled: unscheduled is not empty: {sorted(unscheduled)}")

    assert not errors, "\n".join(errors) + ctx


# --------------------------------------------------------------------------- static checks (no engine)


def _pods(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {key_of(o): o for o in case["objects"] if o.get("kind") == "Pod"}


def _grouped(case: dict[str, Any]) -> dict[str, str]:
    """Pod key -> the PodGroup key the grouper makes for it (pods of workloads without pod-group-name)."""
    from scheduler.grouper.chain import ObjectIndex, walk
    from scheduler.grouper.rules import GrouperConfig, GroupingError, group_pod

    index = ObjectIndex(case["objects"])
    out: dict[str, str] = {}
    for key, pod in _pods(case).items():
        if (pod["metadata"].get("annotations") or {}).get("pod-group-name"):
            continue
        try:
            spec = group_pod(pod, walk(pod, index.lookup).owners, GrouperConfig())
        except GroupingError:
            continue
        if spec is not None:
            out[key] = spec.key
    return out


def _gang_keys(case: dict[str, Any]) -> set[str]:
    keys = {key_of(o) for o in case["objects"] if o.get("kind") == "PodGroup"}
    grouped = _grouped(case)
    for key, pod in _pods(case).items():
        ns = key.split("/")[0]
        pg = (pod["metadata"].get("annotations") or {}).get("pod-group-name")
        keys.add(f"{ns}/{pg}" if pg else grouped.get(key, key))
    return keys


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case_file_is_well_formed(path: Path) -> None:
    """Runs without the engine: the case parses and its expectations refer to real objects."""
    from scheduler.api.reasons import Reason

    case = load_case(path)
    assert set(case) <= TOP_KEYS, f"unknown top-level keys {set(case) - TOP_KEYS}"
    assert isinstance(case.get("description"), str) and case["description"].strip()
    assert isinstance(case.get("objects"), list) and case["objects"]
    expect = case.get("expect")
    assert isinstance(expect, dict) and expect, "expect is required"
    assert set(expect) <= EXPECT_KEYS, f"unknown expect keys {set(expect) - EXPECT_KEYS}"
    for obj in case["objects"]:
        assert {"apiVersion", "kind", "metadata"} <= set(obj), f"incomplete object {obj}"
        assert obj["metadata"].get("name"), f"object without a name {obj}"

    pods, nodes, gangs = _pods(case), nodes_of(case), _gang_keys(case)
    scheduler_name = (case.get("config") or {}).get("schedulerName", SCHEDULER_NAME)
    ours = {
        k
        for k, p in pods.items()
        if (p.get("spec") or {}).get("schedulerName") == scheduler_name and not p["spec"].get("nodeName")
    }
    placed_refs = set(expect.get("placements") or {}) | set(expect.get("placed") or [])
    for item in (expect.get("same_domain") or []) + (expect.get("in_domain") or []):
        placed_refs |= set(item["pods"])
        assert any(item["label"] in labels for labels in nodes.values()), f"no node has {item['label']}"
    for ref in placed_refs | set(expect.get("not_placed") or []):
        assert ref in ours, f"{ref} is not a pending kai-scheduler pod of this case"
    for ref in expect.get("absent") or []:
        assert ref in pods and ref not in ours, f"{ref} must be a pod that is not ours"
    for node in list((expect.get("placements") or {}).values()) + list(expect.get("node_counts") or {}):
        assert node in nodes, f"unknown node {node}"
    assert not placed_refs & set(expect.get("not_placed") or []), "placed and not_placed overlap"
    if "placed_count" in expect:
        assert expect["placed_count"] >= len(placed_refs)
        assert expect["placed_count"] <= len(ours)
        assert expect["placed_count"] >= sum((expect.get("node_counts") or {}).values())
        assert len(ours) - expect["placed_count"] >= len(set(expect.get("not_placed") or []))
    codes = {r.value for r in Reason}
    for key, reason in (expect.get("unscheduled") or {}).items():
        assert reason in codes, f"{key}: unknown reason code {reason}"
        assert key in gangs, f"{key}: no PodGroup, pod or pod-group-name annotation has this key"
    for key in expect.get("message_contains") or {}:
        assert key in (expect.get("unscheduled") or {}), f"{key}: message_contains without unscheduled"
    if expect.get("all_scheduled"):
        assert not expect.get("unscheduled")
    if case.get("config") is not None:
        assert set(case["config"]) <= {"schedulerName", "nodeOrder", "placementSearchBudget"}
    # a pod that is expected placed must not be in a gang that is expected unscheduled
    grouped = _grouped(case)
    for ref in placed_refs:
        pod = pods[ref]
        ns = ref.split("/")[0]
        pg = (pod["metadata"].get("annotations") or {}).get("pod-group-name")
        gang = f"{ns}/{pg}" if pg else grouped.get(ref, ref)
        assert gang not in (expect.get("unscheduled") or {}), f"{ref} expected placed but its gang waits"


def test_enough_cases() -> None:
    assert len(CASE_FILES) >= 45


# --------------------------------------------------------------------------- engine runs


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_scenario(path: Path, tmp_path: Path) -> None:
    case = load_case(path)
    argv = [*write_inputs(case, tmp_path), "--output", "json"]
    rc, out = run_cli(argv)
    result = parse_single_json_object(out)
    assert rc == 0, f"exit code {rc}\n{out}"
    check_expect(case, result, path.stem)


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_scenario_table_output(path: Path, tmp_path: Path) -> None:
    case = load_case(path)
    rc, out = run_cli([*write_inputs(case, tmp_path), "--output", "table"])
    assert rc == 0, f"exit code {rc}\n{out}"
    assert out.strip(), "table output is empty"


# --------------------------------------------------------------------------- raw input formats

_RAW_OBJECTS = """\
apiVersion: v1
kind: Node
metadata:
  name: node-1
status:
  allocatable: {cpu: 8, memory: 32Gi, nvidia.com/gpu: 2}
---
apiVersion: v1
kind: Node
metadata:
  name: node-2
status:
  allocatable: {cpu: "8", memory: 32Gi, nvidia.com/gpu: "2", pods: "110"}
---
# a comment-only document and an empty document are both skipped
---
apiVersion: scheduling.run.ai/v2alpha2
kind: PodGroup
metadata: {name: pair, namespace: team}
spec: {minMember: 2, queue: default-queue}
"""

_RAW_PODS = [
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pair-{i}", "namespace": "team", "annotations": {"pod-group-name": "pair"}},
        "spec": {
            "schedulerName": SCHEDULER_NAME,
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"nvidia.com/gpu": "2"}}}],
        },
    }
    for i in range(2)
]


def _assert_pair_placed(result: dict[str, Any]) -> None:
    ctx = json.dumps(result, indent=2, sort_keys=True)
    assert set(result["placements"]) == {"team/pair-0", "team/pair-1"}, ctx
    assert set(result["placements"].values()) == {"node-1", "node-2"}, ctx
    assert result["unscheduled"] == {}, ctx


def test_multi_document_yaml_input(tmp_path: Path) -> None:
    f = tmp_path / "multi.yaml"
    f.write_text(_RAW_OBJECTS + "---\n" + yaml.safe_dump_all(_RAW_PODS, sort_keys=False) + "---\n")
    rc, out = run_cli(["simulate", str(f), "--output", "json"])
    assert rc == 0, out
    _assert_pair_placed(parse_single_json_object(out))


def test_kind_list_input(tmp_path: Path) -> None:
    items = [d for d in yaml.safe_load_all(_RAW_OBJECTS) if d] + _RAW_PODS
    f = tmp_path / "list.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}, sort_keys=False))
    rc, out = run_cli(["simulate", str(f), "--output", "json"])
    assert rc == 0, out
    _assert_pair_placed(parse_single_json_object(out))


def test_several_input_files(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(_RAW_OBJECTS)
    pods = tmp_path / "pods.yaml"
    pods.write_text(yaml.safe_dump_all(_RAW_PODS, sort_keys=False))
    rc, out = run_cli(["simulate", str(nodes), str(pods), "--output", "json"])
    assert rc == 0, out
    _assert_pair_placed(parse_single_json_object(out))


def test_json_is_exactly_one_object(tmp_path: Path) -> None:
    """Whole stdout is one JSON object: nothing before or after it (logs go to stderr)."""
    f = tmp_path / "multi.yaml"
    f.write_text(_RAW_OBJECTS + "---\n" + yaml.safe_dump_all(_RAW_PODS, sort_keys=False))
    rc, out = run_cli(["simulate", str(f), "--output", "json"])
    assert rc == 0, out
    decoder = json.JSONDecoder()
    stripped = out.strip()
    obj, end = decoder.raw_decode(stripped)
    assert isinstance(obj, dict)
    assert end == len(stripped), f"trailing output after the JSON object:\n{out}"
    assert stripped.startswith("{"), f"output before the JSON object:\n{out}"

"""Reading what a debug API caller sends: the bounded YAML/JSON parser (aliases counted as what they
stand for, recursion and depth refused before anything is constructed) and Kubernetes name rules."""

from __future__ import annotations

import json
import time

import pytest

from scheduler.debug.requests import DETAILS_MAX, clip, echo, name_problem
from scheduler.kube.loader import LoadError, TooLarge, flatten, load_documents


def alias_bomb(levels: int = 6, fan: int = 10) -> str:
    """A Pod whose `spec` stands for fan**levels scalars through nested aliases, in a few hundred bytes."""
    lines = ["kind: Pod", "metadata: {name: bomb, namespace: team}", "l0: &l0 [" + ", ".join(["lol"] * fan) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]" for i in range(1, levels)]
    lines.append(f"spec: *l{levels - 1}")
    return "\n".join(lines) + "\n"


def test_measure_counts_aliases_without_expanding_them() -> None:
    docs, nodes = load_documents("a: &x [1, 2]\nb: *x\nc: *x\n", "t", 100)
    assert docs == [{"a": [1, 2], "b": [1, 2], "c": [1, 2]}]
    assert nodes == 1 + 3 * (1 + 3)  # the mapping, and each key with a sequence of 2
    bomb = alias_bomb()  # 10**6 references
    assert len(bomb) < 700
    start = time.perf_counter()
    with pytest.raises(TooLarge, match="past 250000"):
        load_documents(bomb, "objects[0]", 250_000)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("text", ["&a [*a]", "&a {k: *a}", "a: &b {c: [1, *b]}", "--- 1\n--- &a [x, [*a]]\n"])
def test_recursive_yaml_is_refused_before_construction(text: str) -> None:
    with pytest.raises(LoadError, match="recursive YAML"):
        load_documents(text, "objects[0]", 1000)


def test_depth_json_budget_and_messages() -> None:
    with pytest.raises(LoadError, match="nested more than 100 levels"):
        load_documents("[" * 101 + "]" * 101, "t", 10_000)
    with pytest.raises(LoadError, match="nested more than 100 levels"):
        load_documents("a:\n" + "".join(" " * (i + 1) + "- \n" for i in range(120)), "t", 10_000)
    with pytest.raises(LoadError, match="nested more than"):
        load_documents("[" * 200_000 + "]" * 200_000, "t", 10**7)  # JSON deeper than the recursion limit
    docs, nodes = load_documents(json.dumps({"kind": "Pod", "x": [1, 2]}), "t", 100)
    assert docs == [{"kind": "Pod", "x": [1, 2]}] and nodes == 1 + 2 + 2 + 2
    docs, _ = load_documents("{kind: Pod, metadata: {name: x}}", "t", 100)  # flow YAML, not JSON
    assert docs == [{"kind": "Pod", "metadata": {"name": "x"}}]
    with pytest.raises(TooLarge):  # the budget spans documents
        load_documents("--- [1, 2, 3]\n--- [4, 5, 6]\n", "t", 6)
    with pytest.raises(LoadError) as info:
        load_documents("kind: [\n" + "x" * 10_000, "objects[3]", 100)
    assert str(info.value).startswith("objects[3] is not valid YAML") and len(str(info.value)) < 200
    with pytest.raises(LoadError, match="items are not a list"):
        flatten([{"kind": "List", "items": 5}], "t")


def test_name_rules_and_clipping() -> None:
    assert name_problem("a" * 253, "name") is None and name_problem("a.b-c", "name") is None
    assert name_problem("a" * 254, "name") and name_problem("-a", "name") and name_problem("A", "name")
    assert name_problem("a.b", "ns", label=True) and name_problem("a" * 63, "ns", label=True) is None
    assert echo("short") == "'short'" and len(echo("y" * 10_000)) < 100
    assert len(clip("é" * 5000).encode()) <= DETAILS_MAX

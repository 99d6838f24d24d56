"""The package dependency rules of ../shared/DESIGN.md, checked on the source: every module under scheduler/
is parsed with `ast` and every static import is checked (`import x`, `from x import y`, relative imports,
imports inside functions and under `if TYPE_CHECKING:`). A failure names the module, the line and the import.

- the core (api, framework, plugins, actions) never imports backends, kube, binder, grouper, daemon, debug, cli
- framework never imports plugins or actions (they register themselves by name: framework/registry.py)
- plugins never import actions
- debug and telemetry never import daemon or cli
- api imports only the standard library (and itself)
- grouper imports only api and kube
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "scheduler"

CORE = ("scheduler.api", "scheduler.framework", "scheduler.plugins", "scheduler.actions")
OUTSIDE_CORE = (
    "scheduler.backends",
    "scheduler.kube",
    "scheduler.binder",
    "scheduler.grouper",
    "scheduler.daemon",
    "scheduler.debug",
    "scheduler.cli",
)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name: (modules the rule applies to, imports they must not make)
    "core-is-standalone": (CORE, OUTSIDE_CORE),
    "framework-knows-no-plugin-or-action": (("scheduler.framework",), ("scheduler.plugins", "scheduler.actions")),
    "plugins-know-no-action": (("scheduler.plugins",), ("scheduler.actions",)),
    "sinks-know-no-daemon-or-cli": (("scheduler.debug", "scheduler.telemetry"), ("scheduler.daemon", "scheduler.cli")),
    # the grouping rules are shared by the daemon and simulate: only api and kube below them
    "grouper-reads-only-api-and-kube": (
        ("scheduler.grouper",),
        tuple(m for m in (*OUTSIDE_CORE, *CORE) if m not in ("scheduler.api", "scheduler.kube", "scheduler.grouper")),
    ),
}


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module (or, for `from m import n`, m.n as well as m)
    text: str  # the statement as written

    def __str__(self) -> str:
        return f"{self.module} (scheduler/{self.path}:{self.line}) imports {self.target}: `{self.text}`"

    @property
    def path(self) -> str:
        return self.module.removeprefix("scheduler.").replace(".", "/") + ".py"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative imports resolved against the importer)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, root: Path = ROOT) -> Iterator[Import]:
    module = module_name(path, root)
    source = path.read_text()
    for node in ast.walk(ast.parse(source, str(path))):  # every node: function bodies, TYPE_CHECKING blocks
        text = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else None
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, alias.name, text or "")
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            yield Import(module, node.lineno, base, text or "")
            for alias in node.names:
                if alias.name != "*":
                    yield Import(module, node.lineno, f"{base}.{alias.name}", text or "")


@functools.cache
def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(rule: str, imports: list[Import]) -> list[Import]:
    applies, forbidden = RULES[rule]
    seen: set[tuple[str, int]] = set()
    out = []
    for imp in imports:
        if within(imp.module, applies) and within(imp.target, forbidden) and (imp.module, imp.line) not in seen:
            seen.add((imp.module, imp.line))
            out.append(imp)
    return out


def api_violations(imports: list[Import]) -> list[Import]:
    out = []
    seen: set[tuple[str, int]] = set()
    for imp in imports:
        if not within(imp.module, ("scheduler.api",)) or (imp.module, imp.line) in seen:
            continue
        top = imp.target.split(".", 1)[0]
        if within(imp.target, ("scheduler.api",)) or imp.target == "scheduler":
            continue
        if top != "scheduler" and top in sys.stdlib_module_names:
            continue
        seen.add((imp.module, imp.line))
        out.append(imp)
    return out


def report(rule: str, found: list[Import]) -> str:
    lines = [f"import rule {rule!r} broken {len(found)} time(s):", *(f"  {imp}" for imp in found)]
    text = "\n".join(lines)
    print(text)
    return text


def test_the_parser_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Guard the checker itself: plain, from, relative, in-function and TYPE_CHECKING imports are all seen."""
    pkg = tmp_path / "scheduler" / "framework"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import thing\n")
    (pkg / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import scheduler.kube.client\n"
        "from ..daemon import runner\n"
        "if TYPE_CHECKING:\n"
        "    from scheduler.cli.main import main\n"
        "def f():\n"
        "    from scheduler import plugins\n"
    )
    targets = {i.target for i in imports_of(pkg / "mod.py", tmp_path)}
    init_targets = {i.target for i in imports_of(pkg / "__init__.py", tmp_path)}
    assert {"scheduler.kube.client", "scheduler.daemon.runner", "scheduler.cli.main", "scheduler.plugins"} <= targets
    assert "scheduler.framework.thing" in init_targets


def test_every_module_parses() -> None:
    assert len(list(PACKAGE.rglob("*.py"))) > 30
    assert any(i.target.startswith("scheduler.") for i in all_imports())


@pytest.mark.parametrize("rule", sorted(RULES))
def test_import_rule(rule: str) -> None:
    found = violations(rule, all_imports())
    assert not found, report(rule, found)


def test_api_imports_only_the_standard_library() -> None:
    found = api_violations(all_imports())
    assert not found, report("api-is-stdlib-only", found)

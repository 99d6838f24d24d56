"""Reading Kubernetes objects from YAML files: multi-document streams and `kind: List`.

`load_documents` is the bounded parser for text from an untrusted sender (the debug API's Simulate): it
measures each composed YAML document as if every alias were expanded, and refuses one that is recursive,
nested too deeply or larger than a node budget before constructing anything. PyYAML shares an aliased
node's object instead of copying it, so a few hundred bytes of nested aliases (a "billion laughs") load
instantly and then cost millions of steps in whatever walks the result; a recursive alias loads as a
cycle that nothing downstream survives. Measuring the composed graph catches both at no more cost than
the graph's own size."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml


class LoadError(ValueError):
    pass


class TooLarge(LoadError):
    """The documents hold more nodes than the caller's budget."""


# libyaml (used when present) refuses nesting deeper than 1000 levels itself; Kubernetes objects need few
MAX_DEPTH = 100

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def flatten(docs: Iterable[Any], source: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise LoadError(f"{source}: document {i + 1} is not a Kubernetes object (got {type(doc).__name__})")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise LoadError(f"{source}: document {i + 1} is a {doc.get('kind')} whose items are not a list")
            out.extend(flatten(items, source))
        elif "kind" not in doc:
            raise LoadError(f"{source}: document {i + 1} has no 'kind'")
        else:
            out.append(doc)
    return out


def load_objects(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in paths:
        text = Path(path).read_text()
        try:
            objects.extend(flatten(yaml.safe_load_all(text), str(path)))
        except yaml.YAMLError as err:
            raise LoadError(f"{path}: not valid YAML: {err}") from err
    return objects


# ----------------------------------------------------------------------------------- bounded parsing
def _children(item: Any) -> list[Any]:
    """The child nodes of a composed YAML node, or of a parsed JSON value (mapping keys count as nodes)."""
    if isinstance(item, yaml.SequenceNode):
        return list(item.value)
    if isinstance(item, yaml.MappingNode):
        return [n for pair in item.value for n in pair]
    if isinstance(item, dict):
        return [x for pair in item.items() for x in pair]
    if isinstance(item, list):
        return item
    return []


def measure(root: Any, max_nodes: int, max_depth: int, what: str, limit: int | None = None) -> int:
    """Nodes in `root` with every alias expanded (a node reached twice counts twice), without expanding
    anything: sizes are memoised per node and summed bottom-up. Raises LoadError when the size passes
    `max_nodes` (what is left of a budget whose whole is `limit`, for the message), the depth passes
    `max_depth`, or a node contains itself (a recursive alias)."""
    whole = max_nodes if limit is None else limit
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_: set[int] = set()  # expanded, not yet summed: the path from the root to the node on top
    stack: list[tuple[Any, list[Any] | None]] = [(root, None)]
    while stack:
        item, kids = stack[-1]
        key = id(item)
        if kids is None:  # first visit
            if key in size:  # reached before through another alias
                stack.pop()
                continue
            kids = _children(item)
            if kids:
                open_.add(key)
                stack[-1] = (item, kids)
                for child in kids:
                    if id(child) in open_:
                        raise LoadError(f"{what} has an alias to a node that contains it (recursive YAML)")
                    if id(child) not in size:
                        stack.append((child, None))
                continue
        stack.pop()
        open_.discard(key)
        size[key] = 1 + sum(size[id(c)] for c in kids)
        height[key] = 1 + max((height[id(c)] for c in kids), default=0)
        if size[key] > max_nodes:
            raise TooLarge(
                f"{what} takes the YAML nodes past {whole}, the limit (each alias counts as the nodes it stands for)"
            )
        if height[key] > max_depth:
            raise LoadError(f"{what} is nested more than {max_depth} levels deep (the limit)")
    return size[id(root)]


def load_documents(
    text: str,
    source: str,
    max_nodes: int,
    max_depth: int = MAX_DEPTH,
    check: Callable[[], None] | None = None,
    limit: int | None = None,
) -> tuple[list[Any], int]:
    """The documents of a YAML stream (or one JSON value, parsed as JSON), and the nodes they hold with
    aliases expanded, at most `max_nodes` in all (what is left of a budget of `limit`). Raises LoadError for
    invalid, recursive, too deep or too large input; `check` is called between documents (to stop when
    the caller's time is up) and may raise whatever it likes."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            pass  # YAML flow style ({kind: Pod, ...}) is not JSON: parse it as YAML below
        except RecursionError as err:
            raise LoadError(f"{source} is nested more than {max_depth} levels deep (the limit)") from err
        else:
            return [value], measure(value, max_nodes, max_depth, source, limit)
    docs: list[Any] = []
    used = 0
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            what = f"{source}: document {len(docs) + 1}"
            used += measure(node, max_nodes - used, max_depth, what, limit)
            docs.append(loader.construct_document(node))
            if check is not None:
                check()
    except yaml.YAMLError as err:
        raise LoadError(f"{source} is not valid YAML: {_short_yaml_error(err)}") from err
    except RecursionError as err:  # only without libyaml: the pure-Python composer recurses per level
        raise LoadError(f"{source} is nested more than {max_depth} levels deep (the limit)") from err
    finally:
        loader.dispose()
    return docs, used


def _short_yaml_error(err: yaml.YAMLError) -> str:
    """PyYAML's message on one line, without the quoted snippet of the input."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{err.problem or err.context or 'error'}{where}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__

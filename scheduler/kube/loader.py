"""Reading Kubernetes objects from YAML files: multi-document streams and `kind: List`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class LoadError(ValueError):
    pass


def flatten(docs: Iterable[Any], source: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise LoadError(f"{source}: document {i + 1} is not a Kubernetes object (got {type(doc).__name__})")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            out.extend(flatten(doc.get("items") or [], source))
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

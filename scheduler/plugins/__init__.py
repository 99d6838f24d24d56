"""Built-in plugins; importing this package registers each under its name (framework/registry.py)."""

from scheduler.plugins import (
    interpod,
    nodeorder,
    nodepreference,
    ports,
    predicates,
    priority,
    proportion,
    spread,
    volumes,
)

__all__ = [
    "interpod",
    "nodeorder",
    "nodepreference",
    "ports",
    "predicates",
    "priority",
    "proportion",
    "spread",
    "volumes",
]

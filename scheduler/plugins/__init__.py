"""Built-in plugins; importing this package registers each under its name (framework/registry.py)."""

from scheduler.plugins import nodeorder, predicates, priority, proportion

__all__ = ["nodeorder", "predicates", "priority", "proportion"]

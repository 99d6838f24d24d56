"""Built-in actions; importing this package registers each under its name (framework/registry.py)."""

from scheduler.actions import allocate

__all__ = ["allocate"]

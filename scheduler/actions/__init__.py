"""Built-in actions; importing this package registers each under its name (framework/registry.py)."""

from scheduler.actions import allocate, consolidate, preempt, reclaim, stalegangeviction

__all__ = ["allocate", "consolidate", "preempt", "reclaim", "stalegangeviction"]

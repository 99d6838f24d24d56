"""Actions and plugins by name. The configuration names them; modules register themselves on import.

The framework never imports `actions/` or `plugins/`: it finds the built-in ones by package name
(`BUILTIN_PACKAGES`, imported with importlib on first lookup), the way entry points work, so the
dependency stays one way (actions and plugins import the framework, never the reverse)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from scheduler.framework.plugin import Plugin
    from scheduler.framework.session import Session

ActionFn = Callable[["Session"], None]
PluginFactory = Callable[[], "Plugin"]
BUILTIN_PACKAGES = ("scheduler.plugins", "scheduler.actions")

F = TypeVar("F", bound=ActionFn)
P = TypeVar("P", bound=PluginFactory)


@dataclass(slots=True)
class Registry:
    actions: dict[str, ActionFn] = field(default_factory=dict)
    plugins: dict[str, PluginFactory] = field(default_factory=dict)
    loaded: bool = False

    def load(self) -> None:
        if not self.loaded:
            self.loaded = True
            for package in BUILTIN_PACKAGES:
                importlib.import_module(package)

    def action(self, name: str) -> ActionFn:
        self.load()
        fn = self.actions.get(name)
        if fn is None:
            raise KeyError(f"unknown action {name!r}; known actions: {', '.join(sorted(self.actions))}")
        return fn

    def plugin(self, name: str) -> PluginFactory:
        self.load()
        factory = self.plugins.get(name)
        if factory is None:
            raise KeyError(f"unknown plugin {name!r}; known plugins: {', '.join(sorted(self.plugins))}")
        return factory


REGISTRY = Registry()  # filled once, at import of the built-in packages; read-only after that


def _register(table: dict[str, Any], kind: str, name: str, thing: object) -> None:
    if name in table and table[name] is not thing:
        raise ValueError(f"{kind} {name!r} registered twice")
    table[name] = thing


def action(name: str) -> Callable[[F], F]:
    """Register an action under the name the configuration's `actions` list uses."""

    def register(fn: F) -> F:
        _register(REGISTRY.actions, "action", name, fn)
        return fn

    return register


def plugin(name: str) -> Callable[[P], P]:
    """Register a plugin class (or factory) under the name the configuration's `plugins` list uses."""

    def register(factory: P) -> P:
        _register(REGISTRY.plugins, "plugin", name, factory)
        return factory

    return register

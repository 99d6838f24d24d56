"""nodeorder plugin (being extracted from the session)."""

from __future__ import annotations

from scheduler.framework.plugin import Plugin
from scheduler.framework.registry import plugin


@plugin("nodeorder")
class Nodeorder(Plugin):
    name = "nodeorder"

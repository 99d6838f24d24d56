"""The backend's pause of the cyclic collector while a list is applied (backends/kubernetes.py)."""

from __future__ import annotations

import gc

from scheduler.backends.kubernetes import CollectorPause, KubeBackend
from scheduler.kube.client import KubeClient


def _node(name: str) -> dict[str, object]:
    return {"kind": "Node", "metadata": {"name": name}, "status": {"allocatable": {"cpu": "1"}}}


def test_off_from_the_first_page_to_the_last_and_what_was_listed_is_frozen():
    assert gc.isenabled()
    b = KubeBackend(KubeClient("http://127.0.0.1:9"), "kai-scheduler")  # never connects
    frozen = gc.get_freeze_count()
    try:
        b.events.put(("LIST", "Node", []))
        b.events.put(("PAGE", "Node", [_node("a")]))
        b.drain()
        assert not gc.isenabled()  # between pages
        b.events.put(("LIST", "Pod", []))
        b.events.put(("SYNC", "Pod", []))
        b.drain()
        assert not gc.isenabled()  # another kind's list ended; the nodes' is still open
        b.events.put(("SYNC", "Node", [_node("b")]))
        b.drain()
        assert gc.isenabled() and gc.get_freeze_count() > frozen
        assert sorted(b.state.snapshot().nodes) == ["a", "b"]
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_list_that_starts_over_ends_the_pause_without_freezing():
    b = KubeBackend(KubeClient("http://127.0.0.1:9"), "kai-scheduler")
    frozen = gc.get_freeze_count()
    try:
        b.events.put(("LIST", "Node", []))
        b.events.put(("PAGE", "Node", [_node("a")]))
        b.drain()
        assert not gc.isenabled()
        b.events.put(("LIST", "Node", []))  # the last attempt broke off
        b.drain()
        assert gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()


def test_a_collector_that_was_off_stays_off():
    pause = CollectorPause()
    gc.disable()
    try:
        pause.hold("Pod")
        pause.release("Pod", done=True)
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()

import pytest

from scheduler.api.queue import Queue, QueueResource
from scheduler.api.reasons import Reason
from scheduler.framework.queues import QueueTree
from scheduler.plugins.proportion import compute_fair_share, is_under_fair_share, queue_order_key

GPU = "nvidia.com/gpu"


def q(name, parent="", quota=0, limit=-1, weight=1.0, priority=100):
    return Queue(name, parent, priority, ((GPU, QueueResource(quota, limit, weight)),))


def tree(*queues, requested, total):
    t = QueueTree({x.name: x for x in queues})
    for name, req in requested.items():
        t.nodes[name].requested[GPU] = float(req)
    compute_fair_share(t, {GPU: float(total)})
    return t


def test_deserved_then_weights_water_fill():
    t = tree(q("a", quota=2, weight=1), q("b", quota=2, weight=3), requested={"a": 100, "b": 100}, total=18)
    # both get their quota (2 each), the remaining 14 splits 1:3
    assert t.nodes["a"].fair_share[GPU] == pytest.approx(2 + 3.5)
    assert t.nodes["b"].fair_share[GPU] == pytest.approx(2 + 10.5)


def test_water_filling_gives_unused_share_to_the_others():
    t = tree(q("a", weight=1), q("b", weight=1), requested={"a": 2, "b": 100}, total=10)
    assert t.nodes["a"].fair_share[GPU] == pytest.approx(2)
    assert t.nodes["b"].fair_share[GPU] == pytest.approx(8)


def test_priority_is_served_before_weight():
    t = tree(q("hi", priority=200), q("lo", weight=100), requested={"hi": 6, "lo": 100}, total=8)
    assert t.nodes["hi"].fair_share[GPU] == pytest.approx(6)
    assert t.nodes["lo"].fair_share[GPU] == pytest.approx(2)


def test_limit_caps_the_share():
    t = tree(q("a", limit=3), q("b"), requested={"a": 100, "b": 100}, total=10)
    assert t.nodes["a"].fair_share[GPU] == pytest.approx(3)
    assert t.nodes["b"].fair_share[GPU] == pytest.approx(7)


def test_children_divide_the_parents_share():
    t = tree(
        q("p1", weight=1),
        q("p2", weight=1),
        q("c1", "p1", weight=1),
        q("c2", "p1", weight=3),
        q("c3", "p2"),
        requested={"c1": 100, "c2": 100, "c3": 100},
        total=16,
    )
    assert t.nodes["p1"].fair_share[GPU] == pytest.approx(8)
    assert t.nodes["c1"].fair_share[GPU] == pytest.approx(2)
    assert t.nodes["c2"].fair_share[GPU] == pytest.approx(6)


def test_queue_problems():
    t = QueueTree({"a": q("a", "b"), "b": q("b", "a"), "c": q("c", "missing"), "d": q("d"), "e": q("e", "d")})
    assert t.check_leaf("a")[0] is Reason.QUEUE_CYCLE
    assert t.check_leaf("c")[0] is Reason.QUEUE_DOES_NOT_EXIST
    assert t.check_leaf("d")[0] is Reason.QUEUE_NOT_LEAF
    assert t.check_leaf("nope")[0] is Reason.QUEUE_DOES_NOT_EXIST
    assert t.check_leaf("e") is None


def test_order_prefers_queues_under_their_share():
    t = tree(q("a"), q("b"), requested={"a": 10, "b": 10}, total=10)
    t.nodes["a"].allocated[GPU] = 5.0  # exactly its share
    assert not is_under_fair_share(t.nodes["a"])
    assert is_under_fair_share(t.nodes["b"])
    assert queue_order_key(t.nodes["b"]) < queue_order_key(t.nodes["a"])

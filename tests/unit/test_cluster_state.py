from scheduler.api.resources import Resources
from scheduler.cache.cluster_state import ClusterState


def node(name, gpu=8):
    return {
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"allocatable": {"cpu": "8", "nvidia.com/gpu": str(gpu)}},
    }


def pod(name, node_name="", sched="kai-scheduler", phase="Pending", group=""):
    meta = {"name": name, "namespace": "ns"}
    if group:
        meta["annotations"] = {"pod-group-name": group}
    spec = {"schedulerName": sched, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": phase}}


def test_usage_follows_pod_lifecycle():
    s = ClusterState()
    s.apply_object(node("n1"))
    s.apply_object(pod("a", group="g"))
    snap = s.snapshot()
    assert list(snap.pending) == ["ns/a"]
    assert snap.node_used["n1"] == Resources()
    s.apply_object(pod("a", "n1", group="g"))  # bound
    s.apply_object(pod("other", "n1", sched="default-scheduler"))  # another scheduler's pod counts too
    snap = s.snapshot()
    assert not snap.pending
    assert snap.node_used["n1"].get("cpu") == 2000
    assert snap.node_pods["n1"] == 2
    assert [p.name for p in snap.members["ns/g"]] == ["a"]
    s.apply_object(pod("a", "n1", phase="Succeeded", group="g"))  # terminal frees capacity
    s.apply_object(pod("other", "n1", sched="default-scheduler"), deleted=True)
    snap = s.snapshot()
    assert snap.node_used["n1"].is_zero()
    assert "ns/g" not in snap.members


def test_snapshot_is_isolated_from_later_events():
    s = ClusterState()
    s.apply_object(node("n1"))
    before = s.snapshot()
    s.apply_object(pod("a"))
    s.apply_object(node("n2"))
    assert not before.pending and list(before.nodes) == ["n1"]
    after = s.snapshot()
    assert list(after.pending) == ["ns/a"] and sorted(after.nodes) == ["n1", "n2"]

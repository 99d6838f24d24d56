from scheduler.api.resources import Resources
from scheduler.kube.convert import node_from_k8s, pod_from_k8s


def _pod(containers, init=(), overhead=None):
    spec = {"schedulerName": "kai-scheduler", "containers": list(containers), "initContainers": list(init)}
    if overhead:
        spec["overhead"] = overhead
    return pod_from_k8s({"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})


def _c(requests=None, limits=None, **extra):
    return {"name": "c", "resources": {"requests": requests or {}, "limits": limits or {}}, **extra}


def test_request_is_max_of_sum_and_largest_init_plus_overhead():
    pod = _pod([_c({"cpu": "1"}), _c({"cpu": "500m", "memory": "1Gi"})], [_c({"cpu": "2"})], {"cpu": "100m"})
    assert pod.request == Resources.of({"cpu": 2100, "memory": 2**30, "pods": 1})


def test_limits_stand_in_for_missing_requests():
    pod = _pod([_c({"cpu": "1"}, {"cpu": "4", "nvidia.com/gpu": "2"})])
    assert pod.request.get("nvidia.com/gpu") == 2
    assert pod.request.get("cpu") == 1000


def test_sidecar_init_containers_add_to_the_app():
    pod = _pod([_c({"cpu": "1"})], [_c({"cpu": "500m"}, restartPolicy="Always"), _c({"cpu": "1"})])
    assert pod.request.get("cpu") == 1500


def test_malformed_quantity_is_a_problem_not_an_exception():
    pod = _pod([_c({"cpu": "5x"})])
    assert pod.problems and pod.problems[0][0] == "InvalidPod"
    assert "5x" in pod.problems[0][1]


def test_node_defaults():
    node = node_from_k8s({"kind": "Node", "metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "2"}}})
    assert node.allocatable.get("pods") == 110
    assert node.ready and node.label("kubernetes.io/hostname") == "n"
    not_ready = node_from_k8s(
        {"kind": "Node", "metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    )
    assert not not_ready.ready

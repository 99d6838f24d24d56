"""LocalCluster itself: readiness, restart_apiserver(), startup errors, cleanup."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from kubernetes import client

from tests.kubecluster import ClusterError, LocalCluster

pytestmark = pytest.mark.integration


def test_ready_and_version(kube_cluster: LocalCluster, kube_api: Any) -> None:
    status, body = kube_cluster.request("/readyz")
    assert status == 200, body
    info = client.VersionApi(kube_api).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")


def test_admin_is_cluster_admin(kube_api: Any) -> None:
    review = client.AuthorizationV1Api(kube_api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(verb="*", resource="*", group="*")
            )
        )
    )
    assert review.status.allowed


def test_restart_apiserver_keeps_data(kube_cluster: LocalCluster, kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survivor"), data={"k": "v"})
    )
    port = kube_cluster.apiserver_port
    t0 = time.monotonic()
    kube_cluster.restart_apiserver()
    print(f"kube-apiserver restart took {time.monotonic() - t0:.1f}s")
    assert kube_cluster.apiserver_port == port
    # The same client (same kubeconfig, token and CA) keeps working.
    assert core.read_namespaced_config_map("survivor", namespace).data == {"k": "v"}


def test_startup_failure_reports_log_tail(kube_cluster: LocalCluster) -> None:
    bad = LocalCluster(kube_cluster.bin_dir, extra_apiserver_args=["--no-such-flag=1"], startup_timeout=30)
    with pytest.raises(ClusterError) as info:
        bad.start()
    msg = str(info.value)
    assert "kube-apiserver exited" in msg and "no-such-flag" in msg, msg
    assert bad.workdir is not None and not bad.workdir.exists(), "a failed start removes its temp dir"
    assert not bad._procs, "a failed start kills what it started"


def test_stop_kills_everything_and_removes_workdir(kube_cluster: LocalCluster) -> None:
    with LocalCluster(kube_cluster.bin_dir) as c:
        pids = [p.popen.pid for p in c._procs.values()]
        workdir = c.workdir
        assert c.request("/readyz")[0] == 200
    assert workdir is not None and not workdir.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_kwok_runs_bound_pods(kube_cluster: LocalCluster, kube_api: Any, namespace: str) -> None:
    """kwok keeps fake nodes Ready and turns pods bound to them Running (no kubelet needed)."""
    core = client.CoreV1Api(kube_api)
    node = f"kwok-{namespace[-8:]}"
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(
                name=node, annotations={LocalCluster.KWOK_NODE_ANNOTATION: "fake"}, labels={"type": "kwok"}
            ),
            status=client.V1NodeStatus(capacity={"cpu": "4", "memory": "8Gi", "pods": "110"}),
        )
    )
    try:
        kwok = kube_cluster.start_kwok()
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="p"),
            spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="x")]),
        )
        core.create_namespaced_pod(namespace, pod)
        deadline = time.monotonic() + 30
        phase = ready = None
        while time.monotonic() < deadline:
            phase = core.read_namespaced_pod("p", namespace).status.phase
            conds = {c.type: c.status for c in core.read_node(node).status.conditions or []}
            ready = conds.get("Ready")
            if (phase == "Running" and ready == "True") or kwok.poll() is not None:
                break
            time.sleep(0.2)
        assert (phase, ready) == ("Running", "True"), kube_cluster.logs("kwok")
    finally:
        kube_cluster.kill("kwok")
        core.delete_namespaced_pod("p", namespace, grace_period_seconds=0)
        core.delete_node(node)

"""Fixtures for tests against a real kube-apiserver + etcd (tests/kubecluster.py).

- ``kube_cluster`` (session): one LocalCluster for the whole run. If the binaries are not built:
  skipped with a hint to run e2e/testbin/build.sh, or failed when CI=true.
- ``kube_api`` (session): a ``kubernetes.client.ApiClient`` with the admin kubeconfig.
- ``kai_crds`` (session): deploy/crds applied and Established.
- ``namespace`` (function): a fresh namespace; its objects are deleted afterwards (there is no
  namespace controller, so deleted namespaces would stay Terminating: namespaces are left alone).

The cluster is stopped by a session finalizer and, failing that, by an atexit hook in kubecluster.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.kubecluster import (  # noqa: E402
    CONTROL_PLANE_BINARIES,
    LocalCluster,
    apply_crds,
    missing_binaries,
    testbin_dir,
)

_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs the local kube-apiserver and etcd (built by e2e/testbin/build.sh)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _unavailable(msg: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    try:
        bin_dir = testbin_dir()
    except Exception as e:  # bindir.sh failed: no bash, broken checkout
        _unavailable(f"cannot locate the testbin cache ({e}): run e2e/testbin/build.sh")
        raise
    missing = missing_binaries(bin_dir, CONTROL_PLANE_BINARIES)
    if missing:
        _unavailable(
            f"{', '.join(missing)} not built in {bin_dir}: run e2e/testbin/build.sh "
            "(a cold build takes tens of minutes; later runs reuse the cache)"
        )
    cluster = LocalCluster(bin_dir)
    request.addfinalizer(cluster.stop)
    cluster.start()
    yield cluster


@pytest.fixture(scope="session")
def kube_api(kube_cluster: LocalCluster) -> Iterator[Any]:
    api = kube_cluster.api_client()
    yield api
    api.close()


@pytest.fixture(scope="session")
def kai_crds(kube_api: Any) -> list[str]:
    return apply_crds(kube_api)


def _dns_label(text: str, limit: int) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "t"


def cleanup_namespace(api: Any, ns: str) -> None:
    """Delete the objects tests usually create in ``ns`` (pods with grace period 0)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    batch = client.BatchV1Api(api)
    custom = client.CustomObjectsApi(api)
    calls = [
        lambda: batch.delete_collection_namespaced_job(ns, propagation_policy="Background"),
        lambda: apps.delete_collection_namespaced_deployment(ns),
        lambda: apps.delete_collection_namespaced_replica_set(ns),
        lambda: apps.delete_collection_namespaced_stateful_set(ns),
        lambda: core.delete_collection_namespaced_pod(ns, grace_period_seconds=0),
        lambda: custom.delete_collection_namespaced_custom_object("scheduling.run.ai", "v2alpha2", ns, "podgroups"),
        lambda: core.delete_collection_namespaced_config_map(ns),
        lambda: core.delete_collection_namespaced_event(ns),
    ]
    for call in calls:
        try:
            call()
        except ApiException as e:
            if e.status != 404:  # 404: that kind (e.g. the PodGroup CRD) is not installed
                raise
    for svc in core.list_namespaced_service(ns).items:
        try:
            core.delete_namespaced_service(svc.metadata.name, ns)
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def namespace(kube_api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes import client

    name = f"{_dns_label(request.node.name, 48)}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube_api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    request.addfinalizer(lambda: cleanup_namespace(kube_api, name))
    yield name

"""End to end, what only a real kubelet shows (kind provider): a gang's pods all reach Running in
containers, and when the kubelet sees one member's container fail (restartPolicy Never: the pod is
Failed), the gang runs below its minimum and is evicted whole after the stale-gang grace, as the README
says (Take-back: stalegangeviction)."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.cluster import Provider
from e2e.conftest import E2E

pytestmark = pytest.mark.e2e

GRACE = 60  # staleGangGraceSeconds: the chart's default, which e2e/values-e2e.yaml keeps


def _pod(e2e: E2E, name: str, image: str, args: list[str]) -> None:
    spec = e2e.pod_spec(gpu=1)
    spec["restartPolicy"] = "Never"
    (c,) = spec["containers"]
    c["image"], c["args"], c["imagePullPolicy"] = image, args, "Never"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"pod-group-name": "gang"}},
        "spec": spec,
    }
    e2e.api.req("POST", f"/api/v1/namespaces/{e2e.ns}/pods", body=body)


def _state(pod: dict[str, Any]) -> dict[str, Any]:
    (cs,) = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(cs.get("state") or {})


def test_gang_runs_in_containers_and_a_failed_member_evicts_it_whole(provider: Provider, e2e: E2E) -> None:
    if not provider.workload_image:
        pytest.skip(f"{provider.name}: no kubelet runs containers here (needs KAISCHED_E2E_WORKLOAD_IMAGE on kind)")
    e2e.nodes(("za", "r1", 2), ("za", "r2", 2))
    e2e.podgroup("gang", 3)
    img = provider.workload_image
    _pod(e2e, "m0", img, ["sleep"])
    _pod(e2e, "m1", img, ["sleep"])
    _pod(e2e, "m2", img, ["fail", "20", "3"])

    def all_running() -> list[dict[str, Any]] | None:
        pods = e2e.pods()
        ok = [p for p in pods if "running" in _state(p)]
        return ok if len(ok) == 3 and len(pods) == 3 else None

    running = e2e.wait(all_running, "the gang's 3 containers running", timeout=120)
    assert len({p["spec"]["nodeName"] for p in running}) == 2, "3 one-GPU pods on two 2-GPU nodes"

    def failed() -> dict[str, Any] | None:
        for p in e2e.pods():
            if p["metadata"]["name"] == "m2" and (p.get("status") or {}).get("phase") == "Failed":
                return p
        return None

    m2 = e2e.wait(failed, "the kubelet to mark m2 Failed when its container exits", timeout=90)
    term = ((m2["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("terminated") or {}
    assert term.get("exitCode") == 3, f"m2 failed with {term}"

    def evicted() -> bool:
        left = {p["metadata"]["name"] for p in e2e.pods()} & {"m0", "m1"}
        return not left and bool(e2e.events("StaleGangEvicted"))

    e2e.wait(evicted, "the gang below its minimum to be evicted whole (m0 and m1 gone)", timeout=GRACE + 90)

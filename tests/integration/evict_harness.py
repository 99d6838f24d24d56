"""Runs the Kubernetes committer once, outside the daemon, on one GangCommit given as JSON: the crash tests
(tests/integration/test_evictions.py) start it with KAISCHED_CRASH_AT set, so it dies at that step of an
eviction plan, and a daemon started afterwards must finish the plan.

    python -m tests.integration.evict_harness <kubeconfig> '<{"job": ..., "has_pod_group": ..., ...}>'

Prints the CommitOutcome as one JSON line (when it lives that long). With KAISCHED_HARNESS_FENCE=<s> its
writes are fenced as a leader's are, by a lease renewed once, just before the commit, and never again."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from scheduler.backends.kubernetes import KubeBackend
from scheduler.daemon.status import StatusWriter
from scheduler.framework.record import GangCommit
from scheduler.kube.client import KubeClient
from scheduler.kube.fence import Fence

AGENT = "kaisched-evict-harness"


def main(kubeconfig: str, spec: str) -> int:
    data = json.loads(spec)
    commit = GangCommit(
        data["job"],
        bool(data["has_pod_group"]),
        tuple(map(tuple, data.get("binds", []))),
        tuple(map(tuple, data.get("evictions", []))),
        tuple(map(tuple, data.get("pipelined", []))),
        tuple(map(tuple, data.get("claims", []))),
    )
    client = KubeClient.from_kubeconfig(kubeconfig)
    client.headers["User-Agent"] = AGENT  # the fault proxy tells the harness's requests from the daemon's
    backend = KubeBackend(client, "kai-scheduler", identity="evict-harness")
    status = StatusWriter(client, "kai-scheduler", "evict-harness")
    backend.committer.event = status.event
    backend.start()
    if not backend.wait_synced(60):
        print("cache not synced", file=sys.stderr)
        return 2
    fence_s = os.environ.get("KAISCHED_HARNESS_FENCE")
    if fence_s:
        client.fence = Fence(float(fence_s))
        client.fence.renewed(time.monotonic())
    out = backend.commit([commit])
    status.flush()
    print(json.dumps(dataclasses.asdict(out)), flush=True)
    backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""Nothing written without the lease, nothing lost in a crash: on the real API server, through the fault
proxy, with the daemon as a process (SIGSTOP/SIGCONT, and a crash at each step of a rollback)."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from scheduler.binder.crash import ENV, ROLLBACK_POINTS
from scheduler.kube.client import KubeClient
from scheduler.kube.fence import Fence, FencedError
from tests.faultproxy import FaultProxy, Rule
from tests.integration import test_commit_faults as faults
from tests.integration.test_commit_faults import BIND, Watcher, intent_of, invariants, setup_gang
from tests.integration.test_daemon import Daemons, Kube, uniq, wait_for

WRITES = ("POST", "PUT", "PATCH", "DELETE")

# the fault tests' fixtures: the proxy, the test's namespace, daemons behind the proxy
proxy, kube, daemon = faults.proxy, faults.kube, faults.daemon


def test_fence_refuses_writes_locally_and_lets_reads_and_the_lease_through() -> None:
    client = KubeClient("http://127.0.0.1:9")  # nothing listens: a request that is sent fails differently
    client.fence = fence = Fence(renew_deadline=5.0)
    with pytest.raises(FencedError):
        client.request("POST", "/api/v1/namespaces/x/pods", body={})
    fence.renewed(time.monotonic())
    assert fence.open()
    with pytest.raises(Exception) as sent:
        client.request("DELETE", "/api/v1/namespaces/x/pods/p")
    assert not isinstance(sent.value, FencedError)  # open fence: it was sent (and found nobody)
    fence.renewed(time.monotonic() - 10)  # an older renewal never moves the fence back
    assert fence.open()
    fence.revoke()
    with pytest.raises(FencedError):
        client.request("PATCH", "/apis/x")
    with pytest.raises(Exception) as read:
        client.request("GET", "/api/v1/pods")
    assert not isinstance(read.value, FencedError)
    with pytest.raises(Exception) as lease:
        client.request("PUT", "/apis/coordination.k8s.io/v1/leases/x", fenced=False)
    assert not isinstance(lease.value, FencedError)
    assert fence.refused == 2


def test_deposed_leader_writes_nothing(kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    """Leader L is stopped (SIGSTOP) mid-commit with two binds held at the proxy; standby B takes the lease
    and its recovery completes L's commit. When L resumes and its held binds fail, L must not roll back,
    patch or post anything: every write it attempts is refused before it leaves the process."""
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    lease = uniq("lease")
    base = (
        "--leader-elect",
        "--leader-elect-namespace",
        "default",
        "--leader-elect-name",
        lease,
        "--lease-duration",
        "6",
    )
    hold = threading.Event()
    proxy.add(Rule("POST", BIND, "status", status=500, hold=hold, nth=(3,), delay=120))
    leader = daemon.start(*base, "--identity", "replica-l")
    wait_for(
        lambda: sum(1 for n in names if kube.pods()[n]["spec"].get("nodeName")) == 3 or None,
        "three members bound (the anchor first), one held at the proxy",
        daemon,
    )
    assert intent_of(kube, "g"), "L's commit record is on the API server"
    uids = {n: p["metadata"]["uid"] for n, p in kube.pods().items() if n in names}
    leader.send(signal.SIGSTOP)
    daemon.start(*base, "--identity", "replica-b")
    wait_for(lambda: kube.all_bound(names), "B's recovery completed L's commit", daemon, timeout=60)
    wait_for(lambda: intent_of(kube, "g") is None or None, "B cleared the intent", daemon)
    resumed = time.monotonic()
    lease_obj = kube.req("GET", f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{lease}")
    assert lease_obj["spec"]["holderIdentity"] == "replica-b"  # so L's lease expired (its fence long before)
    # L's held binds fail the moment it wakes; its lease check is slowed down so that, fencing aside, it
    # would still believe it leads while it handles the failure (the window a deposed leader has)
    proxy.add(Rule("GET", r"/leases/", "delay", delay=4, agent="replica-l"))
    hold.set()
    leader.send(signal.SIGCONT)
    time.sleep(8)  # L wakes up, sees its binds fail, tries to roll back, then notices it lost the lease
    writes = [(m, p) for t, m, p, ua in proxy.received if "replica-l" in ua and m in WRITES and t > resumed]
    assert not writes, f"the deposed leader wrote after it lost the lease: {writes}"
    pods = kube.pods()
    assert {n: pods[n]["metadata"]["uid"] for n in names} == uids, "members deleted or re-created"
    assert kube.all_bound(names)
    invariants(kube, w, {"g": (names, 4)}, nodes)
    assert "lost the lease" in leader.tail() or "held by replica-b" in leader.tail() or not leader.alive()


@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_crash_at_each_rollback_step_loses_no_pod(point: str, kube: Kube, daemon: Daemons, proxy: FaultProxy) -> None:
    """A gang of unowned pods (no controller would re-create them) rolls back after a failed bind; the
    daemon dies at one step of the rollback. The next daemon finishes the rollback from the record (on the
    gang's PodGroup: the anchor member that carried the commit's record is one the rollback deletes) and then
    binds the gang whole: no pod is ever lost, none bound twice."""
    names, nodes = setup_gang(kube)
    w = Watcher(kube)
    proxy.add(Rule("POST", BIND, "status", status=500, nth=(3,)))
    first = daemon.start(env={ENV: point})
    wait_for(lambda: not first.alive() or None, f"the daemon died at {point}", daemon, timeout=60)
    text = intent_of(kube, "g")
    assert text, "the rollback record is on the API server"
    record = json.loads(text)
    # the anchor's bind, then three together, the third of all refused: three members to return
    assert len(record["rollback"]) == 3 and all(v["recreate"] for v in record["rollback"].values())
    proxy.clear()
    daemon.start()
    wait_for(lambda: kube.all_bound(names), "recovery finished the rollback and the gang bound whole", daemon)
    wait_for(lambda: intent_of(kube, "g") is None or None, "intent cleared", daemon)
    invariants(kube, w, {"g": (names, 4)}, nodes)
    assert "rollback of commit" in daemon.tail()

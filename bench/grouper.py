"""What grouping costs (issue 13): 5,000 pods of 500 Jobs arriving at once, grouped by the daemon, against
the same gangs with hand-written PodGroups, in one run.

Starts a LocalCluster with the CRDs and 500 Nodes (bench/daemon.py's: 5 zones x 10 racks x 10 nodes, 8 GPUs
each), then, each in a fresh namespace, with the backlog created before the daemon starts:

  (a) hand-written: 500 PodGroups (minMember 10) and 5,000 pods (cpu 100m each) naming them (pod-group-name);
  (b) grouped: 500 Indexed Jobs (parallelism = completions = 10; no controller runs, so the bench makes
      their pods) and 5,000 pods owned by them (ownerReferences, no annotation): the daemon has each Job
      from its watch of Jobs (or reads it), creates its PodGroup (minMember 10) and annotates the pods
      before scheduling them.

Prints for both: daemon start -> all bound, pods/s, and (b) - (a) per pod: what grouping adds. Checks every
pod bound, every gang whole, every PodGroup of (b) made by the grouper with minMember 10.

    python bench/grouper.py [--jobs 500 --size 10 --qps 200 --burst 400]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from daemon import (  # noqa: E402
    KAI_NS,
    bench_setup,
    create_namespace,
    create_podgroups,
    daemon_args,
    gang_check,
    kaisched_argv,
    list_all,
    make_nodes,
    pod_body,
    repo_env,
    run_backlog,
    throughput,
)

from scheduler.kube.client import KubeClient  # noqa: E402
from tests.kubecluster import LocalCluster  # noqa: E402

GROUPED_NS = "bench-grouped"


def create_jobs(client: KubeClient, pool: ThreadPoolExecutor, ns: str, n: int, size: int) -> list[dict[str, Any]]:
    def one(i: int) -> dict[str, Any]:
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"job-{i:03d}", "namespace": ns},
            "spec": {
                "parallelism": size,
                "completions": size,
                "completionMode": "Indexed",
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                    }
                },
            },
        }
        return client.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body=body)

    return list(pool.map(one, range(n)))


def owned_pod(ns: str, job: dict[str, Any], index: int) -> dict[str, Any]:
    body = pod_body(ns, f"{job['metadata']['name']}-{index}", "kai-scheduler", gpu=False)
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": job["metadata"]["uid"],
            "controller": True,
        }
    ]
    return body


def report(label: str, res: dict[str, Any], n: int, client: KubeClient, ns: str) -> float:
    total, rate, first, _ = throughput(res, n)
    pods = list_all(client, f"/api/v1/namespaces/{ns}/pods")
    full, none, partial = gang_check(pods)
    state = "all bound" if res["finished"] else "TIMEOUT"
    print(
        f"{label}: daemon start -> {state} {total:.2f}s ({len(res['bound'])}/{n} pods, {rate:.1f} pods/s; "
        f"first bind after {first:.2f}s); gangs whole {full}, unbound {none}, partial {len(partial)}",
        flush=True,
    )
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--size", type=int, default=10)
    daemon_args(ap, timeout=300.0)
    args = ap.parse_args()
    n = args.jobs * args.size
    with LocalCluster() as cluster:
        kubeconfig, client, pool = bench_setup(cluster, args.workers)
        try:
            make_nodes(client, pool)
            argv = kaisched_argv(kubeconfig, args.qps, args.burst, args.schedule_period)

            create_namespace(client, KAI_NS)
            names = [f"pg-{g:03d}" for g in range(args.jobs)]
            create_podgroups(client, pool, KAI_NS, names, args.size)
            bodies = [
                pod_body(KAI_NS, f"{g}-{m}", "kai-scheduler", gpu=False, group=g)
                for g in names
                for m in range(args.size)
            ]
            hand = run_backlog(cluster, client, pool, bodies, "kaisched", argv, repo_env(), args.timeout)
            t_hand = report("(a) hand-written PodGroups", hand, n, client, KAI_NS)
            client.request("DELETE", f"/api/v1/namespaces/{KAI_NS}/pods", params={"gracePeriodSeconds": 0}, timeout=120)

            create_namespace(client, GROUPED_NS)
            jobs = create_jobs(client, pool, GROUPED_NS, args.jobs, args.size)
            bodies = [owned_pod(GROUPED_NS, job, i) for job in jobs for i in range(args.size)]
            while list_all(client, f"/api/v1/namespaces/{KAI_NS}/pods"):  # the same free cluster for (b)
                time.sleep(0.5)
            grouped = run_backlog(cluster, client, pool, bodies, "kaisched-grouped", argv, repo_env(), args.timeout)
            t_grouped = report("(b) grouped from Jobs", grouped, n, client, GROUPED_NS)
            groups = list_all(client, f"/apis/scheduling.run.ai/v2alpha2/namespaces/{GROUPED_NS}/podgroups")
            ours = [g for g in groups if (g["metadata"].get("annotations") or {}).get("kai.scheduler/grouped-by")]
            sizes = {g["spec"].get("minMember") for g in ours}
            print(f"(b) PodGroups made by the grouper: {len(ours)} (minMember {sorted(sizes)})", flush=True)
            extra = t_grouped - t_hand
            print(
                f"grouping adds {extra:.2f}s to start->all bound: {1000 * extra / n:.2f} ms per pod "
                f"(ratio {t_grouped / t_hand:.2f}); client QPS {args.qps:g} (one patch per pod, one create per Job; "
                f"the Jobs come from the grouper's watch, a GET only for one not arrived yet)",
                flush=True,
            )
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

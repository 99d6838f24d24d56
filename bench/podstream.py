"""A realistic stream of pod watch events, as the API server sends them (bench/ingest.py replays it).

Every pod goes through what a Job's pod sees on a busy cluster: created (Pending, ours), bound (spec.nodeName
and the PodScheduled condition), the kubelet's first status (startTime, ContainerCreating), Running, then
status-only updates that change nothing the scheduler reads (readiness flaps, probe and restart counts in
containerStatuses, condition transition times), a graceful delete (deletionTimestamp), Succeeded, and
DELETED. Objects carry what real ones carry: managedFields for every writer, the service-account volume,
the default not-ready/unreachable tolerations, env, probes and mounts. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

NAMESPACE = "team-a"
SCHEDULER = "kai-scheduler"
NODES = 1000


def _ts(second: int) -> str:
    return f"2026-12-07T{(second // 3600) % 24:02d}:{(second // 60) % 60:02d}:{second % 60:02d}Z"


def _managed(manager: str, operation: str, t: str, subresource: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": t,
        "fieldsType": "FieldsV1",
    }
    if manager == "kube-controller-manager":
        out["fieldsV1"] = {
            "f:metadata": {
                "f:finalizers": {".": {}, 'v:"batch.kubernetes.io/job-tracking"': {}},
                "f:generateName": {},
                "f:labels": {
                    ".": {},
                    "f:batch.kubernetes.io/controller-uid": {},
                    "f:batch.kubernetes.io/job-name": {},
                    "f:controller-uid": {},
                    "f:job-name": {},
                },
                "f:ownerReferences": {".": {}, 'k:{"uid":"3f1c"}': {}},
            },
            "f:spec": {
                "f:containers": {
                    'k:{"name":"worker"}': {
                        ".": {},
                        "f:command": {},
                        "f:env": {".": {}, 'k:{"name":"RANK"}': {".": {}, "f:name": {}, "f:value": {}}},
                        "f:image": {},
                        "f:imagePullPolicy": {},
                        "f:name": {},
                        "f:resources": {".": {}, "f:limits": {".": {}, "f:nvidia.com/gpu": {}}, "f:requests": {}},
                        "f:terminationMessagePath": {},
                        "f:terminationMessagePolicy": {},
                    }
                },
                "f:dnsPolicy": {},
                "f:enableServiceLinks": {},
                "f:restartPolicy": {},
                "f:schedulerName": {},
                "f:securityContext": {},
                "f:terminationGracePeriodSeconds": {},
            },
        }
    else:
        out["fieldsV1"] = {
            "f:status": {
                "f:conditions": {
                    'k:{"type":"ContainersReady"}': {".": {}, "f:lastProbeTime": {}, "f:status": {}, "f:type": {}},
                    'k:{"type":"Initialized"}': {".": {}, "f:lastProbeTime": {}, "f:status": {}, "f:type": {}},
                    'k:{"type":"Ready"}': {".": {}, "f:lastProbeTime": {}, "f:status": {}, "f:type": {}},
                },
                "f:containerStatuses": {},
                "f:hostIP": {},
                "f:hostIPs": {},
                "f:phase": {},
                "f:podIP": {},
                "f:podIPs": {".": {}, 'k:{"ip":"10.244.1.7"}': {".": {}, "f:ip": {}}},
                "f:startTime": {},
            }
        }
    if subresource:
        out["subresource"] = subresource
    return out


def new_pod(i: int, job: int, t: int) -> dict[str, Any]:
    """A pending pod of a 8-pod gang (PodGroup job-<job>), the way the API server returns it after create."""
    name = f"job-{job:05d}-worker-{i % 8}-{i:06x}"
    created = _ts(t)
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": f"job-{job:05d}-worker-{i % 8}-",
            "namespace": NAMESPACE,
            "uid": f"0c9d{i:08x}-5b3e-4f0a-9a7e-{job:012x}",
            "resourceVersion": "0",
            "creationTimestamp": created,
            "labels": {
                "batch.kubernetes.io/controller-uid": f"3f1c{job:08x}",
                "batch.kubernetes.io/job-name": f"job-{job:05d}",
                "controller-uid": f"3f1c{job:08x}",
                "job-name": f"job-{job:05d}",
                "kai.scheduler/queue": "team-a",
                "app.kubernetes.io/name": "trainer",
            },
            "annotations": {"pod-group-name": f"job-{job:05d}", "kai.scheduler/topology": "default-topology"},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": f"job-{job:05d}",
                    "uid": f"3f1c{job:08x}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "managedFields": [_managed("kube-controller-manager", "Update", created)],
        },
        "spec": {
            "volumes": [
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                }
            ],
            "containers": [
                {
                    "name": "worker",
                    "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                    "command": ["torchrun", "--nnodes=8", "--nproc-per-node=1", "train.py"],
                    "env": [{"name": "RANK", "value": str(i % 8)}, {"name": "MASTER_PORT", "value": "29500"}],
                    "resources": {
                        "limits": {"nvidia.com/gpu": "1", "memory": "32Gi"},
                        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"},
                    },
                    "volumeMounts": [
                        {
                            "name": "kube-api-access-x7k2p",
                            "readOnly": True,
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        }
                    ],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                        "timeoutSeconds": 1,
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": SCHEDULER,
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def _conditions(t: str, ready: bool, scheduled: bool = True) -> list[dict[str, Any]]:
    why = {"reason": "ContainersNotReady", "message": "containers with unready status: [worker]"}
    flag = "True" if ready else "False"
    out = [
        {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": None, "lastTransitionTime": t},
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": t},
        {
            "type": "Ready",
            "status": flag,
            "lastProbeTime": None,
            "lastTransitionTime": t,
            **({} if ready else why),
        },
        {
            "type": "ContainersReady",
            "status": flag,
            "lastProbeTime": None,
            "lastTransitionTime": t,
        },
    ]
    if scheduled:
        out.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": t})
    return out


def _container_status(state: dict[str, Any], ready: bool, restarts: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "worker",
            "state": state,
            "lastState": {},
            "ready": ready,
            "restartCount": restarts,
            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
            "imageID": "nvcr.io/nvidia/pytorch@sha256:5e2b1c0f0d7c4e0a8d3b6f1e9a2c7d4b8e0f1a3c5d7e9b2a4c6e8f0a1b3c5d7e",
            "containerID": "containerd://8d0a5f3c1e7b9d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f",
            "started": ready,
            "volumeMounts": [
                {
                    "name": "kube-api-access-x7k2p",
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "readOnly": True,
                    "recursiveReadOnly": "Disabled",
                }
            ],
        }
    ]


def pod_lifecycle(i: int, job: int, t: int, heartbeats: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, object) for one pod's life, resourceVersion left for the stream to number."""
    pod = new_pod(i, job, t)
    yield "ADDED", pod
    node = f"node-{(job * 7 + i) % NODES:04d}"
    t1, t2 = _ts(t + 1), _ts(t + 3)
    pod = json.loads(json.dumps(pod))
    pod["spec"]["nodeName"] = node
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": t1}
    ]
    yield "MODIFIED", pod  # bound
    pod = json.loads(json.dumps(pod))
    pod["metadata"]["managedFields"].append(_managed("kubelet", "Update", t1, "status"))
    pod["status"].update(
        hostIP="172.18.0.4",
        hostIPs=[{"ip": "172.18.0.4"}],
        startTime=t1,
        conditions=_conditions(t1, False),
        containerStatuses=_container_status({"waiting": {"reason": "ContainerCreating"}}, False, 0),
    )
    yield "MODIFIED", pod  # the kubelet's first status: startTime (read: a victim's runtime)
    pod = json.loads(json.dumps(pod))
    pod["status"].update(
        phase="Running",
        podIP="10.244.1.7",
        podIPs=[{"ip": "10.244.1.7"}],
        containerStatuses=_container_status({"running": {"startedAt": t2}}, False, 0),
    )
    yield "MODIFIED", pod  # Running
    for h in range(heartbeats):  # nothing the scheduler reads
        pod = json.loads(json.dumps(pod))
        ready = h % 2 == 0
        th = _ts(t + 10 + 15 * h)
        pod["status"]["conditions"] = _conditions(th, ready)
        pod["status"]["containerStatuses"] = _container_status({"running": {"startedAt": t2}}, ready, h // 4)
        pod["metadata"]["managedFields"][-1]["time"] = th
        yield "MODIFIED", pod
    pod = json.loads(json.dumps(pod))
    pod["metadata"]["deletionTimestamp"] = _ts(t + 600)
    pod["metadata"]["deletionGracePeriodSeconds"] = 30
    yield "MODIFIED", pod  # graceful delete
    pod = json.loads(json.dumps(pod))
    pod["status"]["phase"] = "Succeeded"
    pod["status"]["conditions"] = _conditions(_ts(t + 601), False)
    pod["status"]["containerStatuses"] = _container_status(
        {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t2, "finishedAt": _ts(t + 601)}}, False, 0
    )
    yield "MODIFIED", pod
    pod = json.loads(json.dumps(pod))
    pod["metadata"]["finalizers"] = []
    yield "DELETED", pod


def watch_lines(pods: int, heartbeats: int = 4, seed: int = 1, rv0: int = 1000, first: int = 0) -> Iterator[bytes]:
    """Watch event lines (one JSON object each, as the API server streams them) for pods first..first+pods,
    whose lifecycles interleave (up to 2,000 pods in flight at once, as on a busy cluster)."""
    rng = random.Random(seed)
    lives = (pod_lifecycle(i, i // 8, i // 40, heartbeats) for i in range(first, first + pods))
    rv = rv0
    active: list[Iterator[tuple[str, dict[str, Any]]]] = []
    left = pods
    while left or active:
        while left and len(active) < 2000:
            active.append(next(lives))
            left -= 1
        k = rng.randrange(len(active))
        ev = next(active[k], None)
        if ev is None:
            active[k] = active[-1]
            active.pop()
            continue
        typ, obj = ev
        rv += 1
        obj["metadata"]["resourceVersion"] = str(rv)
        yield json.dumps({"type": typ, "object": obj}, separators=(",", ":")).encode()


def running_pods(first: int, count: int, pending_every: int = 10, nodes: int = NODES) -> list[dict[str, Any]]:
    """Pods first..first+count as a relist of a busy cluster returns them: bound (to `nodes` nodes) and
    Running, 1 in `pending_every` still pending (0: none)."""
    out = []
    for i in range(first, first + count):
        pod = new_pod(i, i // 8, i // 40)
        pod["metadata"]["resourceVersion"] = str(10 + i)
        if not pending_every or i % pending_every:
            t1 = _ts(i // 40 + 1)
            pod["spec"]["nodeName"] = f"node-{(i * 7) % nodes:04d}"
            pod["metadata"]["managedFields"].append(_managed("kubelet", "Update", t1, "status"))
            pod["status"].update(
                phase="Running",
                hostIP="172.18.0.4",
                startTime=t1,
                podIP="10.244.1.7",
                conditions=_conditions(t1, True),
                containerStatuses=_container_status({"running": {"startedAt": t1}}, True, 0),
            )
        out.append(pod)
    return out

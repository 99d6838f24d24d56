"""Every Kubernetes API resource kaisched reads or writes, and the paths to it: the one table.

The reflectors, the binder, the status writer and the leader elector build their URLs here, so a
version bump of a CRD (KAI's PodGroup is v2alpha2, its Queue v2) is one line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiResource:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = False

    @property
    def api_version(self) -> str:
        """The apiVersion of its objects: v1, or group/version."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection(self, namespace: str = "") -> str:
        """Where to list, watch and create: across all namespaces, or in one."""
        if namespace and self.namespaced:
            return f"{self.prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.prefix}/{self.plural}"

    def item(self, name: str, namespace: str = "", subresource: str = "") -> str:
        """One object (and optionally a subresource of it: status, binding)."""
        path = f"{self.collection(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    def of_key(self, key: str, subresource: str = "") -> str:
        """One object by its cache key: <namespace>/<name> if namespaced, else <name>."""
        if self.namespaced:
            ns, name = key.split("/", 1)
            return self.item(name, ns, subresource)
        return self.item(key, "", subresource)


NODES = ApiResource("Node", "", "v1", "nodes")
PODS = ApiResource("Pod", "", "v1", "pods", namespaced=True)
PRIORITY_CLASSES = ApiResource("PriorityClass", "scheduling.k8s.io", "v1", "priorityclasses")
POD_GROUPS = ApiResource("PodGroup", "scheduling.run.ai", "v2alpha2", "podgroups", namespaced=True)
QUEUES = ApiResource("Queue", "scheduling.run.ai", "v2", "queues")
TOPOLOGIES = ApiResource("Topology", "kai.scheduler", "v1alpha1", "topologies")
EVENTS = ApiResource("Event", "events.k8s.io", "v1", "events", namespaced=True)
LEASES = ApiResource("Lease", "coordination.k8s.io", "v1", "leases", namespaced=True)

NAMESPACES = ApiResource("Namespace", "", "v1", "namespaces")
CLAIMS = ApiResource("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", namespaced=True)
VOLUMES = ApiResource("PersistentVolume", "", "v1", "persistentvolumes")
STORAGE_CLASSES = ApiResource("StorageClass", "storage.k8s.io", "v1", "storageclasses")
CSI_NODES = ApiResource("CSINode", "storage.k8s.io", "v1", "csinodes")
DISRUPTION_BUDGETS = ApiResource("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", namespaced=True)

WATCHED = (
    NODES,
    PODS,
    PRIORITY_CLASSES,
    POD_GROUPS,
    QUEUES,
    TOPOLOGIES,
    NAMESPACES,
    CLAIMS,
    VOLUMES,
    STORAGE_CLASSES,
    CSI_NODES,
    DISRUPTION_BUDGETS,
)  # what the cache is built from

# the workloads the grouper groups and the objects between them and their pods (README "Grouping"; the chart's
# ClusterRole grants get, list and watch on exactly these): watched so a workload's change (a scale) reaches
# its gang at once; an owner of another kind, version or not watched yet is read with GET
GROUPED_OWNERS = tuple(
    ApiResource(kind, group, version, plural, namespaced=True)
    for group, version, kinds in (
        ("apps", "v1", (("Deployment", "deployments"), ("ReplicaSet", "replicasets"), ("StatefulSet", "statefulsets"))),
        ("batch", "v1", (("Job", "jobs"), ("CronJob", "cronjobs"))),
        ("jobset.x-k8s.io", "v1alpha2", (("JobSet", "jobsets"),)),
        ("leaderworkerset.x-k8s.io", "v1", (("LeaderWorkerSet", "leaderworkersets"),)),
        (
            "kubeflow.org",
            "v1",
            (
                ("PyTorchJob", "pytorchjobs"),
                ("TFJob", "tfjobs"),
                ("MPIJob", "mpijobs"),
                ("XGBoostJob", "xgboostjobs"),
                ("JAXJob", "jaxjobs"),
                ("Notebook", "notebooks"),
            ),
        ),
        ("trainer.kubeflow.org", "v1alpha1", (("TrainJob", "trainjobs"),)),
        ("ray.io", "v1", (("RayCluster", "rayclusters"), ("RayJob", "rayjobs"), ("RayService", "rayservices"))),
        (
            "nvidia.com",
            "v1alpha1",
            (
                ("DynamoGraphDeployment", "dynamographdeployments"),
                ("DynamoComponentDeployment", "dynamocomponentdeployments"),
            ),
        ),
        (
            "grove.io",
            "v1alpha1",
            (
                ("PodCliqueSet", "podcliquesets"),
                ("PodClique", "podcliques"),
                ("PodCliqueScalingGroup", "podcliquescalinggroups"),
            ),
        ),
    )
    for kind, plural in kinds
)

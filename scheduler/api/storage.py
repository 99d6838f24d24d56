"""Storage objects as feasibility needs them: claims, volumes, classes, per-node attach limits."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.api.pod import NodeSelectorTerm

WFFC = "WaitForFirstConsumer"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
BIND_COMPLETED_ANNOTATION = "pv.kubernetes.io/bind-completed"  # the volume controller finished the bind


@dataclass(frozen=True, slots=True)
class Claim:
    """A PersistentVolumeClaim."""

    namespace: str
    name: str
    storage_class: str  # "" for none
    volume_name: str  # "" while unbound
    request: int  # bytes of storage asked
    access_modes: tuple[str, ...] = ()
    deleting: bool = False
    selected_node: str = ""
    bind_completed: bool = False

    @property
    def bound(self) -> bool:
        """Bound as kube-scheduler counts it: a volume named and the controller's bind completed."""
        return bool(self.volume_name) and self.bind_completed

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Volume:
    """A PersistentVolume."""

    name: str
    storage_class: str
    capacity: int
    access_modes: tuple[str, ...] = ()
    node_terms: tuple[NodeSelectorTerm, ...] = ()  # required node affinity; empty: any node
    claim_ref: str = ""  # "<ns>/<name>" of the claim it is bound or reserved to
    phase: str = "Available"
    csi_driver: str = ""
    handle: str = ""  # the CSI volume handle (what attach limits count)


@dataclass(frozen=True, slots=True)
class TopologySelector:
    """One allowedTopologies term: every (key, values) must match the node's labels."""

    expressions: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class StorageClass:
    name: str
    provisioner: str
    binding_mode: str = "Immediate"
    allowed_topologies: tuple[TopologySelector, ...] = ()
    default: bool = False


@dataclass(frozen=True, slots=True)
class CSINodeLimits:
    """Per-driver attachable volume counts a node reports in its CSINode object."""

    node: str
    limits: tuple[tuple[str, int], ...]  # (driver, count), drivers without a count left out

"""Machine codes for why a gang waits. Public contract: simulate output, events and conditions use them."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # capacity and placement
    INSUFFICIENT_RESOURCES = "InsufficientResources"
    TOPOLOGY_REQUIRED_UNSATISFIABLE = "TopologyRequiredUnsatisfiable"
    NO_FEASIBLE_NODE = "NoFeasibleNode"
    GANG_TOO_LARGE = "GangTooLarge"
    OVER_LIMIT = "OverLimit"
    # non-preemptible work (priority >= 100, or labelled so) runs only within its queue's deserved quota
    NON_PREEMPTIBLE_OVER_QUOTA = "NonPreemptibleOverQuota"
    # the bounded search for a placement of a heterogeneous gang's members ran out of work before it
    # found one or proved there is none: the gang may fit; it is tried again next cycle
    PLACEMENT_SEARCH_LIMIT = "PlacementSearchLimit"
    BIND_BACKOFF = "BindBackoff"  # its last bind failed; it waits out an exponential backoff
    # gang membership
    NOT_ENOUGH_PODS = "NotEnoughPods"
    POD_GROUP_NOT_FOUND = "PodGroupNotFound"
    # the pod's workload is grouped (a Job, Deployment, JobSet, ...) and its PodGroup is not made yet, or
    # cannot be (the message names the owner and the fix): it waits rather than run as a gang of one
    AWAITING_POD_GROUP = "AwaitingPodGroup"
    # bad input
    INVALID_POD_GROUP = "InvalidPodGroup"
    INVALID_POD = "InvalidPod"
    QUEUE_DOES_NOT_EXIST = "QueueDoesNotExist"
    QUEUE_NOT_LEAF = "QueueNotLeaf"
    QUEUE_CYCLE = "QueueCycle"
    INVALID_QUEUE = "InvalidQueue"
    UNKNOWN_TOPOLOGY = "UnknownTopology"
    UNKNOWN_TOPOLOGY_LEVEL = "UnknownTopologyLevel"
    # the gang's Topology has levels that no node carries all of: nothing can be a candidate
    TOPOLOGY_NOT_ON_NODES = "TopologyNotOnNodes"
    # pod constraints beyond resources (kube-scheduler's filters), each naming what failed
    POD_AFFINITY_UNSATISFIABLE = "PodAffinityUnsatisfiable"
    POD_ANTI_AFFINITY_CONFLICT = "PodAntiAffinityConflict"
    TOPOLOGY_SPREAD_UNSATISFIABLE = "TopologySpreadUnsatisfiable"
    HOST_PORT_CONFLICT = "HostPortConflict"
    VOLUME_NODE_CONFLICT = "VolumeNodeConflict"  # bound volumes' node affinity, no volume to bind, limits
    VOLUME_CLAIM_NOT_FOUND = "VolumeClaimNotFound"
    VOLUME_CLAIM_UNBOUND = "VolumeClaimUnbound"  # an Immediate claim not bound yet: wait for its volume
    # constraints we do not evaluate: the gang waits, never placed against them
    UNSUPPORTED_RESOURCE_CLAIMS = "UnsupportedResourceClaims"

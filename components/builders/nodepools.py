"""Capacity of a cluster this program creates (``createCluster``): EKS Auto Mode NodePools, the gp3
StorageClass, and the check that every Ray pod selects nodes some NodePool can launch.

Why a check before any resource: on Auto Mode nothing runs until Karpenter launches a node, and it
only launches what a NodePool allows. A worker group pinned to ``g5.2xlarge`` with no NodePool that
allows the ``g5`` family (or whose pods do not tolerate the pool's taint) stays Pending for ever,
and the Ray autoscaler keeps asking for it. ``nodepool_problems`` finds that from config alone, so
``components/config.py`` reports it as a one-line error before ``pulumi up`` creates anything.

Facts relied on (AWS EKS user guide, read via the docs search):
* create-node-pool.html: Auto Mode NodePools are Karpenter ``karpenter.sh/v1`` NodePools whose
  ``nodeClassRef`` is ``{group: eks.amazonaws.com, kind: NodeClass, name: default}`` (the NodeClass
  Auto Mode creates); supported requirement keys include ``eks.amazonaws.com/instance-family``,
  ``karpenter.sh/capacity-type`` (``on-demand`` | ``spot``), ``kubernetes.io/arch``.
* create-storage-class.html: Auto Mode creates no StorageClass; one must name the provisioner
  ``ebs.csi.eks.amazonaws.com`` (its built-in EBS CSI), and ``allowedTopologies`` on
  ``eks.amazonaws.com/compute-type: auto`` keeps volumes to Auto Mode nodes.
* ml-inference-gpu-nodepool-cli.html: GPU NodePools taint ``nvidia.com/gpu`` and Auto Mode ships
  the NVIDIA driver and device plugin on its GPU AMI (no device-plugin chart needed).
Pure: plain values in, plain dicts out; nothing here creates a resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.builders.placement import GPU_TAINT_KEY, INSTANCE_TYPE_LABEL

NODEPOOL_API_VERSION = "karpenter.sh/v1"
# Auto Mode's own NodeClass (eks.amazonaws.com/v1, created by EKS with the cluster).
AUTO_MODE_NODE_CLASS = {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}
INSTANCE_FAMILY_LABEL = "eks.amazonaws.com/instance-family"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
ARCH_LABEL = "kubernetes.io/arch"
NODEPOOL_LABEL = "ray-on-eks/node-pool"
EBS_PROVISIONER = "ebs.csi.eks.amazonaws.com"
DEFAULT_STORAGE_CLASS = "gp3"
CAPACITY_TYPES = ("on-demand", "spot")

# An EC2 instance family: letters, a generation digit, optional attribute letters (g = Graviton,
# i = Intel, a = AMD, d = local NVMe, n = network, e = extra memory/storage...), e.g. m6i, g6e, c7gn.
_FAMILY = re.compile(r"^(?P<series>[a-z]+)(?P<gen>[0-9]+)(?P<attrs>[a-z-]*)$")


def instance_family(instance_type: str) -> str:
    """``g5.2xlarge`` -> ``g5`` (the part EC2 calls the instance family)."""
    return instance_type.split(".", 1)[0]


def family_problem(family: str) -> str | None:
    """Why ``family`` cannot be in a Ray NodePool, or None. Ray's default images are amd64 only."""
    match = _FAMILY.match(family)
    if match is None:
        return f"{family!r} is not an EC2 instance family such as m6i or g5"
    if "g" in match["attrs"]:
        x86 = "g5" if match["series"] == "g" else f"{match['series']}{match['gen']}i"
        return f"{family!r} is a Graviton (arm64) family; the Ray images are amd64, use an x86 family such as {x86}"
    return None


@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    """One Ray NodePool: what it may launch and the taint its nodes carry."""

    name: str
    families: tuple[str, ...]
    capacity_types: tuple[str, ...]
    limits: Mapping[str, str]
    gpu: bool
    consolidate_after_seconds: int


def build_nodepool(pool: PoolSpec) -> dict[str, Any]:
    """A ``karpenter.sh/v1`` NodePool on Auto Mode's NodeClass.

    ``limits`` is the ceiling a runaway autoscaler hits (Karpenter stops launching once the pool's
    nodes sum to it). ``WhenEmptyOrUnderutilized`` + ``consolidateAfter`` give idle nodes back; the
    disruption budget keeps consolidation from draining more than 10% of the pool at once. GPU
    pools carry the ``nvidia.com/gpu`` taint so only pods that ask for GPUs (the Ray builders add
    the toleration to GPU groups) land there, and they scale from zero: a NodePool has no minimum.
    """
    template_spec: dict[str, Any] = {
        "nodeClassRef": dict(AUTO_MODE_NODE_CLASS),
        "requirements": [
            {"key": INSTANCE_FAMILY_LABEL, "operator": "In", "values": list(pool.families)},
            {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": list(pool.capacity_types)},
            {"key": ARCH_LABEL, "operator": "In", "values": ["amd64"]},
        ],
        # Nodes are replaced after 14 days so they pick up patched AMIs (Auto Mode's maximum is 21).
        "expireAfter": "336h",
    }
    if pool.gpu:
        template_spec["taints"] = [{"key": GPU_TAINT_KEY, "value": "true", "effect": "NoSchedule"}]
    return {
        "apiVersion": NODEPOOL_API_VERSION,
        "kind": "NodePool",
        "metadata": {"name": pool.name},
        "spec": {
            "template": {"metadata": {"labels": {NODEPOOL_LABEL: pool.name}}, "spec": template_spec},
            "limits": dict(pool.limits),
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": f"{pool.consolidate_after_seconds}s",
                "budgets": [{"nodes": "10%"}],
            },
        },
    }


def build_default_storage_class() -> dict[str, Any]:
    """The cluster's default StorageClass: encrypted gp3 through Auto Mode's EBS CSI.

    ``WaitForFirstConsumer`` creates the volume in the zone the pod is scheduled to (otherwise a
    volume in zone a and a node launched in zone b never meet). ``Delete``: data that must outlive
    the stack lives on FSx / S3, which ``retainData`` governs; Prometheus' volume is a cache.
    """
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": EBS_PROVISIONER,
        "parameters": {"type": "gp3", "encrypted": "true"},
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
        "allowVolumeExpansion": True,
        "allowedTopologies": [
            {"matchLabelExpressions": [{"key": "eks.amazonaws.com/compute-type", "values": ["auto"]}]}
        ],
    }


@dataclass(frozen=True, kw_only=True)
class PodPlacement:
    """What a Ray pod asks of its node: the config key it comes from, instance type, GPUs, selector."""

    key: str
    instance_type: str | None
    gpus: int
    node_selector: Mapping[str, str]
    tolerates_gpu_taint: bool


def _allows(pool: PoolSpec, key: str, value: str) -> bool:
    """Can a node launched by ``pool`` carry label ``key=value``?"""
    if key == INSTANCE_TYPE_LABEL:
        return instance_family(value) in pool.families
    if key == INSTANCE_FAMILY_LABEL:
        return value in pool.families
    if key == CAPACITY_TYPE_LABEL:
        return value in pool.capacity_types
    if key == ARCH_LABEL:
        return value == "amd64"
    if key == NODEPOOL_LABEL:
        return value == pool.name
    # Labels every node gets from its zone / the kubelet cannot be judged from config; any other
    # label is on no node these pools launch.
    return key.startswith("topology.kubernetes.io/") or key == "kubernetes.io/os"


def nodepool_problems(pools: Sequence[PoolSpec], pods: Sequence[PodPlacement]) -> list[str]:
    """One line per Ray pod that no NodePool can launch a node for (empty: every pod can run).

    A pod fits a pool when every label it selects is one the pool's nodes carry, it tolerates the
    pool's taint (GPU pools), and it asks for GPUs only from a GPU pool.
    """
    problems: list[str] = []
    for pod in pods:
        selector = dict(pod.node_selector)
        if pod.instance_type:
            selector[INSTANCE_TYPE_LABEL] = pod.instance_type
        fits = [
            pool
            for pool in pools
            if (not pool.gpu or pod.tolerates_gpu_taint)
            and (pod.gpus == 0 or pool.gpu)
            and all(_allows(pool, key, value) for key, value in selector.items())
        ]
        if fits:
            continue
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(selector.items())) or "no node selector"
        kind = "gpu" if pod.gpus else "cpu"
        family = instance_family(pod.instance_type) if pod.instance_type else None
        if family and pod.gpus:
            fix = f"add {family!r} to newCluster.gpuInstanceFamilies, or pick a GPU instance type in {_families(pools, True)}"
        elif family:
            fix = f"add {family!r} to newCluster.cpuInstanceFamilies, or pick an instance type in {_families(pools, False)}"
        else:
            fix = "remove the node selector labels no NodePool sets, or widen newCluster's NodePools"
        problems.append(f"{pod.key}: no {kind} NodePool can launch a node for {wanted}; {fix}")
    return problems


def _families(pools: Sequence[PoolSpec], gpu: bool) -> str:
    families = sorted({f for pool in pools if pool.gpu == gpu for f in pool.families})
    return ", ".join(families) if families else "(none)"

"""Pod placement: which nodes a Ray pod may land on (node selectors, the GPU taint).

Pure: the Ray builders (``components/builders/ray.py``) and the cluster component
(``components/cluster.py``, which taints the GPU node group it creates) share these names, so the
label a pod selects and the taint a node carries cannot drift apart. No resources are created here.
"""

from __future__ import annotations

# Well-known label every node carries (kubelet): its EC2 (or SageMaker ml.*) instance type.
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# HyperPod's health-monitoring agent labels every node; only "Schedulable" nodes should get Ray pods.
HYPERPOD_HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
HYPERPOD_SCHEDULABLE = "Schedulable"
# Taint key of GPU nodes, so that only pods asking for GPUs (and tolerating it) land there.
GPU_TAINT_KEY = "nvidia.com/gpu"


def node_selector_for(cluster_type: str, instance_type: str | None) -> dict[str, str]:
    """Node selector that pins a Ray pod to ``instance_type`` (and, on HyperPod, to healthy nodes)."""
    selector: dict[str, str] = {}
    if instance_type:
        selector[INSTANCE_TYPE_LABEL] = instance_type
    if cluster_type == "hyperpod":
        selector[HYPERPOD_HEALTH_LABEL] = HYPERPOD_SCHEDULABLE
    return selector

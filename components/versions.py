"""Every pinned version the program deploys: charts, images, EKS add-ons and Ray itself.

This is the one place to bump a version. ``tests/components/test_versions.py`` checks that the Ray
image tag, the RayCluster ``rayVersion`` and the ``ray`` pin in ``requirements.txt`` agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Ray: the image tag, RayCluster.spec.rayVersion and requirements.txt's ray pin are all this value.
RAY_VERSION = "2.60.0"
# Python inside the Ray image; matches the local interpreter so pickled objects and wheels agree.
RAY_PYTHON_TAG = "py311"
RAY_IMAGE_REPOSITORY = "rayproject/ray"

# KubeRay operator Helm chart (https://ray-project.github.io/kuberay-helm/).
KUBERAY_VERSION = "1.7.0"
KUBERAY_CHART = "kuberay-operator"
KUBERAY_CHART_REPO = "https://ray-project.github.io/kuberay-helm/"
# The feature gates of that chart version and their defaults (its values.yaml ``featureGates``). Helm
# replaces a list value wholesale, so the operator builder always sends the full list; config may only
# flip gates that this release knows (an unknown gate makes the operator exit at start).
KUBERAY_FEATURE_GATES: Mapping[str, bool] = MappingProxyType(
    {
        "RayClusterStatusConditions": True,
        "RayJobDeletionPolicy": True,
        "RayMultiHostIndexing": True,
        "RayServiceIncrementalUpgrade": True,
        "RayCronJob": False,
        "RayClusterMTLS": False,
        "RayClusterNetworkPolicy": False,
        "RayClusterHistoryServer": False,
    }
)

# kube-prometheus-stack Helm chart (https://prometheus-community.github.io/helm-charts).
KUBE_PROMETHEUS_STACK_VERSION = "88.5.3"
KUBE_PROMETHEUS_STACK_CHART = "kube-prometheus-stack"
KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts"

# kubectl (with a shell) for the HyperPod stuck-pod cleanup CronJob; Alpine-based, kubectl 1.33 to
# match EKS_KUBERNETES_VERSION. The official registry.k8s.io/kubectl image has no shell to filter pods.
KUBECTL_IMAGE = "alpine/k8s:1.33.4"

# Kubernetes version for clusters this program creates (createCluster: true).
EKS_KUBERNETES_VERSION = "1.33"


def ray_image(*, gpu: bool, repository: str = RAY_IMAGE_REPOSITORY) -> str:
    """The pinned Ray image for a CPU or a GPU (CUDA) pod, e.g. ``rayproject/ray:2.60.0-py311-gpu``."""
    suffix = "-gpu" if gpu else ""
    return f"{repository}:{RAY_VERSION}-{RAY_PYTHON_TAG}{suffix}"


# EKS managed add-ons for shared storage and Pod Identity. The -eksbuild.N suffix is what EKS publishes
# per Kubernetes version; confirm a pin against your cluster before deploying or upgrading with
#   aws eks describe-addon-versions --addon-name <name> --kubernetes-version <version>
# (a pin EKS does not offer makes `pulumi up` fail at that add-on).
# FSx for Lustre CSI driver (kubernetes-sigs/aws-fsx-csi-driver v1.9.0).
FSX_CSI_DRIVER_ADDON_VERSION = "v1.9.0-eksbuild.1"
# Mountpoint for Amazon S3 CSI driver v2 (awslabs/mountpoint-s3-csi-driver v2.7.0); v2 supports Pod Identity.
MOUNTPOINT_S3_CSI_DRIVER_ADDON_VERSION = "v2.7.0-eksbuild.1"
# EKS Pod Identity agent (EKS 1.32-1.34), installed only when managePodIdentityAgent is true.
POD_IDENTITY_AGENT_ADDON_VERSION = "v1.3.10-eksbuild.2"

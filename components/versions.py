"""Every pinned version the program deploys: charts, images, EKS add-ons and Ray itself.

This is the one place to bump a version. ``tests/components/test_versions.py`` checks that the Ray
image tag, the RayCluster ``rayVersion`` and the ``ray`` pin in ``requirements.txt`` agree.
"""

from __future__ import annotations

# Ray: the image tag, RayCluster.spec.rayVersion and requirements.txt's ray pin are all this value.
RAY_VERSION = "2.60.0"
# Python inside the Ray image; matches the local interpreter so pickled objects and wheels agree.
RAY_PYTHON_TAG = "py311"
RAY_IMAGE_REPOSITORY = "rayproject/ray"

# KubeRay operator Helm chart (https://ray-project.github.io/kuberay-helm/).
KUBERAY_VERSION = "1.7.0"
KUBERAY_CHART = "kuberay-operator"
KUBERAY_CHART_REPO = "https://ray-project.github.io/kuberay-helm/"

# kube-prometheus-stack Helm chart (https://prometheus-community.github.io/helm-charts).
KUBE_PROMETHEUS_STACK_VERSION = "88.5.3"
KUBE_PROMETHEUS_STACK_CHART = "kube-prometheus-stack"
KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts"

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

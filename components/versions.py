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


# EKS managed add-ons (shared storage drivers, Pod Identity agent). No build is pinned here: which
# `-eksbuild.N` builds exist depends on the cluster's Kubernetes version and changes as EKS publishes
# them, so the program asks EKS at deploy time for the newest build offered for the cluster's version
# (aws.eks.get_addon_version, most_recent) unless the stack pins one (fsx.driverVersion,
# s3.driverVersion, podIdentityAgentVersion; list them with
#   aws eks describe-addon-versions --addon-name <name> --kubernetes-version <version>).
# What is pinned is the major version each add-on's IAM policy, volume specs and service account
# names are written for: a resolved or pinned version of another major stops `pulumi up` with a
# one-line error instead of installing a driver the program was not written against.
EKS_ADDON_MAJOR_VERSIONS: Mapping[str, str] = MappingProxyType(
    {
        # kubernetes-sigs/aws-fsx-csi-driver v1 (controller service account fsx-csi-controller-sa).
        "aws-fsx-csi-driver": "v1",
        # awslabs/mountpoint-s3-csi-driver v2: Pod Identity support, s3-csi-driver-sa.
        "aws-mountpoint-s3-csi-driver": "v2",
        # aws/eks-pod-identity-agent v1.
        "eks-pod-identity-agent": "v1",
    }
)

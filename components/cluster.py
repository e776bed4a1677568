"""ClusterTarget: the Kubernetes cluster Ray is deployed into, and one explicit provider for it.

Three ways in, one shape out:

* ``eks``: an existing EKS cluster, looked up by name;
* ``hyperpod``: the EKS cluster that orchestrates a SageMaker HyperPod cluster (nodes are ``ml.*``
  and carry ``sagemaker.amazonaws.com/node-health-status``; Ray pods only land on ``Schedulable``);
* ``eks`` with ``create_cluster``: a new EKS cluster built with pulumi-eks (system, CPU and tainted
  GPU managed node groups, the EKS Pod Identity agent add-on).

In every case the cluster's facts are read with ``aws.eks.get_cluster`` (for a new cluster the
invoke depends on it), and the kubeconfig authenticates with ``aws eks get-token`` so no
credentials are written into state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

# Placement names live in the pure builders (the Ray builders use them too); the ones this module
# does not use stay importable from here for existing callers.
from components.builders.placement import (  # noqa: F401
    GPU_TAINT_KEY,
    HYPERPOD_HEALTH_LABEL,
    HYPERPOD_SCHEDULABLE,
    INSTANCE_TYPE_LABEL,
    node_selector_for,
)
from components.config import HyperPodConfig, NewClusterConfig
from components.versions import EKS_KUBERNETES_VERSION


@dataclass(frozen=True, kw_only=True)
class ClusterTargetArgs:
    """Which cluster to deploy into."""

    cluster_type: Literal["eks", "hyperpod"]
    cluster_name: str
    region: str
    create_cluster: bool = False
    new_cluster: NewClusterConfig | None = None
    hyperpod: HyperPodConfig | None = None


def build_kubeconfig(*, cluster_name: str, endpoint: str, ca_data: str, region: str) -> dict[str, Any]:
    """A kubeconfig whose user runs ``aws eks get-token`` (short-lived tokens, nothing stored)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [
            {
                "name": cluster_name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "aws",
                        "args": [
                            "eks",
                            "get-token",
                            "--cluster-name",
                            cluster_name,
                            "--region",
                            region,
                            "--output",
                            "json",
                        ],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
    }


def build_node_role_policy_arns(partition: str = "aws") -> list[str]:
    """AWS-managed policies an EKS worker node role needs (ECR pulls, CNI, node registration)."""
    return [
        f"arn:{partition}:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        f"arn:{partition}:iam::aws:policy/AmazonEKS_CNI_Policy",
        f"arn:{partition}:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    ]


class ClusterTarget(pulumi.ComponentResource):
    """The cluster Ray runs on, with an explicit ``kubernetes.Provider`` for every other component.

    Outputs: ``cluster_name``, ``kubernetes_version``, ``region``, ``kubeconfig`` (secret),
    ``provider``, ``oidc_issuer_url``, ``oidc_provider_arn``, ``vpc_id``, ``subnet_ids``,
    ``cluster_security_group_id``, ``account_id`` and ``partition``; ``cluster_type`` and ``gpu_taint_key`` are plain values.
    """

    def __init__(
        self, name: str, args: ClusterTargetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-on-eks:aws:ClusterTarget", name, None, opts)
        if args.cluster_type == "hyperpod" and args.hyperpod is None:
            raise ValueError("ClusterTargetArgs.hyperpod is required when cluster_type is 'hyperpod'")
        if args.create_cluster and args.cluster_type != "eks":
            raise ValueError("ClusterTargetArgs.create_cluster only works with cluster_type 'eks'")

        self.cluster_type = args.cluster_type
        self.region = args.region
        self.gpu_taint_key = GPU_TAINT_KEY

        caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.account_id: pulumi.Output[str] = caller.account_id
        self.partition: pulumi.Output[str] = partition.partition

        depends_on: list[pulumi.Resource] = []
        if args.create_cluster:
            depends_on.append(self._create_cluster(name, args))

        info = aws.eks.get_cluster_output(
            name=args.cluster_name,
            opts=pulumi.InvokeOutputOptions(parent=self, depends_on=depends_on),
        )
        self.cluster_name: pulumi.Output[str] = info.name
        # "1.33": EKS add-on versions are resolved for it (aws eks describe-addon-versions).
        self.kubernetes_version: pulumi.Output[str] = info.version
        self.vpc_id: pulumi.Output[str] = info.vpc_config.vpc_id
        self.subnet_ids: pulumi.Output[list[str]] = info.vpc_config.subnet_ids
        self.cluster_security_group_id: pulumi.Output[str] = info.vpc_config.cluster_security_group_id
        self.oidc_issuer_url: pulumi.Output[str] = info.apply(lambda c: c.identities[0].oidcs[0].issuer)
        self.oidc_provider_arn: pulumi.Output[str] = pulumi.Output.all(
            partition.partition, caller.account_id, self.oidc_issuer_url
        ).apply(lambda v: f"arn:{v[0]}:iam::{v[1]}:oidc-provider/{v[2].removeprefix('https://')}")

        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            info.apply(
                lambda c: json.dumps(
                    build_kubeconfig(
                        cluster_name=c.name,
                        endpoint=c.endpoint,
                        ca_data=c.certificate_authorities[0].data,
                        region=args.region,
                    )
                )
            )
        )
        # One explicit provider: components never fall back to an ambient ~/.kube/config.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            # Objects kept by `pulumi destroy` (Ray and monitoring namespaces, claims, volumes, CRDs) are
            # still in the cluster on the next `pulumi up`. Since pulumi-kubernetes 4.29 a create of an
            # existing object fails with AlreadyExists unless this is set (provider/pkg/await/await.go,
            # Creation); with it, the create is a server-side apply that adopts the object. The hazard it
            # reopens (a logical rename creates-then-deletes the same object) is why renames need
            # `aliases`. `import` cannot do this: it fails on the first `up`, when nothing exists yet.
            upsert_existing_objects=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "region": self.region,
                "kubeconfig": self.kubeconfig,
                "oidcIssuerUrl": self.oidc_issuer_url,
                "vpcId": self.vpc_id,
            }
        )

    def _create_cluster(self, name: str, args: ClusterTargetArgs) -> pulumi.Resource:
        """A new EKS cluster with system, CPU and GPU node groups and the Pod Identity agent."""
        spec = args.new_cluster or NewClusterConfig()
        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-policy-{index}",
                role=node_role.name,
                policy_arn=policy_arn,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for index, policy_arn in enumerate(build_node_role_policy_arns())
        ]
        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=spec.kubernetes_version or EKS_KUBERNETES_VERSION,
            skip_default_node_group=True,
            instance_roles=[node_role],
            create_oidc_provider=True,
            authentication_mode=eks.AuthenticationMode.API,
            endpoint_private_access=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
        )
        groups: list[pulumi.Resource] = []
        for role, instance_type, low, high, gpu in (
            ("system", spec.system_instance_type, spec.system_nodes, spec.system_nodes, False),
            ("cpu", spec.cpu_instance_type, spec.cpu_nodes_min, spec.cpu_nodes_max, False),
            ("gpu", spec.gpu_instance_type, spec.gpu_nodes_min, spec.gpu_nodes_max, True),
        ):
            groups.append(
                eks.ManagedNodeGroup(
                    f"{name}-{role}-nodes",
                    cluster=cluster,
                    node_role=node_role,
                    instance_types=[instance_type],
                    ami_type="AL2023_x86_64_NVIDIA" if gpu else "AL2023_x86_64_STANDARD",
                    scaling_config={"min_size": low, "max_size": max(high, 1), "desired_size": low},
                    labels={"ray-on-eks/node-role": role},
                    taints=[{"key": GPU_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}]
                    if gpu
                    else None,
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        addon = aws.eks.Addon(
            f"{name}-pod-identity-agent",
            cluster_name=args.cluster_name,
            addon_name="eks-pod-identity-agent",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster, *groups]),
        )
        return addon

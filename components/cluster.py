"""ClusterTarget: the Kubernetes cluster Ray is deployed into, and one explicit provider for it.

Three ways in, one shape out:

* ``eks``: an existing EKS cluster, looked up by name;
* ``hyperpod``: the EKS cluster that orchestrates a SageMaker HyperPod cluster (nodes are ``ml.*``
  and carry ``sagemaker.amazonaws.com/node-health-status``; Ray pods only land on ``Schedulable``);
* ``eks`` with ``create_cluster``: a new EKS Auto Mode cluster built with pulumi-eks in a VPC the stack
  creates (pulumi-awsx) or an existing VPC's private subnets, with Ray NodePools (CPU; tainted GPU,
  from zero), a default encrypted gp3 StorageClass and access entries for extra admins. Auto Mode
  runs the node autoscaler (Karpenter), the NVIDIA driver and device plugin, EBS CSI, CoreDNS and
  the Pod Identity agent itself, so the stack installs none of them (EKS user guide automode.html;
  the EKS workshop's Auto Mode Pod Identity page: the agent "is already included and managed by AWS").

In every case the cluster's facts are read with ``aws.eks.get_cluster`` (for a new cluster the
invoke depends on it), and the kubeconfig authenticates with ``aws eks get-token`` so no
credentials are written into state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from components.builders.nodepools import build_default_storage_class, build_nodepool

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
    # createCluster: turn on the VPC CNI's network-policy agent so the Ray namespace's NetworkPolicies
    # are enforced (an existing cluster needs the vpc-cni add-on setting enableNetworkPolicy: "true").
    network_policies: bool = True


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


def build_vpc_subnet_tags(public: bool) -> dict[str, str]:
    """Tags EKS load balancing looks for: internet-facing ELBs in public subnets, internal ones in
    private subnets (EKS user guide, network-load-balancing.html, "Subnet tagging")."""
    return {"kubernetes.io/role/elb": "1"} if public else {"kubernetes.io/role/internal-elb": "1"}


def build_network_policy_config() -> dict[str, Any]:
    """Turns on Auto Mode's network policy controller (EKS user guide, auto-net-pol.html, step 1).

    Without it NetworkPolicy objects (the Ray namespace's) are accepted but not enforced. Auto Mode
    has no vpc-cni add-on whose ``enableNetworkPolicy`` could do this; the built-in ``default``
    NodeClass's ``networkPolicy`` is ``DefaultAllow`` (pods no policy selects stay reachable).
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "amazon-vpc-cni", "namespace": "kube-system"},
        "data": {"enable-network-policy-controller": "true"},
    }


class ClusterTarget(pulumi.ComponentResource):
    """The cluster Ray runs on, with an explicit ``kubernetes.Provider`` for every other component.

    Outputs: ``cluster_name``, ``kubernetes_version``, ``region``, ``kubeconfig`` (secret),
    ``provider``, ``oidc_issuer_url``, ``oidc_provider_arn``, ``vpc_id``, ``subnet_ids``,
    ``cluster_security_group_id``, ``account_id`` and ``partition``; ``cluster_type`` and
    ``gpu_taint_key`` are plain values. With ``create_cluster``: ``node_pools`` (the Ray NodePools;
    Ray resources depend on them so they are deleted first) and ``storage_class`` (the default gp3
    StorageClass).
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
        # Created with createCluster (empty otherwise): Ray pods must be deleted before these on
        # destroy, and the Prometheus claim needs the default StorageClass.
        self.node_pools: list[pulumi.Resource] = []
        self.storage_class: pulumi.Resource | None = None
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
        if args.create_cluster:
            self._create_capacity(name, args, depends_on)

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
        """A new EKS Auto Mode cluster in its own VPC (or the configured private subnets).

        Creation takes 10-15 minutes (EKS control plane); pulumi-eks waits for ACTIVE. On destroy the
        cluster goes last: every Kubernetes object depends on it through the provider.
        """
        spec = args.new_cluster or NewClusterConfig()
        if spec.vpc_id is not None:
            vpc_id: pulumi.Input[str] = spec.vpc_id
            private_subnets: pulumi.Input[Sequence[str]] = list(spec.subnet_ids)
            public_subnets: pulumi.Input[Sequence[str]] | None = None
        else:
            # Private subnets for nodes and pods in every AZ, public ones for the NAT gateway and
            # internet-facing load balancers; one NAT gateway (a sandbox; one per AZ costs N times).
            vpc = awsx.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=spec.vpc_cidr,
                number_of_availability_zones=spec.availability_zones,
                nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(
                    strategy=awsx.ec2.NatGatewayStrategy.SINGLE
                ),
                subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
                subnet_specs=[
                    awsx.ec2.SubnetSpecArgs(
                        type=awsx.ec2.SubnetType.PRIVATE, tags=build_vpc_subnet_tags(False)
                    ),
                    awsx.ec2.SubnetSpecArgs(
                        type=awsx.ec2.SubnetType.PUBLIC, tags=build_vpc_subnet_tags(True)
                    ),
                ],
                enable_dns_hostnames=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
            vpc_id, private_subnets, public_subnets = (
                vpc.vpc_id,
                vpc.private_subnet_ids,
                vpc.public_subnet_ids,
            )
        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=spec.kubernetes_version or EKS_KUBERNETES_VERSION,
            vpc_id=vpc_id,
            private_subnet_ids=private_subnets,
            public_subnet_ids=public_subnets,
            # Auto Mode: EKS runs Karpenter with the built-in `system` (CriticalAddonsOnly) and
            # `general-purpose` NodePools (the operator and monitoring land there); the Ray pools are
            # added in _create_capacity. pulumi-eks creates the Auto Mode node role.
            auto_mode=eks.AutoModeOptionsArgs(
                enabled=True,
                compute_config=eks.ClusterComputeConfigArgs(node_pools=["general-purpose", "system"]),
            ),
            create_oidc_provider=True,
            # Access entries only. EKS gives the identity that creates the cluster an admin access entry
            # (accessConfig.bootstrapClusterCreatorAdminPermissions, true by default); an explicit entry
            # for it would fail with ResourceInUseException, so only extra admins are added below.
            authentication_mode=eks.AuthenticationMode.API,
            endpoint_private_access=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        admins: list[pulumi.Resource] = [cluster]
        for index, principal in enumerate(spec.admin_principal_arns):
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{index}",
                cluster_name=args.cluster_name,
                principal_arn=principal,
                type="STANDARD",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
            )
            admins.append(
                aws.eks.AccessPolicyAssociation(
                    f"{name}-admin-{index}-policy",
                    cluster_name=args.cluster_name,
                    principal_arn=principal,
                    policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                    access_scope={"type": "cluster"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
                )
            )
        return cluster

    def _create_capacity(self, name: str, args: ClusterTargetArgs, cluster: list[pulumi.Resource]) -> None:
        """Ray NodePools, the default gp3 StorageClass and network-policy enforcement.

        Every object here depends on the cluster (so it is deleted before it), and RayClusterStack
        depends on the NodePools (so Ray pods go first on destroy, then the NodePools, whose deletion
        makes Auto Mode terminate their nodes, then the cluster): no EC2 instance is left running.
        """
        spec = args.new_cluster or NewClusterConfig()
        opts = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=cluster)
        for pool in spec.pools():
            doc = build_nodepool(pool)
            self.node_pools.append(
                k8s.apiextensions.CustomResource(
                    f"{name}-nodepool-{pool.name}",
                    api_version=doc["apiVersion"],
                    kind=doc["kind"],
                    metadata=doc["metadata"],
                    spec=doc["spec"],
                    opts=opts,
                )
            )
        sc = build_default_storage_class()
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata=sc["metadata"],
            provisioner=sc["provisioner"],
            parameters=sc["parameters"],
            volume_binding_mode=sc["volumeBindingMode"],
            reclaim_policy=sc["reclaimPolicy"],
            allow_volume_expansion=sc["allowVolumeExpansion"],
            allowed_topologies=sc["allowedTopologies"],
            opts=opts,
        )
        if args.network_policies:
            cni = build_network_policy_config()
            k8s.core.v1.ConfigMap(
                f"{name}-network-policy", metadata=cni["metadata"], data=cni["data"], opts=opts
            )

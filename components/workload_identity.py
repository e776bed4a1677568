"""AWS credentials for one Kubernetes service account: an IAM role + EKS Pod Identity association, or IRSA.

Not a component: a helper the storage components call to create their roles as their own children
(``parent=self``), so each role is named after, and destroyed with, the component that needs it.
No AWS keys anywhere: pods get short-lived credentials from EKS Pod Identity or from STS web identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from components.builders.storage import (
    POD_IDENTITY_AGENT_ADDON,
    irsa_trust_policy,
    pod_identity_trust_policy,
)
from components.versions import POD_IDENTITY_AGENT_ADDON_VERSION


@dataclass(frozen=True, kw_only=True)
class ClusterIdentity:
    """How pods on the target cluster get AWS credentials (from ``ClusterTarget`` outputs)."""

    iam_mode: Literal["pod-identity", "irsa"]
    cluster_name: pulumi.Input[str]
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    # IRSA only: the cluster's IAM OIDC provider and issuer URL.
    oidc_provider_arn: pulumi.Input[str] | None = None
    oidc_issuer_url: pulumi.Input[str] | None = None

    def validate(self, owner: str) -> None:
        """Raise a ValueError naming ``owner``'s argument when IRSA lacks its OIDC inputs."""
        if self.iam_mode not in ("pod-identity", "irsa"):
            raise ValueError(f"{owner}.identity.iam_mode is {self.iam_mode!r}; use 'pod-identity' or 'irsa'")
        if self.iam_mode == "irsa" and (self.oidc_provider_arn is None or self.oidc_issuer_url is None):
            raise ValueError(
                f"{owner}.identity: iam_mode 'irsa' needs oidc_provider_arn and oidc_issuer_url "
                "(ClusterTarget.oidc_provider_arn / oidc_issuer_url)"
            )


@dataclass(frozen=True)
class ServiceAccountRole:
    """What :func:`service_account_role` created; ``ready`` lists what a consumer should wait for."""

    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    association: aws.eks.PodIdentityAssociation | None

    @property
    def ready(self) -> list[pulumi.Resource]:
        found: list[pulumi.Resource] = [self.role, self.policy]
        if self.association is not None:
            found.append(self.association)
        return found


def service_account_role(
    name: str,
    *,
    identity: ClusterIdentity,
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    description: str,
    parent: pulumi.Resource,
) -> ServiceAccountRole:
    """An auto-named IAM role usable only by ``namespace/service_account`` on the identity's cluster.

    Pod Identity: the role trusts ``pods.eks.amazonaws.com`` for that service account's session tags and
    an association binds it. IRSA: the role trusts the cluster's OIDC provider for exactly that ``sub``.
    ``policy`` (JSON) is attached inline, so it lives and dies with the role.
    """
    if identity.iam_mode == "irsa":
        if identity.oidc_provider_arn is None or identity.oidc_issuer_url is None:
            raise ValueError(f"{name}: iam_mode 'irsa' needs oidc_provider_arn and oidc_issuer_url")
        trust = pulumi.Output.all(identity.oidc_provider_arn, identity.oidc_issuer_url).apply(
            lambda v: json.dumps(
                irsa_trust_policy(
                    oidc_provider_arn=v[0],
                    oidc_issuer_url=v[1],
                    namespace=namespace,
                    service_account=service_account,
                )
            )
        )
    else:
        trust = pulumi.Output.all(identity.account_id, identity.cluster_name).apply(
            lambda v: json.dumps(
                pod_identity_trust_policy(
                    account_id=v[0],
                    cluster_name=v[1],
                    namespace=namespace,
                    service_account=service_account,
                )
            )
        )
    # No `name=`: Pulumi auto-names the role, so two stacks in one account never collide.
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=trust,
        description=description,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    inline = aws.iam.RolePolicy(
        f"{name}-policy",
        role=role.id,
        policy=policy,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    association = None
    if identity.iam_mode == "pod-identity":
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=identity.cluster_name,
            namespace=namespace,
            service_account=service_account,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=parent),
        )
    return ServiceAccountRole(role=role, policy=inline, association=association)


def pod_identity_agent(
    name: str, *, cluster_name: pulumi.Input[str], parent: pulumi.Resource
) -> aws.eks.Addon:
    """The ``eks-pod-identity-agent`` add-on (only where the stack is asked to manage it)."""
    return aws.eks.Addon(
        f"{name}-pod-identity-agent",
        cluster_name=cluster_name,
        addon_name=POD_IDENTITY_AGENT_ADDON,
        addon_version=POD_IDENTITY_AGENT_ADDON_VERSION,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def csi_driver(
    name: str,
    *,
    identity: ClusterIdentity,
    addon_name: str,
    addon_version: str,
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    description: str,
    manage_pod_identity_agent: bool,
    parent: pulumi.Resource,
) -> tuple[ServiceAccountRole, aws.eks.Addon]:
    """A CSI driver EKS add-on whose controller runs as ``namespace/service_account`` with ``policy``.

    The role (and, with Pod Identity, its association) exists before the add-on starts its
    controller, so the driver's first AWS call already has credentials.
    """
    ready: list[pulumi.Resource] = []
    if manage_pod_identity_agent:
        ready.append(pod_identity_agent(name, cluster_name=identity.cluster_name, parent=parent))
    driver = service_account_role(
        f"{name}-driver",
        identity=identity,
        namespace=namespace,
        service_account=service_account,
        policy=policy,
        description=description,
        parent=parent,
    )
    addon = aws.eks.Addon(
        f"{name}-csi-driver",
        cluster_name=identity.cluster_name,
        addon_name=addon_name,
        addon_version=addon_version,
        service_account_role_arn=driver.role.arn if identity.iam_mode == "irsa" else None,
        resolve_conflicts_on_update="PRESERVE",
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*ready, *driver.ready]),
    )
    return driver, addon

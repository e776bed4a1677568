"""AWS credentials for one Kubernetes service account: an IAM role + EKS Pod Identity association, or IRSA.

Not a component: a helper the storage components call to create their roles as their own children
(``parent=self``), so each role is named after, and destroyed with, the component that needs it.
No AWS keys anywhere: pods get short-lived credentials from EKS Pod Identity or from STS web identity.

It also installs (or adopts) the CSI driver those roles are for: an EKS add-on the stack owns, at the
version EKS offers for the cluster's Kubernetes version unless the stack pins one, or a driver the
cluster already runs (creating an add-on that exists fails with ResourceInUseException, so a cluster
from HyperPod quick setup or a platform team says ``driver: existing``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.builders.storage import (
    IRSA_ROLE_ANNOTATION,
    POD_IDENTITY_AGENT_ADDON,
    DriverSource,
    check_addon_version,
    irsa_trust_policy,
    pod_identity_trust_policy,
)


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
    # The cluster's Kubernetes version (e.g. "1.33"): EKS add-on versions are resolved for it.
    kubernetes_version: pulumi.Input[str] | None = None

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


def addon_version(
    name: str,
    *,
    addon_name: str,
    pinned: str | None,
    config_key: str,
    kubernetes_version: pulumi.Input[str] | None,
    parent: pulumi.Resource,
) -> pulumi.Input[str]:
    """The add-on version to install: ``pinned`` (checked), else the newest build EKS offers for
    ``kubernetes_version`` (``aws eks describe-addon-versions``, through ``aws.eks.get_addon_version``
    with ``most_recent``). Either way it must be of the major the program supports
    (``EKS_ADDON_MAJOR_VERSIONS``), or ``pulumi up`` stops naming ``config_key``.
    """
    if pinned is not None:
        return check_addon_version(addon_name, pinned, config_key)
    if kubernetes_version is None:
        raise ValueError(
            f"{name}: {addon_name} has no pinned version and the cluster's Kubernetes version is unknown "
            f"(ClusterIdentity.kubernetes_version); pin one in {config_key}"
        )
    found = aws.eks.get_addon_version_output(
        addon_name=addon_name,
        kubernetes_version=kubernetes_version,
        most_recent=True,
        opts=pulumi.InvokeOutputOptions(parent=parent),
    )
    return found.version.apply(lambda version: check_addon_version(addon_name, version, config_key))


def pod_identity_agent(
    name: str,
    *,
    identity: ClusterIdentity,
    version: str | None,
    parent: pulumi.Resource,
) -> aws.eks.Addon:
    """The ``eks-pod-identity-agent`` add-on (only where the stack is asked to manage it)."""
    return aws.eks.Addon(
        f"{name}-pod-identity-agent",
        cluster_name=identity.cluster_name,
        addon_name=POD_IDENTITY_AGENT_ADDON,
        addon_version=addon_version(
            name,
            addon_name=POD_IDENTITY_AGENT_ADDON,
            pinned=version,
            config_key="podIdentityAgentVersion",
            kubernetes_version=identity.kubernetes_version,
            parent=parent,
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class CsiDriver:
    """What :func:`csi_driver` set up; ``ready`` is what volumes using the driver must wait for."""

    role: ServiceAccountRole
    addon: aws.eks.Addon | None
    ready: list[pulumi.Resource]


def csi_driver(
    name: str,
    *,
    identity: ClusterIdentity,
    source: DriverSource,
    addon_name: str,
    addon_version_pin: str | None,
    version_config_key: str,
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    description: str,
    manage_pod_identity_agent: bool,
    pod_identity_agent_version: str | None,
    parent: pulumi.Resource,
) -> CsiDriver:
    """A CSI driver whose controller runs as ``namespace/service_account`` with ``policy``.

    ``install``: the EKS add-on, created after the role (and, with Pod Identity, its association), so
    the driver's first AWS call already has credentials; with IRSA the add-on puts the role on its
    service account itself (``service_account_role_arn``).

    ``existing``: no add-on. Pod Identity: the association binds the role to the driver's service
    account. IRSA: the role-arn annotation is patched onto that service account (server-side apply;
    ``pulumi destroy`` removes just that field). Either way the pods the driver runs already only
    get the credentials when they restart (both webhooks act at pod creation): see the README
    "Before the first deploy" for the ``kubectl rollout restart``.
    """
    ready: list[pulumi.Resource] = []
    if manage_pod_identity_agent:
        ready.append(
            pod_identity_agent(name, identity=identity, version=pod_identity_agent_version, parent=parent)
        )
    driver = service_account_role(
        f"{name}-driver",
        identity=identity,
        namespace=namespace,
        service_account=service_account,
        policy=policy,
        description=description,
        parent=parent,
    )
    if source == "existing":
        found: list[pulumi.Resource] = [*ready, *driver.ready]
        if identity.iam_mode == "irsa":
            found.append(
                k8s.core.v1.ServiceAccountPatch(
                    f"{name}-driver-service-account",
                    metadata={
                        "name": service_account,
                        "namespace": namespace,
                        "annotations": {IRSA_ROLE_ANNOTATION: driver.role.arn},
                    },
                    opts=pulumi.ResourceOptions(parent=parent, depends_on=driver.ready),
                )
            )
        return CsiDriver(role=driver, addon=None, ready=found)
    addon = aws.eks.Addon(
        f"{name}-csi-driver",
        cluster_name=identity.cluster_name,
        addon_name=addon_name,
        addon_version=addon_version(
            name,
            addon_name=addon_name,
            pinned=addon_version_pin,
            config_key=version_config_key,
            kubernetes_version=identity.kubernetes_version,
            parent=parent,
        ),
        service_account_role_arn=driver.role.arn if identity.iam_mode == "irsa" else None,
        resolve_conflicts_on_update="PRESERVE",
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*ready, *driver.ready]),
    )
    return CsiDriver(role=driver, addon=addon, ready=[addon])

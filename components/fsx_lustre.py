"""FsxLustreStorage: FSx for Lustre for the Ray pods' shared ``/fsx`` (checkpoints, datasets, results).

What it owns (cluster-scoped and AWS side):

* the ``aws-fsx-csi-driver`` EKS add-on (``fsx.driver: install``, at the version EKS offers for the
  cluster unless pinned) or nothing of the driver itself (``existing``: the cluster already runs it),
  and in both cases an auto-named IAM role bound to exactly the driver's controller service account
  (``kube-system/fsx-csi-controller-sa``) by EKS Pod Identity or IRSA;
* ``dynamic``: a StorageClass the driver provisions a new file system from, and Lustre ingress rules
  (TCP 988 and 1018-1023, from the security group itself) on the file system's security groups. The
  file system's subnet is ``subnet_id`` when given (fsx.subnetId, HyperPod's subnet), else the first
  private subnet of the cluster (:func:`components.builders.storage.choose_fsx_subnet`), never a
  public one;
* ``static``: a PersistentVolume for an existing file system (always ``Retain``).

Names and the lifecycle (``up -> destroy -> up``): the StorageClass and the static PersistentVolume
have deterministic names (``<project>-<stack>-<name>``, :func:`stack_object_name`), because the claim
``RayClusterStack`` creates from ``claim_spec`` names them in immutable fields and outlives ``pulumi
destroy`` with ``retain_data``. The static PersistentVolume follows the claim's retention: a kept
claim keeps its bound volume's ``kubernetes.io/pv-protection`` finalizer, so deleting the volume
would wait forever (pulumi-kubernetes gives up after 10 minutes, on every retry). The StorageClass is
not kept: no finalizer ties it to claims, nothing is lost with it, and the next ``up`` recreates it
under the same name. ``claim_annotations`` tell ``pulumi up`` how long the claim may take to bind
(up to 30 minutes while the driver creates a file system; see builders.storage).

What it does NOT own: the PersistentVolumeClaim. The claim lives in the Ray namespace, which
``RayClusterStack`` creates; if this component created the claim, the namespace would have to exist
before storage and the Ray cluster would depend on storage that depends on its namespace (a cycle).
So this component exposes ``claim_spec`` (the full PVC ``.spec``) and ``mount_path``, and
``RayClusterStack`` creates the claim from them. Because the claim depends on ``claim_spec`` (which
depends on the StorageClass, the rules and the driver), ``pulumi destroy`` deletes the claim first,
while the driver is still running.

Nothing lost: with ``retain_data`` (default) the StorageClass says ``reclaimPolicy: Retain``, so when
the claim goes away the PersistentVolume is only Released and the file system keeps running (and
billing); delete it with ``aws fsx delete-file-system`` when done. ``retain_data=False`` uses
``Delete``: the driver deletes the file system after the claim is deleted. That deletion is
asynchronous; if ``pulumi destroy`` removes the driver before it finishes, the file system stays (it
is never deleted by accident, only possibly left behind).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.builders.storage import (
    FSX_CSI_ADDON,
    FSX_CSI_CONTROLLER_NAMESPACE,
    FSX_CSI_CONTROLLER_SERVICE_ACCOUNT,
    FSX_DYNAMIC_BIND_TIMEOUT_SECONDS,
    LUSTRE_PORT_RANGES,
    STATIC_BIND_TIMEOUT_SECONDS,
    STORAGE_LABELS,
    choose_fsx_subnet,
    claim_await_annotations,
    claim_spec,
    fsx_csi_driver_policy,
    fsx_static_pv_spec,
    fsx_storage_class,
    retention_labels,
    stack_object_name,
)
from components.config import FsxConfig
from components.contract import FSX_MOUNT_PATH
from components.workload_identity import ClusterIdentity, csi_driver


@dataclass(frozen=True, kw_only=True)
class FsxLustreStorageArgs:
    """FSx for Lustre settings plus where the file system lives."""

    config: FsxConfig
    identity: ClusterIdentity
    region: str
    # dynamic: the subnet (one: a Lustre file system lives in one AZ) and security groups of the new
    # file system. The nodes must share one of these groups for the self-referencing rules to admit them.
    # Without subnet_id, the first private subnet among cluster_subnet_ids (the cluster's own subnets).
    subnet_id: pulumi.Input[str] | None = None
    cluster_subnet_ids: pulumi.Input[Sequence[str]] | None = None
    security_group_ids: Sequence[pulumi.Input[str]] = ()
    retain_data: bool = True
    # Install the eks-pod-identity-agent add-on too (pod-identity mode, clusters that lack it).
    manage_pod_identity_agent: bool = False
    # Version of the eks-pod-identity-agent add-on when managed; None = the newest EKS offers.
    pod_identity_agent_version: str | None = None
    # Value of the ray-on-eks/owner tag on created file systems; the driver may only change those.
    # Defaults to "<project>.<stack>.<name>".
    owner_tag_value: str | None = None


class FsxLustreStorage(pulumi.ComponentResource):
    """FSx for Lustre through the CSI driver add-on, exposed as a claim spec for the Ray pods.

    Outputs: ``claim_spec`` (PVC ``.spec``: ReadWriteMany, storageClassName, requests.storage and, for
    static, volumeName), ``claim_annotations`` (plain: the claim's await), ``mount_path`` (plain,
    ``/fsx``), ``storage_class_name`` (dynamic) or ``persistent_volume_name`` (static),
    ``driver_role_arn``.
    """

    claim_spec: pulumi.Output[dict[str, Any]]
    claim_annotations: dict[str, str]
    storage_class_name: pulumi.Output[str] | None
    persistent_volume_name: pulumi.Output[str] | None
    driver_role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: FsxLustreStorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        # Checked before registering anything, so a bad argument leaves nothing half-created.
        validate_args(args)
        super().__init__("ray-on-eks:storage:FsxLustreStorage", name, None, opts)
        cfg = args.config

        self.mount_path = FSX_MOUNT_PATH
        self.storage_class_name = None
        self.persistent_volume_name = None
        owner = args.owner_tag_value or f"{pulumi.get_project()}.{pulumi.get_stack()}.{name}"
        identity = args.identity

        policy = pulumi.Output.all(identity.partition, identity.account_id).apply(
            lambda v: json.dumps(
                fsx_csi_driver_policy(
                    partition=v[0],
                    region=args.region,
                    account_id=v[1],
                    owner_tag_value=owner,
                    provisioning=cfg.mode == "dynamic",
                )
            )
        )
        driver = csi_driver(
            name,
            identity=identity,
            source=cfg.driver,
            addon_name=FSX_CSI_ADDON,
            addon_version_pin=cfg.driver_version,
            version_config_key="fsx.driverVersion",
            namespace=FSX_CSI_CONTROLLER_NAMESPACE,
            service_account=FSX_CSI_CONTROLLER_SERVICE_ACCOUNT,
            policy=policy,
            description="FSx for Lustre CSI controller (ray-on-eks): create, resize, delete own file systems",
            manage_pod_identity_agent=args.manage_pod_identity_agent,
            pod_identity_agent_version=args.pod_identity_agent_version,
            parent=self,
        )
        self.driver_role_arn = driver.role.role.arn

        if cfg.mode == "dynamic":
            self.claim_spec = self._dynamic(name, args, owner, driver.ready)
            self.claim_annotations = claim_await_annotations(FSX_DYNAMIC_BIND_TIMEOUT_SECONDS)
        else:
            self.claim_spec = self._static(name, args, driver.ready)
            self.claim_annotations = claim_await_annotations(STATIC_BIND_TIMEOUT_SECONDS)

        self.register_outputs(
            {
                "claimSpec": self.claim_spec,
                "claimAnnotations": self.claim_annotations,
                "mountPath": self.mount_path,
                "storageClassName": self.storage_class_name,
                "persistentVolumeName": self.persistent_volume_name,
                "driverRoleArn": self.driver_role_arn,
            }
        )

    def _dynamic(
        self, name: str, args: FsxLustreStorageArgs, owner: str, driver_ready: list[pulumi.Resource]
    ) -> pulumi.Output[dict[str, Any]]:
        cfg = args.config
        rules: list[pulumi.Resource] = []
        for index, group in enumerate(args.security_group_ids):
            for low, high in LUSTRE_PORT_RANGES:
                suffix = str(low) if low == high else f"{low}-{high}"
                rules.append(
                    aws.vpc.SecurityGroupIngressRule(
                        f"{name}-lustre-{index}-{suffix}",
                        security_group_id=group,
                        # Self-referencing: only members of the same group (nodes and the file
                        # system's network interfaces), only TCP, only the Lustre ports.
                        referenced_security_group_id=group,
                        ip_protocol="tcp",
                        from_port=low,
                        to_port=high,
                        description=f"Lustre (FSx) TCP {suffix} within the group, ray-on-eks {name}",
                        opts=pulumi.ResourceOptions(parent=self),
                    )
                )
        fields = pulumi.Output.all(self._subnet(args), *args.security_group_ids).apply(
            lambda v: fsx_storage_class(
                subnet_id=v[0],
                security_group_ids=list(v[1:]),
                deployment_type=cfg.deployment_type,
                per_unit_storage_throughput=cfg.throughput,
                data_compression=cfg.data_compression,
                lustre_version=cfg.lustre_version,
                owner_tag_value=owner,
                retain_data=args.retain_data,
            )
        )
        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-sc",
            metadata={
                # Deterministic: the retained claim names this class (see the module docstring).
                "name": stack_object_name(pulumi.get_project(), pulumi.get_stack(), name),
                "labels": {**STORAGE_LABELS, **retention_labels(args.retain_data)},
            },
            provisioner=fields["provisioner"],
            parameters=fields["parameters"],
            reclaim_policy=fields["reclaimPolicy"],
            mount_options=fields["mountOptions"],
            volume_binding_mode=fields["volumeBindingMode"],
            allow_volume_expansion=fields["allowVolumeExpansion"],
            # The driver and the network rules must outlive every claim on this class.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*driver_ready, *rules]),
        )
        self.storage_class_name = storage_class.metadata.name
        storage = f"{cfg.storage_capacity_gib}Gi"
        return storage_class.metadata.name.apply(
            lambda sc: claim_spec(storage=storage, storage_class_name=sc)
        )

    def _static(
        self, name: str, args: FsxLustreStorageArgs, driver_ready: list[pulumi.Resource]
    ) -> pulumi.Output[dict[str, Any]]:
        cfg = args.config
        assert cfg.file_system_id and cfg.dns_name and cfg.mount_name  # checked by validate_args
        # Builders emit the Kubernetes (camelCase) field names; the SDK passes them through as written.
        spec: Any = fsx_static_pv_spec(
            file_system_id=cfg.file_system_id,
            dns_name=cfg.dns_name,
            mount_name=cfg.mount_name,
            capacity_gib=cfg.storage_capacity_gib,
        )
        volume = k8s.core.v1.PersistentVolume(
            f"{name}-pv",
            # An existing file system is never deleted by this program, whatever retainData says.
            metadata={
                # Deterministic: the retained claim names this volume (spec.volumeName, immutable).
                "name": stack_object_name(pulumi.get_project(), pulumi.get_stack(), name),
                "labels": {**STORAGE_LABELS, **retention_labels(True)},
            },
            spec=spec,
            # Kept exactly when the claim is: a kept claim holds this volume's pv-protection finalizer.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=driver_ready, retain_on_delete=args.retain_data
            ),
        )
        self.persistent_volume_name = volume.metadata.name
        storage = f"{cfg.storage_capacity_gib}Gi"
        return volume.metadata.name.apply(
            lambda pv: claim_spec(storage=storage, storage_class_name="", volume_name=pv)
        )

    def _subnet(self, args: FsxLustreStorageArgs) -> pulumi.Input[str]:
        """The file system's subnet: ``subnet_id`` as given, else the first private cluster subnet.

        The one place this choice is made (HyperPod and explicit overrides arrive as ``subnet_id``).
        One ``ec2:DescribeSubnets`` invoke filtered to the cluster's subnets that do not map public IPs.
        """
        if args.subnet_id is not None:
            return args.subnet_id
        assert args.cluster_subnet_ids is not None  # checked by validate_args
        candidates = pulumi.Output.from_input(args.cluster_subnet_ids)
        private = aws.ec2.get_subnets_output(
            filters=candidates.apply(
                lambda ids: [
                    aws.ec2.GetSubnetsFilterArgs(name="subnet-id", values=list(ids)),
                    aws.ec2.GetSubnetsFilterArgs(name="map-public-ip-on-launch", values=["false"]),
                ]
            ),
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        return pulumi.Output.all(candidates, private.ids).apply(
            lambda v: choose_fsx_subnet(cluster_subnet_ids=list(v[0]), private_subnet_ids=set(v[1]))
        )


def validate_args(args: FsxLustreStorageArgs) -> None:
    """Argument checks a caller could get wrong even with a valid stack config (raised before any child)."""
    args.identity.validate("FsxLustreStorageArgs")
    cfg = args.config
    if cfg.mode == "dynamic":
        if args.subnet_id is None and args.cluster_subnet_ids is None:
            raise ValueError(
                "FsxLustreStorageArgs.subnet_id is required for mode 'dynamic' (the subnet the file "
                "system is created in; set fsx.subnetId, or pass cluster_subnet_ids to pick a private one)"
            )
        if not args.security_group_ids:
            raise ValueError(
                "FsxLustreStorageArgs.security_group_ids is empty; dynamic FSx needs the security group "
                "the nodes share (e.g. the EKS cluster security group)"
            )
    elif not (cfg.file_system_id and cfg.dns_name and cfg.mount_name):
        raise ValueError(
            "FsxLustreStorageArgs.config: mode 'static' needs file_system_id, dns_name and mount_name"
        )

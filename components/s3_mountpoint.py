"""S3Mountpoint: an S3 bucket at ``/s3`` in every Ray pod (Mountpoint for Amazon S3 CSI driver), and
bucket access for the Ray pods' own service account.

What it owns:

* the bucket, when ``createBucket`` (versioned, SSE-KMS with the AWS managed key and a bucket key, all
  public access blocked, BucketOwnerEnforced, TLS-only policy) - or just the name of an existing one;
* the ``aws-mountpoint-s3-csi-driver`` EKS add-on (v2; ``s3.driver: install``, at the version EKS
  offers for the cluster unless pinned) or nothing of the driver itself (``existing``), and in both
  cases an auto-named IAM role that reaches exactly this bucket, bound to
  ``kube-system/s3-csi-driver-sa`` by EKS Pod Identity or IRSA;
* a static PersistentVolume for the bucket (``Retain``; the driver never deletes buckets);
* an IAM role with the same bucket-only policy for the Ray pods' service account
  (``<namespace>/ray-workloads``), so workloads can also read and write ``s3://<bucket>`` directly
  (Ray Train's ``storage_path``). IRSA needs the role on the service account as an annotation:
  ``ray_service_account_annotations`` is ready to pass to ``RayClusterStack``.

Like FsxLustreStorage it exposes ``claim_spec`` and ``mount_path`` instead of creating the claim: the
Ray namespace (and the claim in it) belongs to ``RayClusterStack`` (see fsx_lustre.py for why).

Nothing lost: a created bucket is kept by ``pulumi destroy`` (``retain_on_delete``: destroy
completes, the bucket and its settings stay; ``protect`` would instead block destroy). Its security
settings are retained with it, so a kept bucket stays private and TLS-only. ``retain_data=False``
deletes it, objects included (``force_destroy``). An existing bucket is never touched.

``up -> destroy -> up``: the PersistentVolume names the bucket in immutable fields (``csi``) and is
kept with the claim that binds it (a kept claim holds the volume's ``kubernetes.io/pv-protection``
finalizer, so a volume deleted under a kept claim would block ``pulumi destroy``). So both have
deterministic names: the volume ``<project>-<stack>-<name>``, a created bucket without ``bucketName``
``<project>-<stack>-<name>-<account id>`` (not a random suffix). The next ``up`` finds a bucket kept by
an earlier destroy (``ListBuckets`` with that prefix; ``s3:ListAllMyBuckets``) and adopts it with the
``import`` resource option (the engine treats a later ``up`` with the same id as a normal update,
pulumi/pulumi developer-docs/architecture/import.md); its retained settings are re-applied by their
own resources, whose create is a ``Put*`` of the bucket's configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.builders.storage import (
    IRSA_ROLE_ANNOTATION,
    S3_CSI_ADDON,
    S3_CSI_DRIVER_NAMESPACE,
    S3_CSI_DRIVER_SERVICE_ACCOUNT,
    S3_NOMINAL_CAPACITY,
    STATIC_BIND_TIMEOUT_SECONDS,
    STORAGE_LABELS,
    claim_await_annotations,
    claim_spec,
    retention_labels,
    s3_bucket_access_policy,
    s3_static_pv_spec,
    stack_bucket_name,
    stack_object_name,
    tls_only_bucket_policy,
)
from components.config import S3Config
from components.contract import RAY_SERVICE_ACCOUNT, S3_MOUNT_PATH
from components.workload_identity import ClusterIdentity, csi_driver, service_account_role

# Versioning keeps overwritten and deleted objects; they expire after this many days.
NONCURRENT_VERSION_DAYS = 30
ABORT_INCOMPLETE_UPLOAD_DAYS = 7


@dataclass(frozen=True, kw_only=True)
class S3MountpointArgs:
    """The bucket (created or existing) and who may use it."""

    config: S3Config
    identity: ClusterIdentity
    region: str
    # The Ray pods' namespace and service account, granted the same bucket-only access.
    ray_namespace: str
    ray_service_account: str = RAY_SERVICE_ACCOUNT
    retain_data: bool = True
    # Install the eks-pod-identity-agent add-on too (pod-identity mode, clusters that lack it).
    manage_pod_identity_agent: bool = False
    # Version of the eks-pod-identity-agent add-on when managed; None = the newest EKS offers.
    pod_identity_agent_version: str | None = None


class S3Mountpoint(pulumi.ComponentResource):
    """An S3 bucket mounted with Mountpoint for S3, and bucket-scoped roles for the driver and Ray pods.

    Outputs: ``bucket_name``, ``bucket_arn``, ``claim_spec`` (PVC ``.spec``: ReadWriteMany,
    storageClassName "", volumeName), ``claim_annotations`` (plain: the claim's await), ``mount_path``
    (plain, ``/s3``), ``persistent_volume_name``,
    ``driver_role_arn``, ``ray_role_arn`` and ``ray_service_account_annotations`` (IRSA: the role-arn
    annotation; Pod Identity: empty).
    """

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    claim_spec: pulumi.Output[dict[str, Any]]
    claim_annotations: dict[str, str]
    persistent_volume_name: pulumi.Output[str]
    driver_role_arn: pulumi.Output[str]
    ray_role_arn: pulumi.Output[str]
    ray_service_account_annotations: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: S3MountpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Checked before registering anything, so a bad argument leaves nothing half-created.
        validate_args(args)
        super().__init__("ray-on-eks:storage:S3Mountpoint", name, None, opts)
        cfg = args.config
        identity = args.identity

        self.mount_path = S3_MOUNT_PATH
        if cfg.create_bucket:
            self.bucket_name, self.bucket_arn = self._bucket(name, cfg.bucket_name, args)
        else:
            assert cfg.bucket_name is not None
            existing = cfg.bucket_name
            self.bucket_name = pulumi.Output.from_input(existing)
            self.bucket_arn = pulumi.Output.from_input(identity.partition).apply(
                lambda partition: f"arn:{partition}:s3:::{existing}"
            )

        access = self.bucket_arn.apply(lambda arn: json.dumps(s3_bucket_access_policy(bucket_arn=arn)))

        driver = csi_driver(
            name,
            identity=identity,
            source=cfg.driver,
            addon_name=S3_CSI_ADDON,
            addon_version_pin=cfg.driver_version,
            version_config_key="s3.driverVersion",
            namespace=S3_CSI_DRIVER_NAMESPACE,
            service_account=S3_CSI_DRIVER_SERVICE_ACCOUNT,
            policy=access,
            description="Mountpoint for S3 CSI driver (ray-on-eks): one bucket only",
            manage_pod_identity_agent=args.manage_pod_identity_agent,
            pod_identity_agent_version=args.pod_identity_agent_version,
            parent=self,
        )
        self.driver_role_arn = driver.role.role.arn

        ray = service_account_role(
            f"{name}-ray",
            identity=identity,
            namespace=args.ray_namespace,
            service_account=args.ray_service_account,
            policy=access,
            description="Ray pods (ray-on-eks): read and write one bucket",
            parent=self,
        )
        self.ray_role_arn = ray.role.arn
        if identity.iam_mode == "irsa":
            self.ray_service_account_annotations = ray.role.arn.apply(lambda arn: {IRSA_ROLE_ANNOTATION: arn})
        else:
            self.ray_service_account_annotations = pulumi.Output.from_input({})

        # Unique across the cluster's PVs, stable across updates.
        handle_prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        # Builders emit the Kubernetes (camelCase) field names; the SDK passes them through as written.
        spec: Any = self.bucket_name.apply(
            lambda bucket: s3_static_pv_spec(
                bucket_name=bucket, region=args.region, volume_handle=f"{handle_prefix}-{bucket}"
            )
        )
        volume = k8s.core.v1.PersistentVolume(
            f"{name}-pv",
            # Deleting this static volume never deletes objects; the label declares the stack's retainData.
            metadata={
                # Deterministic: the retained claim names this volume (spec.volumeName, immutable).
                "name": stack_object_name(pulumi.get_project(), pulumi.get_stack(), name),
                "labels": {**STORAGE_LABELS, **retention_labels(args.retain_data)},
            },
            spec=spec,
            # Kept exactly when the claim is: a kept claim holds this volume's pv-protection finalizer.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=driver.ready, retain_on_delete=args.retain_data
            ),
        )
        self.persistent_volume_name = volume.metadata.name
        self.claim_spec = volume.metadata.name.apply(
            lambda pv: claim_spec(storage=S3_NOMINAL_CAPACITY, storage_class_name="", volume_name=pv)
        )
        # A static volume binds within seconds; the explicit await documents (and bounds) it.
        self.claim_annotations = claim_await_annotations(STATIC_BIND_TIMEOUT_SECONDS)

        self.register_outputs(
            {
                "bucketName": self.bucket_name,
                "bucketArn": self.bucket_arn,
                "claimSpec": self.claim_spec,
                "claimAnnotations": self.claim_annotations,
                "mountPath": self.mount_path,
                "persistentVolumeName": self.persistent_volume_name,
                "driverRoleArn": self.driver_role_arn,
                "rayRoleArn": self.ray_role_arn,
                "rayServiceAccountAnnotations": self.ray_service_account_annotations,
            }
        )

    def _bucket(
        self, name: str, bucket_name: str | None, args: S3MountpointArgs
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A private, versioned, encrypted, TLS-only bucket; kept on destroy unless retain_data is false."""
        retain_data = args.retain_data
        if bucket_name is None:
            # Plain (a synchronous invoke): the name decides `import`, a plain resource option.
            account = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
            bucket_name = stack_bucket_name(pulumi.get_project(), pulumi.get_stack(), name, account)
        kept = (
            bucket_name
            in aws.s3.get_buckets(
                prefix=bucket_name, bucket_region=args.region, opts=pulumi.InvokeOptions(parent=self)
            ).buckets
        )
        if kept and not retain_data:
            # Adopting it would make `pulumi destroy` delete a bucket (and its objects) it never created.
            raise ValueError(
                f"s3.bucketName: bucket {bucket_name!r} already exists (kept by an earlier destroy?); with "
                "retainData: false it would be deleted with its objects. Set retainData: true to adopt it, "
                f"or delete it first (aws s3 rb --force s3://{bucket_name})"
            )
        # Retained together: a kept bucket keeps its encryption, public access block and TLS policy.
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=retain_data)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=bucket_name,
            force_destroy=not retain_data,
            tags=retention_labels(retain_data),
            # A kept bucket is adopted, not re-created (CreateBucket fails: BucketAlreadyOwnedByYou).
            opts=pulumi.ResourceOptions.merge(
                keep, pulumi.ResourceOptions(import_=bucket_name if kept else None)
            ),
        )
        blocked = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=keep,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=keep,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=keep,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            # SSE-KMS with the AWS managed aws/s3 key: its key policy already admits principals of this
            # account that may use S3, so the bucket-only IAM policies need no KMS statements. The bucket
            # key cuts KMS requests (and cost) for Mountpoint's many small reads.
            rules=[
                {
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"},
                    "bucket_key_enabled": True,
                }
            ],
            opts=keep,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-and-abort-uploads",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": ABORT_INCOMPLETE_UPLOAD_DAYS
                    },
                }
            ],
            opts=keep,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(bucket_arn=arn))),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=retain_data, depends_on=[blocked]),
        )
        return bucket.bucket, bucket.arn


def validate_args(args: S3MountpointArgs) -> None:
    """Argument checks a caller could get wrong even with a valid stack config (raised before any child)."""
    args.identity.validate("S3MountpointArgs")
    if not args.config.create_bucket and not args.config.bucket_name:
        raise ValueError(
            "S3MountpointArgs.config: create_bucket is false, so bucket_name must name the existing bucket"
        )
    if not args.ray_namespace:
        raise ValueError("S3MountpointArgs.ray_namespace is empty; pass the Ray namespace (config.namespace)")
    if not args.ray_service_account:
        raise ValueError("S3MountpointArgs.ray_service_account is empty; pass contract.RAY_SERVICE_ACCOUNT")

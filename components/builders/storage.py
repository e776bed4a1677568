"""Pure builders for shared storage: IAM documents, the FSx StorageClass, PersistentVolumes and claim specs.

Plain values in, plain dicts out, no Pulumi: ``FsxLustreStorage`` and ``S3Mountpoint`` call these inside
``Output.apply`` once the ARNs and ids are known, and the tests call them directly.

The drivers' service accounts are fixed by the EKS add-ons (``aws eks describe-addon-configuration
--query podIdentityConfiguration``); every trust policy below names exactly one of them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any, Literal

from components.contract import FSX_MOUNT_PATH, RETAIN_DATA_LABEL, STORAGE_SUBDIR
from components.versions import EKS_ADDON_MAJOR_VERSIONS

# --------------------------------------------------------------------------------------------------
# Driver identities and fixed names
# --------------------------------------------------------------------------------------------------

FSX_CSI_PROVISIONER = "fsx.csi.aws.com"
FSX_CSI_ADDON = "aws-fsx-csi-driver"
# The add-on's controller (the only part that calls the FSx API) runs as this service account.
FSX_CSI_CONTROLLER_NAMESPACE = "kube-system"
FSX_CSI_CONTROLLER_SERVICE_ACCOUNT = "fsx-csi-controller-sa"

S3_CSI_DRIVER = "s3.csi.aws.com"
S3_CSI_ADDON = "aws-mountpoint-s3-csi-driver"
# Mountpoint CSI driver v2: driver-level credentials come from this service account (IRSA or Pod Identity).
S3_CSI_DRIVER_NAMESPACE = "kube-system"
S3_CSI_DRIVER_SERVICE_ACCOUNT = "s3-csi-driver-sa"

POD_IDENTITY_AGENT_ADDON = "eks-pod-identity-agent"
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"

# Lustre client traffic: the LNet port and the range Lustre uses between clients and servers
# (FSx for Lustre user guide, "File system access control with Amazon VPC").
LUSTRE_PORT_RANGES: tuple[tuple[int, int], ...] = ((988, 988), (1018, 1023))

# Tag the StorageClass puts on every file system the driver creates (parameter extraTags); the driver's
# IAM policy only lets it update or delete file systems that carry it.
FSX_OWNER_TAG_KEY = "ray-on-eks/owner"

# The Ray image runs as user "ray" (uid 1000) in group "users" (gid 100).
RAY_UID = 1000
RAY_GID = 100

# Kubernetes needs a size on every PV/PVC; S3 has none, so this value is informational only.
S3_NOMINAL_CAPACITY = "1200Gi"

IamMode = Literal["pod-identity", "irsa"]

# Labels on the cluster-scoped objects this program creates (StorageClass, PersistentVolumes).
STORAGE_LABELS = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "ray-on-eks"}

# --- How long `pulumi up` waits for a claim to bind ------------------------------------------------
# pulumi-kubernetes' built-in PersistentVolumeClaim awaiter (provider/pkg/await/awaiters.go,
# untilCoreV1PersistentVolumeClaimReady) waits at most 5 minutes for an Immediate claim to be Bound,
# whatever `pulumi.com/timeoutSeconds` says (its WatchUntil has a fixed 5-minute limit). A
# `pulumi.com/waitFor` annotation replaces the built-in awaiter (await.go: "Use our built-in await logic
# only if the user hasn't specified any await overrides"), and `pulumi.com/timeoutSeconds` then bounds
# it (metadata.TimeoutDuration). Both annotations exist since pulumi-kubernetes 4.18 (waitFor).
CLAIM_BOUND = "jsonpath={.status.phase}=Bound"
# The FSx driver creates the file system while the claim is Pending: AWS documents 5-15 minutes for a
# PERSISTENT_2 file system (longer for large ones). Twice the worst typical case.
FSX_DYNAMIC_BIND_TIMEOUT_SECONDS = 1800
# A static volume (existing file system, S3 bucket) binds within seconds of the claim's creation.
STATIC_BIND_TIMEOUT_SECONDS = 300

# DNS-1123 subdomain (StorageClass and PersistentVolume names): lowercase alphanumerics, '-' and '.'.
_DNS_SUBDOMAIN_MAX = 253
_S3_BUCKET_MAX = 63


# --------------------------------------------------------------------------------------------------
# Names and awaits
# --------------------------------------------------------------------------------------------------


def _dns_label_text(text: str) -> str:
    """``text`` lowercased with every run of characters outside ``[a-z0-9]`` turned into one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def stack_object_name(project: str, stack: str, role: str) -> str:
    """Deterministic name of a cluster-scoped Kubernetes object of one stack (StorageClass, static PV).

    Not auto-named, because a retained claim names its StorageClass / PersistentVolume in an immutable
    field: a fresh random suffix on the next ``pulumi up`` would make that claim's spec unappliable
    (422). ``<project>-<stack>-<role>`` is unique per stack on a shared cluster and stable across
    ``up -> destroy -> up``.
    """
    name = "-".join(part for part in map(_dns_label_text, (project, stack, role)) if part)
    if not name:
        raise ValueError(f"stack_object_name: no usable characters in {project!r}/{stack!r}/{role!r}")
    return name[:_DNS_SUBDOMAIN_MAX].rstrip("-")


def stack_bucket_name(project: str, stack: str, role: str, account_id: str) -> str:
    """Deterministic name of the bucket a stack creates: ``<project>-<stack>-<role>-<account id>``.

    Not auto-named: the retained bucket is named by the retained S3 PersistentVolume (an immutable
    ``csi`` field) and must be found again by the next ``pulumi up``. The account id makes the name
    unique across accounts (bucket names are global); the prefix is shortened to fit 63 characters.
    """
    suffix = f"-{_dns_label_text(account_id)}"
    prefix = stack_object_name(project, stack, role)[: _S3_BUCKET_MAX - len(suffix)].rstrip("-")
    return f"{prefix}{suffix}"


def claim_await_annotations(timeout_seconds: int) -> dict[str, str]:
    """``pulumi up`` waits until the claim is Bound, for at most ``timeout_seconds`` (see CLAIM_BOUND)."""
    if timeout_seconds <= 0:
        raise ValueError(f"claim_await_annotations: timeout_seconds must be positive, got {timeout_seconds}")
    return {"pulumi.com/waitFor": CLAIM_BOUND, "pulumi.com/timeoutSeconds": str(timeout_seconds)}


def choose_fsx_subnet(*, cluster_subnet_ids: Sequence[str], private_subnet_ids: Collection[str]) -> str:
    """The subnet a dynamic FSx file system is created in when ``fsx.subnetId`` is unset (EKS).

    The first of the cluster's subnets (in the cluster's own order, so the choice is stable) that does
    not give instances a public IP (``MapPublicIpOnLaunch`` false): a file system in a public subnet
    would put its network interfaces next to an internet gateway. Raises a one-line error naming
    ``fsx.subnetId`` when the cluster has no such subnet.
    """
    for subnet in cluster_subnet_ids:
        if subnet in private_subnet_ids:
            return subnet
    raise ValueError(
        f"fsx.subnetId: none of the cluster's subnets {list(cluster_subnet_ids)} is private "
        "(MapPublicIpOnLaunch false); set fsx.subnetId to a private subnet of the cluster's VPC"
    )


# How a storage driver gets onto the cluster: ``install`` (this stack owns its EKS add-on) or
# ``existing`` (the cluster already runs it: HyperPod quick setup, a platform team's add-on or Helm
# release; the stack only gives its service account an IAM role).
DriverSource = Literal["install", "existing"]
# The IRSA annotation the EKS Pod Identity webhook reads on a service account.
IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
ADDON_VERSION_PATTERN = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")


def check_addon_version(addon_name: str, version: str, config_key: str) -> str:
    """``version`` if it is an EKS build of the major the program supports for ``addon_name``.

    Raises ``ValueError`` naming ``config_key`` (where a user pins it) and the fix; used for pins from
    config and for versions resolved from EKS at deploy time alike.
    """
    major = EKS_ADDON_MAJOR_VERSIONS[addon_name]
    if not ADDON_VERSION_PATTERN.match(version):
        raise ValueError(
            f"{config_key}: {version!r} is not an EKS add-on version such as {major}.0.0-eksbuild.1 "
            f"(aws eks describe-addon-versions --addon-name {addon_name} --kubernetes-version <version>)"
        )
    if version.split(".", 1)[0] != major:
        raise ValueError(
            f"{config_key}: {addon_name} {version} is not a {major}.x build, the major this program is "
            f"written for; pin a {major} build in {config_key} "
            f"(aws eks describe-addon-versions --addon-name {addon_name} --kubernetes-version <version>)"
        )
    return version


# --------------------------------------------------------------------------------------------------
# IAM
# --------------------------------------------------------------------------------------------------


def retention_labels(retained: bool) -> dict[str, str]:
    """Labels (or AWS tags) that declare whether a data-bearing resource survives ``pulumi destroy``."""
    return {RETAIN_DATA_LABEL: "true" if retained else "false"}


def pod_identity_trust_policy(
    *, account_id: str, cluster_name: str, namespace: str, service_account: str
) -> dict[str, Any]:
    """Trust policy for an EKS Pod Identity role, usable only by one service account of one cluster.

    The ``PodIdentityAssociation`` already picks the service account; the conditions on the session tags
    EKS Pod Identity sets (``eks-cluster-name``, ``kubernetes-namespace``, ``kubernetes-service-account``,
    EKS user guide "Create IAM role with trust policy required by EKS Pod Identity") make the role itself
    refuse any other association in the account, so a second association cannot widen who uses it.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": account_id,
                        "aws:RequestTag/eks-cluster-name": cluster_name,
                        "aws:RequestTag/kubernetes-namespace": namespace,
                        "aws:RequestTag/kubernetes-service-account": service_account,
                    }
                },
            }
        ],
    }


def irsa_trust_policy(
    *, oidc_provider_arn: str, oidc_issuer_url: str, namespace: str, service_account: str
) -> dict[str, Any]:
    """Trust policy for IRSA: web identity from the cluster's OIDC provider, for exactly one service account."""
    issuer = oidc_issuer_url.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{issuer}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


def fsx_csi_driver_policy(
    *, partition: str, region: str, account_id: str, owner_tag_value: str, provisioning: bool = True
) -> dict[str, Any]:
    """What the FSx for Lustre CSI controller needs to create, resize and delete file systems.

    ``provisioning=False`` (static volumes only): the controller creates nothing, so it may only describe.

    Narrower than the driver's documented example (and far narrower than AmazonFSxFullAccess):
    * Update/Delete only on file systems tagged ``ray-on-eks/owner=<owner_tag_value>``, which this stack's
      StorageClass applies through ``extraTags``; file systems of other stacks or people are untouchable.
    * Create and TagResource cannot be tied to an existing resource (the file system does not exist yet),
      so they are limited to this account and region; DescribeFileSystems has no resource-level support.
    * The S3 data-repository service-linked role and s3:ListBucket are left out: the StorageClass does
      not configure S3 import/export. Add them if you link a bucket.
    * Read-only EC2 describes: CreateFileSystem validates the subnet and security groups as the caller.
    """
    file_systems = f"arn:{partition}:fsx:{region}:{account_id}:file-system/*"
    if not provisioning:
        return {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Describe", "Effect": "Allow", "Action": ["fsx:DescribeFileSystems"], "Resource": "*"}
            ],
        }
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CreateAndTagFileSystems",
                "Effect": "Allow",
                "Action": ["fsx:CreateFileSystem", "fsx:TagResource"],
                "Resource": file_systems,
            },
            {
                "Sid": "ChangeOnlyOwnFileSystems",
                "Effect": "Allow",
                "Action": ["fsx:DeleteFileSystem", "fsx:UpdateFileSystem"],
                "Resource": file_systems,
                "Condition": {"StringEquals": {f"aws:ResourceTag/{FSX_OWNER_TAG_KEY}": owner_tag_value}},
            },
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Action": [
                    "fsx:DescribeFileSystems",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeNetworkInterfaces",
                ],
                "Resource": "*",
            },
            {
                # FSx creates its own service-linked role the first time it is used in an account.
                "Sid": "FsxServiceLinkedRole",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": f"arn:{partition}:iam::{account_id}:role/aws-service-role/fsx.amazonaws.com/*",
                "Condition": {"StringLike": {"iam:AWSServiceName": "fsx.amazonaws.com"}},
            },
        ],
    }


def s3_bucket_access_policy(*, bucket_arn: str) -> dict[str, Any]:
    """Read, write and delete objects in exactly one bucket (Mountpoint's documented minimum)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListTheBucket",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
            },
            {
                "Sid": "ObjectsInTheBucket",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                "Resource": f"{bucket_arn}/*",
            },
        ],
    }


def tls_only_bucket_policy(*, bucket_arn: str) -> dict[str, Any]:
    """Bucket policy denying every request that does not use TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


# --------------------------------------------------------------------------------------------------
# Kubernetes objects
# --------------------------------------------------------------------------------------------------


def fsx_storage_class(
    *,
    subnet_id: str,
    security_group_ids: list[str],
    deployment_type: str,
    per_unit_storage_throughput: int | None,
    data_compression: str,
    lustre_version: str,
    owner_tag_value: str,
    retain_data: bool,
) -> dict[str, Any]:
    """StorageClass fields (everything but metadata) for dynamically provisioned FSx for Lustre.

    ``reclaimPolicy: Retain`` keeps the file system when its claim is deleted (``pulumi destroy`` with
    ``retainData: true``); ``Delete`` lets the driver delete it with the claim.
    """
    if not security_group_ids:
        raise ValueError("security_group_ids is empty; the file system needs at least one security group")
    parameters: dict[str, str] = {
        "subnetId": subnet_id,
        "securityGroupIds": ",".join(security_group_ids),
        "deploymentType": deployment_type,
        "dataCompressionType": data_compression,
        "fileSystemTypeVersion": lustre_version,
        "extraTags": f"{FSX_OWNER_TAG_KEY}={owner_tag_value}",
    }
    if per_unit_storage_throughput is not None:
        # StorageClass parameters are strings; the driver parses the number.
        parameters["perUnitStorageThroughput"] = str(per_unit_storage_throughput)
    return {
        "provisioner": FSX_CSI_PROVISIONER,
        "parameters": parameters,
        "reclaimPolicy": "Retain" if retain_data else "Delete",
        # flock: Ray Train and many Python libraries take file locks on the shared checkpoint directory.
        "mountOptions": ["flock"],
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def fsx_static_pv_spec(
    *, file_system_id: str, dns_name: str, mount_name: str, capacity_gib: int
) -> dict[str, Any]:
    """PersistentVolume spec for an existing file system. Always Retain: we never delete what we did not create."""
    return {
        "capacity": {"storage": f"{capacity_gib}Gi"},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "mountOptions": ["flock"],
        "csi": {
            "driver": FSX_CSI_PROVISIONER,
            "volumeHandle": file_system_id,
            "volumeAttributes": {"dnsname": dns_name, "mountname": mount_name},
        },
    }


def s3_static_pv_spec(*, bucket_name: str, region: str, volume_handle: str) -> dict[str, Any]:
    """PersistentVolume spec that mounts ``bucket_name`` with Mountpoint for S3, writable by the Ray user.

    Mount options: ``allow-delete`` (Ray Train prunes old checkpoints), ``region`` (no lookup at mount),
    ``uid``/``gid`` + ``allow-other`` so the non-root ray user (uid 1000, gid 100) owns the files.
    Credentials come from the driver's IAM role; no option here carries or hides keys.
    """
    return {
        "capacity": {"storage": S3_NOMINAL_CAPACITY},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "mountOptions": [
            "allow-delete",
            f"region {region}",
            f"uid={RAY_UID}",
            f"gid={RAY_GID}",
            "allow-other",
        ],
        "csi": {
            "driver": S3_CSI_DRIVER,
            "volumeHandle": volume_handle,
            "volumeAttributes": {"bucketName": bucket_name},
        },
    }


def claim_spec(
    *, storage: str, storage_class_name: str = "", volume_name: str | None = None
) -> dict[str, Any]:
    """A PersistentVolumeClaim ``.spec`` shared by every Ray pod (ReadWriteMany).

    Static claims use ``storageClassName: ""`` and bind to ``volume_name``; dynamic ones name the class.
    """
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": storage_class_name,
        "resources": {"requests": {"storage": storage}},
    }
    if volume_name is not None:
        spec["volumeName"] = volume_name
    return spec


def storage_path_for(fsx_enabled: bool, bucket: str | None) -> str | None:
    """Where Ray Train writes runs and checkpoints (``STORAGE_PATH``): FSx first, else the bucket, else None.

    FSx is preferred because it is a POSIX file system at the same path on every pod; with only S3,
    Ray Train writes to the bucket directly through pyarrow's S3 filesystem (the pods' IAM role).
    """
    if fsx_enabled:
        return f"{FSX_MOUNT_PATH}/{STORAGE_SUBDIR}"
    if bucket:
        return f"s3://{bucket}/{STORAGE_SUBDIR}"
    return None

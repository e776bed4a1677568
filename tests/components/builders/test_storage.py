"""Pure storage builders: IAM documents bind exactly one service account / bucket, and the StorageClass,
PersistentVolumes and claim specs carry the fields the CSI drivers read. No Pulumi involved."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.builders.storage import (
    FSX_OWNER_TAG_KEY,
    LUSTRE_PORT_RANGES,
    choose_fsx_subnet,
    claim_await_annotations,
    claim_spec,
    fsx_csi_driver_policy,
    fsx_static_pv_spec,
    fsx_storage_class,
    irsa_trust_policy,
    pod_identity_trust_policy,
    s3_bucket_access_policy,
    s3_static_pv_spec,
    stack_bucket_name,
    stack_object_name,
    storage_path_for,
    tls_only_bucket_policy,
)
from components.config import FsxConfig, fsx_capacity_allowed

BUCKET_ARN = "arn:aws:s3:::ml-checkpoints"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABCDEF"
PROVIDER_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABCDEF"


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else list(resource)


# --- trust policies -------------------------------------------------------------------------------


def test_pod_identity_trust_is_for_eks_pod_identity_and_one_service_account() -> None:
    doc = pod_identity_trust_policy(
        account_id="123456789012", cluster_name="ml", namespace="kube-system", service_account="sa-x"
    )
    (statement,) = doc["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(_actions(statement)) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": "123456789012",
        "aws:RequestTag/eks-cluster-name": "ml",
        "aws:RequestTag/kubernetes-namespace": "kube-system",
        "aws:RequestTag/kubernetes-service-account": "sa-x",
    }


def test_irsa_trust_binds_sub_and_audience_on_the_issuer_host() -> None:
    doc = irsa_trust_policy(
        oidc_provider_arn=PROVIDER_ARN,
        oidc_issuer_url=ISSUER,
        namespace="ray",
        service_account="ray-workloads",
    )
    (statement,) = doc["Statement"]
    assert statement["Principal"] == {"Federated": PROVIDER_ARN}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    host = "oidc.eks.us-west-2.amazonaws.com/id/ABCDEF"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{host}:sub": "system:serviceaccount:ray:ray-workloads",
            f"{host}:aud": "sts.amazonaws.com",
        }
    }


# --- permission policies --------------------------------------------------------------------------


def test_fsx_driver_may_only_change_file_systems_with_its_owner_tag() -> None:
    doc = fsx_csi_driver_policy(
        partition="aws", region="us-west-2", account_id="123456789012", owner_tag_value="proj.dev.fsx"
    )
    statements = doc["Statement"]
    changing = [s for s in statements if {"fsx:DeleteFileSystem", "fsx:UpdateFileSystem"} & set(_actions(s))]
    assert len(changing) == 1
    assert changing[0]["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{FSX_OWNER_TAG_KEY}": "proj.dev.fsx"}
    }
    assert _resources(changing[0]) == ["arn:aws:fsx:us-west-2:123456789012:file-system/*"]
    create = next(s for s in statements if "fsx:CreateFileSystem" in _actions(s))
    assert _resources(create) == ["arn:aws:fsx:us-west-2:123456789012:file-system/*"]


def test_fsx_driver_policy_has_no_wildcard_actions_and_no_s3_or_write_iam() -> None:
    doc = fsx_csi_driver_policy(partition="aws", region="us-west-2", account_id="1", owner_tag_value="o")
    actions = [a for s in doc["Statement"] for a in _actions(s)]
    assert all("*" not in action for action in actions)
    assert not [a for a in actions if a.startswith("s3:")]
    assert [a for a in actions if a.startswith("iam:")] == ["iam:CreateServiceLinkedRole"]
    slr = next(s for s in doc["Statement"] if "iam:CreateServiceLinkedRole" in _actions(s))
    assert slr["Condition"] == {"StringLike": {"iam:AWSServiceName": "fsx.amazonaws.com"}}
    # Everything unscoped is read-only.
    for statement in doc["Statement"]:
        if "*" in _resources(statement):
            assert all(a.split(":")[1].startswith("Describe") for a in _actions(statement)), statement


def test_static_only_driver_may_only_describe() -> None:
    doc = fsx_csi_driver_policy(
        partition="aws", region="us-west-2", account_id="1", owner_tag_value="o", provisioning=False
    )
    assert [a for s in doc["Statement"] for a in _actions(s)] == ["fsx:DescribeFileSystems"]


def test_bucket_access_policy_names_only_that_bucket() -> None:
    doc = s3_bucket_access_policy(bucket_arn=BUCKET_ARN)
    resources = {r for s in doc["Statement"] for r in _resources(s)}
    assert resources == {BUCKET_ARN, f"{BUCKET_ARN}/*"}
    by_resource = {r: set(_actions(s)) for s in doc["Statement"] for r in _resources(s)}
    assert by_resource[BUCKET_ARN] == {"s3:ListBucket"}
    assert by_resource[f"{BUCKET_ARN}/*"] == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
    }
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])


def test_tls_only_policy_denies_insecure_transport_on_bucket_and_objects() -> None:
    (statement,) = tls_only_bucket_policy(bucket_arn=BUCKET_ARN)["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(_resources(statement)) == {BUCKET_ARN, f"{BUCKET_ARN}/*"}


# --- FSx objects ----------------------------------------------------------------------------------

_SC_ARGS: dict[str, Any] = {
    "subnet_id": "subnet-0aa11bb22cc33dd44",
    "security_group_ids": ["sg-0123456789abcdef0", "sg-0fedcba9876543210"],
    "deployment_type": "PERSISTENT_2",
    "per_unit_storage_throughput": 250,
    "data_compression": "LZ4",
    "lustre_version": "2.15",
    "owner_tag_value": "proj.dev.fsx",
}


@pytest.mark.parametrize(("retain", "policy"), [(True, "Retain"), (False, "Delete")])
def test_storage_class_reclaim_policy_follows_retain_data(retain: bool, policy: str) -> None:
    assert fsx_storage_class(**_SC_ARGS, retain_data=retain)["reclaimPolicy"] == policy


def test_storage_class_parameters_are_the_drivers_string_parameters() -> None:
    sc = fsx_storage_class(**_SC_ARGS, retain_data=True)
    assert sc["provisioner"] == "fsx.csi.aws.com"
    assert sc["mountOptions"] == ["flock"]
    assert sc["parameters"] == {
        "subnetId": "subnet-0aa11bb22cc33dd44",
        "securityGroupIds": "sg-0123456789abcdef0,sg-0fedcba9876543210",
        "deploymentType": "PERSISTENT_2",
        "perUnitStorageThroughput": "250",
        "dataCompressionType": "LZ4",
        "fileSystemTypeVersion": "2.15",
        "extraTags": f"{FSX_OWNER_TAG_KEY}=proj.dev.fsx",
    }
    assert all(isinstance(value, str) for value in sc["parameters"].values())


def test_scratch_storage_class_sends_no_throughput() -> None:
    sc = fsx_storage_class(
        **{**_SC_ARGS, "deployment_type": "SCRATCH_2", "per_unit_storage_throughput": None},
        retain_data=True,
    )
    assert "perUnitStorageThroughput" not in sc["parameters"]


def test_storage_class_without_security_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="security_group_ids"):
        fsx_storage_class(**{**_SC_ARGS, "security_group_ids": []}, retain_data=True)


def test_static_fsx_volume_is_always_retained_and_names_the_file_system() -> None:
    spec = fsx_static_pv_spec(
        file_system_id="fs-0123456789abcdef0", dns_name="fs.example", mount_name="abcd", capacity_gib=2400
    )
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["capacity"] == {"storage": "2400Gi"}
    assert spec["csi"] == {
        "driver": "fsx.csi.aws.com",
        "volumeHandle": "fs-0123456789abcdef0",
        "volumeAttributes": {"dnsname": "fs.example", "mountname": "abcd"},
    }


def test_lustre_ports_are_988_and_1018_to_1023_only() -> None:
    assert LUSTRE_PORT_RANGES == ((988, 988), (1018, 1023))


# --- S3 objects -----------------------------------------------------------------------------------


def test_s3_volume_mounts_the_bucket_writable_for_the_ray_user_without_keys() -> None:
    spec = s3_static_pv_spec(bucket_name="ml-checkpoints", region="us-east-2", volume_handle="h-1")
    assert spec["csi"] == {
        "driver": "s3.csi.aws.com",
        "volumeHandle": "h-1",
        "volumeAttributes": {"bucketName": "ml-checkpoints"},
    }
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == ""
    assert spec["accessModes"] == ["ReadWriteMany"]
    options = spec["mountOptions"]
    for required in ("allow-delete", "region us-east-2", "uid=1000", "gid=100", "allow-other"):
        assert required in options
    assert not [o for o in options if "key" in o.lower() or "secret" in o.lower() or "profile" in o]


# --- claims and STORAGE_PATH ----------------------------------------------------------------------


def test_dynamic_claim_names_the_class_and_static_claim_binds_the_volume() -> None:
    dynamic = claim_spec(storage="1200Gi", storage_class_name="fsx-sc")
    assert dynamic == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "fsx-sc",
        "resources": {"requests": {"storage": "1200Gi"}},
    }
    static = claim_spec(storage="1200Gi", volume_name="pv-1")
    assert static["storageClassName"] == ""
    assert static["volumeName"] == "pv-1"


@pytest.mark.parametrize(
    ("fsx", "bucket", "expected"),
    [
        (True, "b", "/fsx/ray-results"),
        (True, None, "/fsx/ray-results"),
        (False, "b", "s3://b/ray-results"),
        (False, None, None),
    ],
)
def test_storage_path_prefers_fsx_then_s3(fsx: bool, bucket: str | None, expected: str | None) -> None:
    assert storage_path_for(fsx, bucket) == expected


# --- FSx sizing rules used by config validation ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "capacity", "ok"),
    [
        ("SCRATCH_1", 1200, True),
        ("SCRATCH_1", 2400, True),
        ("SCRATCH_1", 3600, True),
        ("SCRATCH_1", 7200, True),
        ("SCRATCH_1", 4800, False),
        ("SCRATCH_2", 4800, True),
        ("SCRATCH_2", 3600, False),
        ("PERSISTENT_1", 1200, True),
        ("PERSISTENT_2", 2400, True),
        ("PERSISTENT_2", 9600, True),
        ("PERSISTENT_2", 1000, False),
        ("PERSISTENT_2", 3600, False),
    ],
)
def test_capacity_steps_per_deployment_type(kind: str, capacity: int, ok: bool) -> None:
    assert fsx_capacity_allowed(kind, capacity) is ok


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"deploymentType": "PERSISTENT_2"}, 125),
        ({"deploymentType": "PERSISTENT_1", "lustreVersion": "2.12"}, 50),
        ({"deploymentType": "PERSISTENT_2", "perUnitStorageThroughput": 500}, 500),
        ({"deploymentType": "SCRATCH_2"}, None),
    ],
)
def test_effective_throughput(fields: dict, expected: int | None) -> None:
    assert FsxConfig.model_validate({"enabled": True, **fields}).throughput == expected


def test_retention_labels_use_the_label_the_policy_pack_reads() -> None:
    from components.builders.storage import retention_labels
    from policy import checks

    assert retention_labels(True) == {checks.RETAIN_DATA_LABEL: "true"}
    assert retention_labels(False) == {checks.RETAIN_DATA_LABEL: "false"}


# --- names, awaits, subnet choice (issue 11) ---------------------------------------------------------

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
BUCKET_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


def test_stack_object_names_are_deterministic_dns_names() -> None:
    assert stack_object_name("ray-on-eks", "dev", "fsx") == "ray-on-eks-dev-fsx"
    assert stack_object_name("ray-on-eks", "dev", "fsx") == stack_object_name("ray-on-eks", "dev", "fsx")
    # Pulumi allows stack names Kubernetes does not (uppercase, '_', '/', '.').
    odd = stack_object_name("Ray_On.EKS", "Team/Prod_1", "fsx")
    assert odd == "ray-on-eks-team-prod-1-fsx"
    long = stack_object_name("p" * 200, "s" * 200, "fsx")
    assert len(long) <= 253
    for name in (odd, long):
        assert re.match(DNS_SUBDOMAIN, name), name
    with pytest.raises(ValueError, match="no usable characters"):
        stack_object_name("_", "_", "_")


def test_stack_bucket_names_are_valid_unique_per_account_and_fit() -> None:
    name = stack_bucket_name("ray-on-eks", "dev", "s3", "123456789012")
    assert name == "ray-on-eks-dev-s3-123456789012"
    assert name != stack_bucket_name("ray-on-eks", "dev", "s3", "210987654321")
    long = stack_bucket_name(
        "ray-on-eks", "a-very-long-stack-name-for-the-platform-team", "s3", "123456789012"
    )
    assert len(long) <= 63 and long.endswith("-123456789012")
    for bucket in (name, long):
        assert re.match(BUCKET_NAME, bucket) and "--" not in bucket, bucket


def test_claim_await_annotations_replace_the_five_minute_pvc_awaiter() -> None:
    assert claim_await_annotations(1800) == {
        "pulumi.com/waitFor": "jsonpath={.status.phase}=Bound",
        "pulumi.com/timeoutSeconds": "1800",
    }
    with pytest.raises(ValueError, match="timeout_seconds"):
        claim_await_annotations(0)


def test_fsx_subnet_is_the_first_private_cluster_subnet() -> None:
    cluster = ["subnet-public", "subnet-private-b", "subnet-private-a"]
    private = {"subnet-private-a", "subnet-private-b"}
    assert choose_fsx_subnet(cluster_subnet_ids=cluster, private_subnet_ids=private) == "subnet-private-b"
    with pytest.raises(ValueError, match=r"^fsx\.subnetId: none of the cluster's subnets .*subnet-public"):
        choose_fsx_subnet(cluster_subnet_ids=["subnet-public"], private_subnet_ids=set())

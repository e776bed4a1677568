"""S3Mountpoint under mocks: a private, encrypted, TLS-only bucket kept on destroy (unless retainData is
false), IAM roles that reach only that bucket and bind exactly the driver's and the Ray pods' service
accounts, and a Mountpoint PersistentVolume + claim spec writable by the Ray user."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.config import S3Config
from components.contract import RAY_SERVICE_ACCOUNT
from components.s3_mountpoint import S3MountpointArgs, validate_args
from components.workload_identity import ClusterIdentity
from tests import pulumi_harness
from tests.pulumi_harness import ACCOUNT, ProgramRun, RealisticMocks, run_ok, run_program, run_shared

COMPONENT = "ray-on-eks:storage:S3Mountpoint"
BUCKET = "aws:s3/bucket:Bucket"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
ADDON = "aws:eks/addon:Addon"
PV = "kubernetes:core/v1:PersistentVolume"
BUCKET_SETTINGS = (
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
)
ISSUER_HOST = "oidc.eks.us-west-2.amazonaws.com/id/0123456789ABCDEF"
EXISTING = {"enabled": True, "createBucket": False, "bucketName": "team-ml-checkpoints"}


def _s3_enabled(run: ProgramRun) -> bool:
    raw = run.config.get("ray-on-eks:s3")
    return bool(raw and json.loads(raw).get("enabled"))


def _outputs(run: ProgramRun) -> dict[str, Any]:
    (component,) = run.of_type(COMPONENT)
    return run.component_outputs[component.urn]


def _statement_resources(policy_json: str) -> set[str]:
    found: set[str] = set()
    for statement in json.loads(policy_json)["Statement"]:
        resource = statement["Resource"]
        found |= {resource} if isinstance(resource, str) else set(resource)
    return found


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run_shared("dev")


@pytest.fixture(scope="module")
def irsa_run() -> ProgramRun:
    return run_ok("dev", {"iamMode": "irsa", "namespace": "ml-team"})


@pytest.fixture(scope="module")
def existing_run() -> ProgramRun:
    return run_ok("dev", {"s3": EXISTING, "retainData": False})


def test_component_exists_exactly_when_s3_is_enabled(stack_run: ProgramRun) -> None:
    assert len(stack_run.of_type(COMPONENT)) == (1 if _s3_enabled(stack_run) else 0)
    if not _s3_enabled(stack_run):
        assert not stack_run.of_type(BUCKET)
        assert "bucketName" not in stack_run.exports


# --- the bucket -----------------------------------------------------------------------------------


def test_created_bucket_is_private_versioned_encrypted_and_tls_only(dev: ProgramRun) -> None:
    bucket_name = dev.exports["bucketName"]
    blocked = dev.one(BUCKET_SETTINGS[0]).inputs
    assert all(
        blocked[key] is True
        for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    assert dev.one(BUCKET_SETTINGS[1]).inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert dev.one(BUCKET_SETTINGS[2]).inputs["versioningConfiguration"]["status"] == "Enabled"
    (rule,) = dev.one(BUCKET_SETTINGS[3]).inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("aws:kms", "AES256")
    assert rule["bucketKeyEnabled"] is True
    policy = json.loads(dev.one(BUCKET_SETTINGS[5]).inputs["policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {f"arn:aws:s3:::{bucket_name}", f"arn:aws:s3:::{bucket_name}/*"}
    for typ in BUCKET_SETTINGS:
        assert dev.one(typ).inputs["bucket"] == bucket_name, typ


def test_destroy_keeps_the_bucket_and_its_protections_by_default(dev: ProgramRun) -> None:
    bucket = dev.one(BUCKET, "s3-bucket")
    assert bucket.retain_on_delete is True
    assert bucket.inputs.get("forceDestroy") is False
    assert bucket.protect is False  # retained, not protected: `pulumi destroy` still completes
    for typ in BUCKET_SETTINGS:
        assert dev.one(typ).retain_on_delete is True, typ


def test_retain_data_false_deletes_the_bucket_with_its_objects(delete_run: ProgramRun) -> None:
    bucket = delete_run.one(BUCKET, "s3-bucket")
    assert bucket.retain_on_delete is False
    assert bucket.inputs["forceDestroy"] is True
    for typ in BUCKET_SETTINGS:
        assert delete_run.one(typ).retain_on_delete is False, typ


def test_bucket_has_a_deterministic_name_unless_one_is_given(dev: ProgramRun) -> None:
    # Defect 3 of issue 11: the kept volume names the bucket, so a random name breaks the next `up`.
    assert dev.one(BUCKET, "s3-bucket").inputs["bucket"] == f"ray-on-eks-dev-s3-{ACCOUNT}"
    named = run_program("dev", {"s3": {"enabled": True, "bucketName": "my-ray-ckpts"}})
    assert named.error is None, named.error
    assert named.one(BUCKET, "s3-bucket").inputs["bucket"] == "my-ray-ckpts"
    assert named.exports["bucketName"] == "my-ray-ckpts"


def test_existing_bucket_is_used_but_never_managed(existing_run: ProgramRun) -> None:
    assert not existing_run.of_type(BUCKET)
    for typ in BUCKET_SETTINGS:
        assert not existing_run.of_type(typ), typ
    assert existing_run.exports["bucketName"] == "team-ml-checkpoints"
    policy = existing_run.one(ROLE_POLICY, "s3-driver-policy").inputs["policy"]
    assert _statement_resources(policy) == {
        "arn:aws:s3:::team-ml-checkpoints",
        "arn:aws:s3:::team-ml-checkpoints/*",
    }


# --- IAM ------------------------------------------------------------------------------------------


def test_both_roles_reach_only_this_bucket(dev: ProgramRun) -> None:
    arn = f"arn:aws:s3:::{dev.exports['bucketName']}"
    for name in ("s3-driver-policy", "s3-ray-policy"):
        policy = dev.one(ROLE_POLICY, name).inputs["policy"]
        assert _statement_resources(policy) == {arn, f"{arn}/*"}, name
        for statement in json.loads(policy)["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert all("*" not in action for action in actions), name


@pytest.mark.parametrize(
    ("prefix", "namespace", "service_account"),
    [("s3-driver", "kube-system", "s3-csi-driver-sa"), ("s3-ray", "ray", RAY_SERVICE_ACCOUNT)],
)
def test_pod_identity_binds_exactly_one_service_account(
    dev: ProgramRun, prefix: str, namespace: str, service_account: str
) -> None:
    association = dev.one(ASSOCIATION, f"{prefix}-pod-identity")
    assert association.inputs["namespace"] == namespace
    assert association.inputs["serviceAccount"] == service_account
    assert f":role/{prefix}-role-" in association.inputs["roleArn"]
    role = dev.one(ROLE, f"{prefix}-role")
    assert "name" not in role.inputs  # auto-named
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    tags = statement["Condition"]["StringEquals"]
    assert tags["aws:RequestTag/kubernetes-namespace"] == namespace
    assert tags["aws:RequestTag/kubernetes-service-account"] == service_account
    assert _outputs(dev)["rayServiceAccountAnnotations"] == {}


def test_addon_version_comes_from_eks_and_waits_for_its_credentials(dev: ProgramRun) -> None:
    addon = dev.one(ADDON, "s3-csi-driver")
    assert addon.inputs["addonName"] == "aws-mountpoint-s3-csi-driver"
    assert addon.inputs["addonVersion"] == pulumi_harness.ADDON_VERSIONS["aws-mountpoint-s3-csi-driver"]
    assert "serviceAccountRoleArn" not in addon.inputs
    assert dev.one(ASSOCIATION, "s3-driver-pod-identity").urn in addon.dependencies


def test_irsa_roles_trust_exact_subjects_and_annotate_the_ray_service_account(irsa_run: ProgramRun) -> None:
    subjects = {
        "s3-driver-role": "system:serviceaccount:kube-system:s3-csi-driver-sa",
        "s3-ray-role": f"system:serviceaccount:ml-team:{RAY_SERVICE_ACCOUNT}",
    }
    for name, subject in subjects.items():
        (statement,) = json.loads(irsa_run.one(ROLE, name).inputs["assumeRolePolicy"])["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"]["StringEquals"] == {
            f"{ISSUER_HOST}:sub": subject,
            f"{ISSUER_HOST}:aud": "sts.amazonaws.com",
        }, name
    assert not [a for a in irsa_run.of_type(ASSOCIATION) if a.name.startswith("s3-")]
    assert ":role/s3-driver-role-" in irsa_run.one(ADDON, "s3-csi-driver").inputs["serviceAccountRoleArn"]
    outputs = _outputs(irsa_run)
    assert outputs["rayServiceAccountAnnotations"] == {"eks.amazonaws.com/role-arn": outputs["rayRoleArn"]}
    assert ":role/s3-ray-role-" in outputs["rayRoleArn"]


def test_no_aws_keys_anywhere(stack_run: ProgramRun) -> None:
    for resource in stack_run.resources:
        text = json.dumps(resource.inputs).lower()
        assert "aws_access_key_id" not in text, resource.name
        assert "aws_secret_access_key" not in text, resource.name
        assert resource.type != "aws:iam/accessKey:AccessKey", resource.name


# --- Kubernetes side ------------------------------------------------------------------------------


def test_volume_mounts_the_bucket_for_the_ray_user(dev: ProgramRun) -> None:
    bucket = dev.exports["bucketName"]
    volume = dev.one(PV, "s3-pv")
    spec = volume.inputs["spec"]
    assert spec["csi"]["driver"] == "s3.csi.aws.com"
    assert spec["csi"]["volumeAttributes"] == {"bucketName": bucket}
    assert spec["csi"]["volumeHandle"].endswith(bucket)
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == ""
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert set(spec["mountOptions"]) >= {
        "allow-delete",
        "region us-west-2",
        "uid=1000",
        "gid=100",
        "allow-other",
    }
    assert volume.provider.startswith(dev.one("pulumi:providers:kubernetes").urn)
    assert dev.one(ADDON, "s3-csi-driver").urn in volume.dependencies


def test_claim_spec_binds_the_volume(dev: ProgramRun) -> None:
    outputs = _outputs(dev)
    assert outputs["claimSpec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "",
        "resources": {"requests": {"storage": "1200Gi"}},
        "volumeName": dev.one(PV, "s3-pv").inputs["metadata"]["name"],
    }
    assert outputs["mountPath"] == "/s3"


def test_storage_path_uses_the_bucket_only_without_fsx(dev: ProgramRun) -> None:
    assert dev.exports["storagePath"] == "/fsx/ray-results"
    s3_only = run_program("dev", {"fsx": {"enabled": False}})
    assert s3_only.error is None, s3_only.error
    assert s3_only.exports["storagePath"] == f"s3://{s3_only.exports['bucketName']}/ray-results"
    neither = run_program("dev", {"fsx": {"enabled": False}, "s3": {"enabled": False}})
    assert neither.error is None, neither.error
    assert neither.exports["storagePath"] is None


def test_pod_identity_agent_goes_to_s3_when_fsx_is_off() -> None:
    run = run_ok("dev", {"fsx": {"enabled": False}, "managePodIdentityAgent": True})
    (agent,) = [a for a in run.of_type(ADDON) if a.inputs["addonName"] == "eks-pod-identity-agent"]
    assert agent.name == "s3-pod-identity-agent"


# --- argument checks (before anything is registered) -----------------------------------------------

_POD_IDENTITY = ClusterIdentity(
    iam_mode="pod-identity", cluster_name="ml", account_id="123456789012", partition="aws"
)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            S3MountpointArgs(
                config=S3Config.model_construct(
                    enabled=True, create_bucket=False, bucket_name=None
                ),  # skips config checks
                identity=_POD_IDENTITY,
                region="us-west-2",
                ray_namespace="ray",
            ),
            "create_bucket is false, so bucket_name must name the existing bucket",
        ),
        (
            S3MountpointArgs(
                config=S3Config(enabled=True), identity=_POD_IDENTITY, region="us-west-2", ray_namespace=""
            ),
            "S3MountpointArgs.ray_namespace is empty",
        ),
        (
            S3MountpointArgs(
                config=S3Config(enabled=True),
                identity=ClusterIdentity(iam_mode="irsa", cluster_name="ml", account_id="1", partition="aws"),
                region="us-west-2",
                ray_namespace="ray",
            ),
            "S3MountpointArgs.identity: iam_mode 'irsa' needs oidc_provider_arn",
        ),
    ],
    ids=["existing bucket without a name", "no ray namespace", "irsa without oidc"],
)
def test_bad_arguments_are_named(args: S3MountpointArgs, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        validate_args(args)


@pytest.mark.parametrize("iam_mode", ["pod-identity", "irsa"])
def test_an_existing_driver_gets_only_its_role(iam_mode: str) -> None:
    """Fails on the old main: the add-on was always created, and creating one that exists fails."""
    run = run_ok("dev", {"iamMode": iam_mode, "s3": {"enabled": True, "driver": "existing"}})
    assert not [a for a in run.of_type(ADDON) if a.inputs["addonName"] == "aws-mountpoint-s3-csi-driver"]
    volume = run.one("kubernetes:core/v1:PersistentVolume", "s3-pv")
    if iam_mode == "pod-identity":
        association = run.one(ASSOCIATION, "s3-driver-pod-identity")
        assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
            "kube-system",
            "s3-csi-driver-sa",
        )
        assert association.urn in volume.dependencies
    else:
        patch = run.one("kubernetes:core/v1:ServiceAccountPatch", "s3-driver-service-account")
        assert (patch.inputs["metadata"]["namespace"], patch.inputs["metadata"]["name"]) == (
            "kube-system",
            "s3-csi-driver-sa",
        )
        arn = patch.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert arn.startswith("arn:aws:iam::123456789012:role/s3-driver-role")
        assert patch.urn in volume.dependencies


def test_a_pinned_s3_driver_version_is_installed_as_written() -> None:
    run = run_ok("dev", {"s3": {"enabled": True, "driverVersion": "v2.1.0-eksbuild.1"}})
    assert run.one(ADDON, "s3-csi-driver").inputs["addonVersion"] == "v2.1.0-eksbuild.1"


def test_volume_follows_its_claims_retention(dev: ProgramRun, delete_run: ProgramRun) -> None:
    # Defect 2 of issue 11: the kept s3-claim held the (deleted) volume's pv-protection finalizer.
    for run, kept in ((dev, True), (delete_run, False)):
        claim = run.one("kubernetes:core/v1:PersistentVolumeClaim", "ray-s3-claim")
        volume = run.one(PV, "s3-pv")
        assert claim.retain_on_delete is kept
        assert volume.retain_on_delete is kept
        assert volume.inputs["metadata"]["name"] == "ray-on-eks-dev-s3"


def test_a_bucket_kept_by_destroy_is_adopted_by_the_next_up() -> None:
    name = f"ray-on-eks-dev-s3-{ACCOUNT}"
    fresh = run_shared("dev")
    assert fresh.one(BUCKET, "s3-bucket").import_id == ""  # nothing to adopt: created
    run = run_program("dev", mocks=RealisticMocks(region="us-west-2", existing_buckets=(name,)))
    assert run.error is None, run.error
    assert run.one(BUCKET, "s3-bucket").import_id == name


def test_a_kept_bucket_is_not_adopted_to_be_deleted() -> None:
    name = f"ray-on-eks-dev-s3-{ACCOUNT}"
    run = run_program(
        "dev", {"retainData": False}, mocks=RealisticMocks(region="us-west-2", existing_buckets=(name,))
    )
    assert run.error is not None
    assert "s3.bucketName" in str(run.error) and name in str(run.error) and "retainData" in str(run.error)

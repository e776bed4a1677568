"""FsxLustreStorage under mocks, for every stack file and the IRSA / static / retainData variants:
the driver's role binds exactly its controller service account, Lustre rules are self-referencing TCP
only, the StorageClass / PersistentVolume / claim spec carry the configured fields, and data is kept
on destroy unless retainData is false."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.builders.storage import FSX_OWNER_TAG_KEY
from components.config import FsxConfig
from components.fsx_lustre import FsxLustreStorageArgs, validate_args
from components.workload_identity import ClusterIdentity
from tests import pulumi_harness
from tests.pulumi_harness import CLUSTER_SUBNETS as MOCK_SUBNETS
from tests.pulumi_harness import (
    HYPERPOD_EKS_CLUSTER,
    HYPERPOD_SECURITY_GROUP,
    HYPERPOD_SUBNET,
    ProgramRun,
    RealisticMocks,
    Registered,
    run_ok,
    run_program,
    run_shared,
)

COMPONENT = "ray-on-eks:storage:FsxLustreStorage"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
SERVICE_ACCOUNT_PATCH = "kubernetes:core/v1:ServiceAccountPatch"
ADDON = "aws:eks/addon:Addon"
RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
PV = "kubernetes:core/v1:PersistentVolume"
# The mocked EKS cluster (tests/pulumi_harness.py): subnets (the first maps public IPs, the second
# does not) and cluster security group.
CLUSTER_SUBNETS = list(MOCK_SUBNETS)
PUBLIC_SUBNET, PRIVATE_SUBNET = CLUSTER_SUBNETS
CLUSTER_SG = "sg-0fedcba9876543210"
ISSUER_HOST = "oidc.eks.{region}.amazonaws.com/id/0123456789ABCDEF"

STATIC = {
    "enabled": True,
    "mode": "static",
    "fileSystemId": "fs-0123456789abcdef0",
    "dnsName": "fs-0123456789abcdef0.fsx.us-west-2.amazonaws.com",
    "mountName": "abcdefgh",
    "storageCapacityGib": 2400,
}


def _cfg(run: ProgramRun, key: str) -> Any:
    raw = run.config.get(f"ray-on-eks:{key}")
    return json.loads(raw) if raw and raw[:1] in "{[" else raw


def _fsx_children(run: ProgramRun) -> list[Registered]:
    (component,) = run.of_type(COMPONENT)
    return [r for r in run.resources if component in run.ancestors(r)]


def _claim_spec(run: ProgramRun) -> dict[str, Any]:
    (component,) = run.of_type(COMPONENT)
    return run.component_outputs[component.urn]["claimSpec"]


@pytest.fixture(scope="module")
def irsa_run() -> ProgramRun:
    return run_ok("dev", {"iamMode": "irsa"})


@pytest.fixture(scope="module")
def static_run() -> ProgramRun:
    return run_ok("dev", {"fsx": STATIC, "retainData": False})


def _fsx_enabled(run: ProgramRun) -> bool:
    return bool((_cfg(run, "fsx") or {}).get("enabled"))


def _fsx_driver(run: ProgramRun) -> str:
    return str((_cfg(run, "fsx") or {}).get("driver", "install"))


def test_every_stack_with_fsx_builds_one_component(stack_run: ProgramRun) -> None:
    assert len(stack_run.of_type(COMPONENT)) == (1 if _fsx_enabled(stack_run) else 0)


# --- IAM ------------------------------------------------------------------------------------------


def test_pod_identity_binds_exactly_the_fsx_controller_service_account(stack_run: ProgramRun) -> None:
    if not _fsx_enabled(stack_run):
        assert not stack_run.of_type(COMPONENT)
        return
    association = stack_run.one(ASSOCIATION, "fsx-driver-pod-identity")
    assert association.inputs["namespace"] == "kube-system"
    assert association.inputs["serviceAccount"] == "fsx-csi-controller-sa"
    expected = (
        HYPERPOD_EKS_CLUSTER
        if stack_run.config["ray-on-eks:clusterType"] == "hyperpod"
        else stack_run.config["ray-on-eks:clusterName"]
    )
    assert association.inputs["clusterName"] == expected
    role = stack_run.one(ROLE, "fsx-driver-role")
    assert ":role/fsx-driver-role-" in association.inputs["roleArn"]  # the auto-named driver role
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    tags = statement["Condition"]["StringEquals"]
    assert tags["aws:RequestTag/kubernetes-namespace"] == "kube-system"
    assert tags["aws:RequestTag/kubernetes-service-account"] == "fsx-csi-controller-sa"
    # Pulumi auto-names the role: no fixed, account-global name.
    assert "name" not in role.inputs


def test_driver_policy_limits_changes_to_this_stacks_file_systems(stack_run: ProgramRun) -> None:
    if not _fsx_enabled(stack_run):
        return
    policy = json.loads(stack_run.one(ROLE_POLICY, "fsx-driver-policy").inputs["policy"])
    owner = f"ray-on-eks.{stack_run.stack}.fsx"
    (changing,) = [s for s in policy["Statement"] if "fsx:DeleteFileSystem" in s["Action"]]
    assert changing["Condition"] == {"StringEquals": {f"aws:ResourceTag/{FSX_OWNER_TAG_KEY}": owner}}
    region = stack_run.config["aws:region"]
    assert changing["Resource"] == f"arn:aws:fsx:{region}:123456789012:file-system/*"
    # ... and the StorageClass tags what it creates with exactly that owner.
    sc = stack_run.one(STORAGE_CLASS, "fsx-sc")
    assert sc.inputs["parameters"]["extraTags"] == f"{FSX_OWNER_TAG_KEY}={owner}"


def test_addon_version_comes_from_eks_and_waits_for_its_credentials(stack_run: ProgramRun) -> None:
    if not _fsx_enabled(stack_run):
        return
    if _fsx_driver(stack_run) == "existing":  # the cluster's own driver: no add-on to create
        assert not [a for a in stack_run.of_type(ADDON) if a.inputs["addonName"] == "aws-fsx-csi-driver"]
        return
    addon = stack_run.one(ADDON, "fsx-csi-driver")
    assert addon.inputs["addonName"] == "aws-fsx-csi-driver"
    # What EKS offers for the cluster's Kubernetes version (the mocked describe-addon-versions).
    assert addon.inputs["addonVersion"] == pulumi_harness.ADDON_VERSIONS["aws-fsx-csi-driver"]
    # Pod Identity: no IRSA role on the add-on; the association exists first.
    assert "serviceAccountRoleArn" not in addon.inputs
    association = stack_run.one(ASSOCIATION, "fsx-driver-pod-identity")
    assert association.urn in addon.dependencies


def test_irsa_role_trusts_only_the_controller_service_account(irsa_run: ProgramRun) -> None:
    role = irsa_run.one(ROLE, "fsx-driver-role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    host = ISSUER_HOST.format(region="us-west-2")
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{host}"}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"] == {
        f"{host}:sub": "system:serviceaccount:kube-system:fsx-csi-controller-sa",
        f"{host}:aud": "sts.amazonaws.com",
    }
    addon = irsa_run.one(ADDON, "fsx-csi-driver")
    assert ":role/fsx-driver-role" in addon.inputs["serviceAccountRoleArn"]
    assert not [a for a in irsa_run.of_type(ASSOCIATION) if a.name.startswith("fsx")]


# --- network --------------------------------------------------------------------------------------


def test_lustre_rules_are_self_referencing_tcp_on_lustre_ports_only(stack_run: ProgramRun) -> None:
    rules = [r for r in stack_run.of_type(RULE) if r.name.startswith("fsx-")]
    if not _fsx_enabled(stack_run):
        assert not rules
        return
    assert rules, "dynamic FSx needs Lustre ingress rules"
    ports = set()
    for rule in rules:
        inputs = rule.inputs
        assert inputs["ipProtocol"] == "tcp"
        assert inputs["referencedSecurityGroupId"] == inputs["securityGroupId"]
        assert "cidrIpv4" not in inputs
        assert "cidrIpv6" not in inputs
        assert "prefixListId" not in inputs
        ports.add((inputs["fromPort"], inputs["toPort"]))
    assert ports == {(988, 988), (1018, 1023)}


def test_no_security_group_rule_anywhere_opens_everything(stack_run: ProgramRun) -> None:
    for rule in stack_run.resources:
        if rule.type.startswith("aws:vpc/securityGroup") or rule.type.startswith("aws:ec2/securityGroup"):
            inputs = rule.inputs
            assert inputs.get("ipProtocol", inputs.get("protocol")) not in ("-1", "all"), rule.name
            for cidr in ("cidrIpv4", "cidrIpv6"):
                assert inputs.get(cidr) not in ("0.0.0.0/0", "::/0"), rule.name
            assert "0.0.0.0/0" not in (inputs.get("cidrBlocks") or [])
            assert "::/0" not in (inputs.get("ipv6CidrBlocks") or [])


def test_network_defaults_follow_the_cluster_type(stack_run: ProgramRun) -> None:
    if not _fsx_enabled(stack_run):
        return
    params = stack_run.one(STORAGE_CLASS, "fsx-sc").inputs["parameters"]
    rules = {r.inputs["securityGroupId"] for r in stack_run.of_type(RULE) if r.name.startswith("fsx-")}
    fsx = _cfg(stack_run, "fsx")
    hyperpod = _cfg(stack_run, "hyperpod") or {}
    if stack_run.config["ray-on-eks:clusterType"] == "hyperpod":
        # The HyperPod cluster's own VpcConfig (as described), unless overridden.
        expected_subnet = fsx.get("subnetId") or hyperpod.get("subnetId") or HYPERPOD_SUBNET
        expected_groups = (
            fsx.get("securityGroupIds") or hyperpod.get("securityGroupIds") or [HYPERPOD_SECURITY_GROUP]
        )
    else:
        expected_subnet = fsx.get("subnetId") or PRIVATE_SUBNET
        expected_groups = fsx.get("securityGroupIds") or [CLUSTER_SG]
    assert params["subnetId"] == expected_subnet
    assert params["securityGroupIds"].split(",") == expected_groups
    assert rules == set(expected_groups)


def test_fsx_overrides_win_over_cluster_defaults() -> None:
    run = run_program(
        "dev",
        {
            "fsx": {
                "enabled": True,
                "subnetId": "subnet-0123456789abcdef0",
                "securityGroupIds": ["sg-0aaaaaaaaaaaaaaa1", "sg-0aaaaaaaaaaaaaaa2"],
            }
        },
    )
    assert run.error is None, run.error
    params = run.one(STORAGE_CLASS, "fsx-sc").inputs["parameters"]
    assert params["subnetId"] == "subnet-0123456789abcdef0"
    assert params["securityGroupIds"] == "sg-0aaaaaaaaaaaaaaa1,sg-0aaaaaaaaaaaaaaa2"
    assert len([r for r in run.of_type(RULE) if r.name.startswith("fsx-")]) == 4


def test_eks_file_system_goes_to_a_private_cluster_subnet_never_the_first_public_one() -> None:
    # Defect 9 of issue 11: main took the cluster's first subnet, here a public one.
    assert MOCK_SUBNETS[PUBLIC_SUBNET]["mapPublicIpOnLaunch"] is True
    run = run_ok("dev", {"fsx": {"enabled": True}})
    assert run.one(STORAGE_CLASS, "fsx-sc").inputs["parameters"]["subnetId"] == PRIVATE_SUBNET


def test_eks_without_a_private_subnet_asks_for_fsx_subnet_id() -> None:
    public_only = {sid: {**facts, "mapPublicIpOnLaunch": True} for sid, facts in MOCK_SUBNETS.items()}
    run = run_program("dev", mocks=RealisticMocks(region="us-west-2", subnets=public_only))
    assert run.error is not None
    message = str(run.error)
    assert "fsx.subnetId" in message and "private" in message and PUBLIC_SUBNET in message
    assert not run.of_type(STORAGE_CLASS), "no StorageClass may be registered without a subnet"


# --- StorageClass, claim spec, retention -----------------------------------------------------------


def test_storage_class_carries_the_configured_file_system(stack_run: ProgramRun) -> None:
    if not _fsx_enabled(stack_run):
        return
    fsx = _cfg(stack_run, "fsx")
    sc = stack_run.one(STORAGE_CLASS, "fsx-sc")
    assert sc.inputs["provisioner"] == "fsx.csi.aws.com"
    assert sc.inputs["mountOptions"] == ["flock"]
    assert sc.inputs["reclaimPolicy"] == ("Retain" if _cfg(stack_run, "retainData") != "false" else "Delete")
    params = sc.inputs["parameters"]
    assert params["deploymentType"] == fsx["deploymentType"]
    assert params["perUnitStorageThroughput"] == str(fsx["perUnitStorageThroughput"])
    assert params["dataCompressionType"] == fsx["dataCompression"]
    assert params["fileSystemTypeVersion"] == fsx.get("lustreVersion", "2.15")
    # Depends on the driver (the add-on, or the existing driver's credentials) and the rules, so
    # destroy removes claims before them.
    if _fsx_driver(stack_run) == "install":
        assert stack_run.one(ADDON, "fsx-csi-driver").urn in sc.dependencies
    else:
        assert stack_run.one(ASSOCIATION, "fsx-driver-pod-identity").urn in sc.dependencies


def test_claim_spec_is_a_read_write_many_claim_on_the_class(stack_run: ProgramRun) -> None:
    if not _fsx_enabled(stack_run):
        return
    spec = _claim_spec(stack_run)
    sc = stack_run.one(STORAGE_CLASS, "fsx-sc")
    assert spec == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": sc.inputs["metadata"]["name"],  # named explicitly, never auto-named
        "resources": {"requests": {"storage": f"{_cfg(stack_run, 'fsx')['storageCapacityGib']}Gi"}},
    }
    (component,) = stack_run.of_type(COMPONENT)
    assert stack_run.component_outputs[component.urn]["mountPath"] == "/fsx"


def test_retain_data_false_lets_the_driver_delete_the_file_system(delete_run: ProgramRun) -> None:
    assert delete_run.one(STORAGE_CLASS, "fsx-sc").inputs["reclaimPolicy"] == "Delete"


def test_destroy_keeps_the_file_system_by_default(stack_runs: dict[str, ProgramRun]) -> None:
    assert stack_runs["dev"].one(STORAGE_CLASS, "fsx-sc").inputs["reclaimPolicy"] == "Retain"


def test_static_file_system_is_retained_even_with_retain_data_false(static_run: ProgramRun) -> None:
    volume = static_run.one(PV, "fsx-pv")
    spec = volume.inputs["spec"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["capacity"] == {"storage": "2400Gi"}
    assert spec["csi"] == {
        "driver": "fsx.csi.aws.com",
        "volumeHandle": STATIC["fileSystemId"],
        "volumeAttributes": {"dnsname": STATIC["dnsName"], "mountname": STATIC["mountName"]},
    }
    assert _claim_spec(static_run) == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "",
        "resources": {"requests": {"storage": "2400Gi"}},
        "volumeName": volume.inputs["metadata"]["name"],
    }
    # The claim is deleted with retainData false, so the volume is too (the file system never is).
    assert volume.retain_on_delete is False
    # An existing file system: no StorageClass, no rules on someone else's security groups, and a
    # driver that can only describe file systems.
    policy = json.loads(static_run.one(ROLE_POLICY, "fsx-driver-policy").inputs["policy"])
    assert [a for s in policy["Statement"] for a in s["Action"]] == ["fsx:DescribeFileSystems"]
    assert not static_run.of_type(STORAGE_CLASS)
    assert not [r for r in static_run.of_type(RULE) if r.name.startswith("fsx-")]


# --- structure ------------------------------------------------------------------------------------


def test_children_use_the_cluster_provider_for_kubernetes_and_default_aws(stack_run: ProgramRun) -> None:
    if not _fsx_enabled(stack_run):
        return
    cluster_provider = stack_run.one("pulumi:providers:kubernetes").urn
    children = _fsx_children(stack_run)
    assert children
    for child in children:
        if child.type.startswith("kubernetes:"):
            assert child.provider.startswith(cluster_provider), child.name
        elif child.type.startswith("aws:"):
            assert "kubernetes" not in child.provider, child.name
        assert child.name.startswith("fsx-"), child.name


def test_pod_identity_agent_is_installed_once_when_asked() -> None:
    run = run_ok("dev", {"managePodIdentityAgent": True})
    agents = [a for a in run.of_type(ADDON) if a.inputs["addonName"] == "eks-pod-identity-agent"]
    assert len(agents) == 1
    assert agents[0].inputs["addonVersion"] == pulumi_harness.ADDON_VERSIONS["eks-pod-identity-agent"]
    assert agents[0].urn in run.one(ADDON, "fsx-csi-driver").dependencies
    default = run_shared("dev")
    assert not [a for a in default.of_type(ADDON) if a.inputs["addonName"] == "eks-pod-identity-agent"]


# --- argument checks (before anything is registered) -----------------------------------------------

_POD_IDENTITY = ClusterIdentity(
    iam_mode="pod-identity", cluster_name="ml", account_id="123456789012", partition="aws"
)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            FsxLustreStorageArgs(
                config=FsxConfig(enabled=True),
                identity=_POD_IDENTITY,
                region="us-west-2",
                security_group_ids=["sg-1"],
            ),
            "FsxLustreStorageArgs.subnet_id is required",
        ),
        (
            FsxLustreStorageArgs(
                config=FsxConfig(enabled=True),
                identity=_POD_IDENTITY,
                region="us-west-2",
                subnet_id="subnet-1",
            ),
            "FsxLustreStorageArgs.security_group_ids is empty",
        ),
        (
            FsxLustreStorageArgs(
                config=FsxConfig(enabled=False, mode="static"), identity=_POD_IDENTITY, region="us-west-2"
            ),
            "mode 'static' needs file_system_id, dns_name and mount_name",
        ),
        (
            FsxLustreStorageArgs(
                config=FsxConfig(enabled=True),
                identity=ClusterIdentity(iam_mode="irsa", cluster_name="ml", account_id="1", partition="aws"),
                region="us-west-2",
                subnet_id="subnet-1",
                security_group_ids=["sg-1"],
            ),
            "iam_mode 'irsa' needs oidc_provider_arn and oidc_issuer_url",
        ),
    ],
    ids=["no subnet", "no security groups", "static without ids", "irsa without oidc"],
)
def test_bad_arguments_are_named(args: FsxLustreStorageArgs, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        validate_args(args)


# --- the driver: installed at the version EKS offers, pinned, or the cluster's own -------------------


def test_addon_version_is_resolved_for_the_cluster_not_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails on the old main, which installed a fixed, unverified -eksbuild pin whatever EKS offered."""
    offered = {**pulumi_harness.ADDON_VERSIONS, "aws-fsx-csi-driver": "v1.11.0-eksbuild.4"}
    monkeypatch.setattr(pulumi_harness, "ADDON_VERSIONS", offered)
    run = run_ok("dev")
    assert run.one(ADDON, "fsx-csi-driver").inputs["addonVersion"] == "v1.11.0-eksbuild.4"
    # A Kubernetes version EKS has no build for is an error at the lookup, not a guessed version.
    monkeypatch.setattr(pulumi_harness, "SUPPORTED_KUBERNETES", ("1.99",))
    assert run_program("dev").error is not None


def test_a_pinned_version_is_installed_as_written() -> None:
    run = run_ok("dev", {"fsx": {"enabled": True, "driverVersion": "v1.8.0-eksbuild.2"}})
    assert run.one(ADDON, "fsx-csi-driver").inputs["addonVersion"] == "v1.8.0-eksbuild.2"


def test_eks_offering_another_major_stops_the_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = {**pulumi_harness.ADDON_VERSIONS, "aws-fsx-csi-driver": "v2.0.0-eksbuild.1"}
    monkeypatch.setattr(pulumi_harness, "ADDON_VERSIONS", offered)
    run = run_program("dev")
    assert run.error is not None
    assert "fsx.driverVersion" in str(run.error) and "v1" in str(run.error)


@pytest.mark.parametrize("iam_mode", ["pod-identity", "irsa"])
def test_an_existing_driver_gets_only_its_role(iam_mode: str) -> None:
    """Fails on the old main: the add-on was always created, and creating one that exists fails."""
    run = run_ok("dev", {"iamMode": iam_mode, "fsx": {"enabled": True, "driver": "existing"}})
    assert not [a for a in run.of_type(ADDON) if a.inputs["addonName"] == "aws-fsx-csi-driver"]
    role = run.one(ROLE, "fsx-driver-role")
    sc = run.one(STORAGE_CLASS, "fsx-sc")
    if iam_mode == "pod-identity":
        association = run.one(ASSOCIATION, "fsx-driver-pod-identity")
        assert association.inputs["namespace"] == "kube-system"
        assert association.inputs["serviceAccount"] == "fsx-csi-controller-sa"
        assert association.urn in sc.dependencies
        assert not run.of_type(SERVICE_ACCOUNT_PATCH)
    else:
        patch = run.one(SERVICE_ACCOUNT_PATCH, "fsx-driver-service-account")
        assert patch.inputs["metadata"]["namespace"] == "kube-system"
        assert patch.inputs["metadata"]["name"] == "fsx-csi-controller-sa"
        (arn,) = patch.inputs["metadata"]["annotations"].values()
        assert list(patch.inputs["metadata"]["annotations"]) == ["eks.amazonaws.com/role-arn"]
        assert arn.startswith("arn:aws:iam::123456789012:role/fsx-driver-role")
        assert role.urn in patch.dependencies
        assert patch.urn in sc.dependencies


def test_static_volume_follows_its_claims_retention() -> None:
    # Defect 2 of issue 11: a kept claim holds its bound volume's kubernetes.io/pv-protection
    # finalizer, so a volume deleted under it blocks `pulumi destroy`; main never kept the volume.
    kept = run_ok("dev", {"fsx": STATIC})
    volume = kept.one(PV, "fsx-pv")
    claim = kept.one("kubernetes:core/v1:PersistentVolumeClaim", "ray-fsx-claim")
    assert claim.retain_on_delete is True
    assert volume.retain_on_delete is True
    assert claim.inputs["spec"]["volumeName"] == volume.inputs["metadata"]["name"]


@pytest.mark.parametrize("fsx", [{"enabled": True}, STATIC], ids=["dynamic", "static"])
def test_objects_the_claim_names_have_deterministic_names(fsx: dict[str, Any]) -> None:
    # Defect 3 of issue 11: the claim named an auto-named StorageClass / PersistentVolume.
    run = run_ok("dev", {"fsx": fsx})
    named = [*run.of_type(STORAGE_CLASS), *[v for v in run.of_type(PV) if v.name == "fsx-pv"]]
    assert len(named) == 1
    assert named[0].inputs["metadata"]["name"] == "ray-on-eks-dev-fsx"

"""ClusterTarget under mocks (EKS and HyperPod stacks): one explicit kubernetes Provider bound to the
configured cluster. clusterType kubernetes: tests/components/test_kubernetes_target.py."""

from __future__ import annotations

import json

from components.cluster import build_kubeconfig
from tests.pulumi_harness import HYPERPOD_CLUSTERS, HYPERPOD_EKS_CLUSTER, ProgramRun, run_program


def _expected_cluster(run: ProgramRun) -> str:
    """The EKS cluster a stack targets: its clusterName, or on HyperPod the looked-up orchestrator."""
    if run.config["ray-on-eks:clusterType"] == "hyperpod":
        return HYPERPOD_EKS_CLUSTER
    return run.config["ray-on-eks:clusterName"]


def _provider_kubeconfig(run: ProgramRun) -> dict:
    provider = run.one("pulumi:providers:kubernetes")
    return json.loads(provider.inputs["kubeconfig"])


def test_provider_targets_the_configured_cluster(aws_stack_run: ProgramRun) -> None:
    cluster = _expected_cluster(aws_stack_run)
    region = aws_stack_run.config["aws:region"]
    kubeconfig = _provider_kubeconfig(aws_stack_run)
    assert kubeconfig["current-context"] == cluster
    exec_ = kubeconfig["users"][0]["user"]["exec"]
    assert exec_["command"] == "aws"
    assert exec_["args"][:4] == ["eks", "get-token", "--cluster-name", cluster]
    assert exec_["args"][exec_["args"].index("--region") + 1] == region
    assert kubeconfig["clusters"][0]["cluster"]["server"].endswith(f".{region}.eks.amazonaws.com")


def test_kubeconfig_is_a_secret_everywhere(aws_stack_run: ProgramRun) -> None:
    provider = aws_stack_run.one("pulumi:providers:kubernetes")
    assert provider.has_secret_at("kubeconfig")
    assert "kubeconfig" in aws_stack_run.secret_exports
    assert "token" not in json.dumps(_provider_kubeconfig(aws_stack_run)["users"]).lower().replace(
        "get-token", ""
    )


def test_outputs_are_the_documented_set(aws_stack_run: ProgramRun) -> None:
    assert {"clusterType", "clusterName", "region", "kubeconfig", "namespace"} <= set(aws_stack_run.exports)
    assert aws_stack_run.exports["region"] == aws_stack_run.config["aws:region"]


def test_hyperpod_stack_exports_its_hyperpod_cluster(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["hyperpod"]
    assert run.exports["clusterType"] == "hyperpod"
    arn = json.loads(run.config["ray-on-eks:hyperpod"])["clusterArn"]
    assert run.exports["hyperpodClusterName"] == HYPERPOD_CLUSTERS[arn]["clusterName"]
    assert run.exports["clusterName"] == HYPERPOD_EKS_CLUSTER


def test_provider_adopts_objects_a_destroy_kept(aws_stack_run: ProgramRun) -> None:
    # Issue 11, defect 3: since pulumi-kubernetes 4.29 creating an object that exists (a claim or
    # namespace kept by `pulumi destroy`) fails with AlreadyExists unless the provider upserts; the
    # upsert is a server-side apply, so that must stay on too.
    provider = aws_stack_run.one("pulumi:providers:kubernetes")
    assert provider.inputs["upsertExistingObjects"] == "true"
    assert provider.inputs["enableServerSideApply"] == "true"


def test_provider_is_a_child_of_the_cluster_target(aws_stack_run: ProgramRun) -> None:
    provider = aws_stack_run.one("pulumi:providers:kubernetes")
    parent = aws_stack_run.by_urn(provider.parent)
    assert parent.type == "ray-on-eks:aws:ClusterTarget"


def test_create_cluster_builds_tainted_gpu_nodes_and_pod_identity_agent() -> None:
    run = run_program(
        "dev", {"createCluster": True, "newCluster": {"gpuInstanceType": "g6.xlarge", "gpuNodesMax": 3}}
    )
    assert run.error is None, run.error
    cluster = run.one("eks:index:Cluster")
    assert cluster.inputs["name"] == "ml-platform-dev"
    assert cluster.inputs["skipDefaultNodeGroup"] is True
    groups = {g.name: g for g in run.of_type("eks:index:ManagedNodeGroup")}
    assert set(groups) == {"cluster-system-nodes", "cluster-cpu-nodes", "cluster-gpu-nodes"}
    gpu = groups["cluster-gpu-nodes"].inputs
    assert gpu["instanceTypes"] == ["g6.xlarge"]
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert gpu["scalingConfig"]["maxSize"] == 3
    assert "taints" not in groups["cluster-cpu-nodes"].inputs
    addon = run.one("aws:eks/addon:Addon", "cluster-pod-identity-agent")
    assert addon.inputs["addonName"] == "eks-pod-identity-agent"
    # The provider is only created once the cluster (and its add-on) exist.
    provider = run.one("pulumi:providers:kubernetes")
    assert addon.urn in provider.dependencies


def test_existing_cluster_creates_no_aws_resources(aws_stack_run: ProgramRun) -> None:
    target = aws_stack_run.one("ray-on-eks:aws:ClusterTarget")
    children = [r for r in aws_stack_run.resources if r.parent == target.urn]
    assert [c.type for c in children] == ["pulumi:providers:kubernetes"]


def test_build_kubeconfig_uses_exec_auth_only() -> None:
    doc = build_kubeconfig(cluster_name="c", endpoint="https://e", ca_data="Q0E=", region="eu-west-1")
    user = doc["users"][0]["user"]
    assert set(user) == {"exec"}
    assert user["exec"]["args"][-3:] == ["eu-west-1", "--output", "json"]

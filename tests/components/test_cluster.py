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


def _depends_on(run: ProgramRun) -> dict[str, set[str]]:
    """URN -> every URN it (transitively) waits for: declared/property dependencies and its parent.

    `pulumi destroy` deletes a resource only after everything that depends on it, children before
    their parent (pulumi/pulumi pkg/resource/graph/dependency_graph.go, DependingOn with children).
    """
    direct = {r.urn: set(r.dependencies) | ({r.parent} if r.parent else set()) for r in run.resources}
    closed: dict[str, set[str]] = {}

    def walk(urn: str) -> set[str]:
        if urn not in closed:
            closed[urn] = set()
            for dep in direct.get(urn, set()):
                closed[urn] |= {dep} | walk(dep)
        return closed[urn]

    for urn in direct:
        walk(urn)
    return closed


def test_sandbox_creates_an_auto_mode_cluster_in_its_own_vpc(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["sandbox"]
    new = json.loads(run.config["ray-on-eks:newCluster"])
    vpc = run.one("awsx:ec2:Vpc").inputs
    assert vpc["numberOfAvailabilityZones"] == new["availabilityZones"] >= 2
    assert vpc["natGateways"] == {"strategy": "Single"}
    tags = {spec["type"]: spec["tags"] for spec in vpc["subnetSpecs"]}
    assert tags == {
        "Private": {"kubernetes.io/role/internal-elb": "1"},
        "Public": {"kubernetes.io/role/elb": "1"},
    }
    cluster = run.one("eks:index:Cluster").inputs
    assert cluster["name"] == run.config["ray-on-eks:clusterName"]
    assert cluster["autoMode"]["enabled"] is True
    assert cluster["autoMode"]["computeConfig"]["nodePools"] == ["general-purpose", "system"]
    assert cluster["authenticationMode"] == "API"
    assert cluster["vpcId"] == "vpc-0c0ffee0c0ffee000"
    assert cluster["privateSubnetIds"] == [f"subnet-0aaaa00000000000{i}" for i in range(2)]
    # Auto Mode runs the Pod Identity agent, device plugin and EBS CSI: no add-on or chart for them.
    assert not [
        a for a in run.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "eks-pod-identity-agent"
    ]


def test_sandbox_nodepools_storage_class_and_network_policy(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["sandbox"]
    new = json.loads(run.config["ray-on-eks:newCluster"])
    pools = {
        p.inputs["metadata"]["name"]: p.inputs for p in run.of_type("kubernetes:karpenter.sh/v1:NodePool")
    }
    assert set(pools) == {"ray-cpu", "ray-gpu"}
    cpu_req = {r["key"]: r["values"] for r in pools["ray-cpu"]["spec"]["template"]["spec"]["requirements"]}
    assert cpu_req["eks.amazonaws.com/instance-family"] == new["cpuInstanceFamilies"]
    assert cpu_req["karpenter.sh/capacity-type"] == new["cpuCapacityTypes"]
    assert pools["ray-cpu"]["spec"]["limits"] == {"cpu": str(new["cpuLimit"])}
    assert pools["ray-gpu"]["spec"]["limits"] == {"nvidia.com/gpu": str(new["gpuLimit"])}
    assert pools["ray-gpu"]["spec"]["template"]["spec"]["taints"][0]["key"] == "nvidia.com/gpu"
    sc = run.one("kubernetes:storage.k8s.io/v1:StorageClass", "cluster-gp3").inputs
    assert sc["provisioner"] == "ebs.csi.eks.amazonaws.com"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    cni = run.one("kubernetes:core/v1:ConfigMap", "cluster-network-policy").inputs
    assert cni["metadata"] == {"name": "amazon-vpc-cni", "namespace": "kube-system"}
    assert cni["data"] == {"enable-network-policy-controller": "true"}
    provider = run.one("pulumi:providers:kubernetes")
    for obj in (
        *run.of_type("kubernetes:karpenter.sh/v1:NodePool"),
        run.one("kubernetes:storage.k8s.io/v1:StorageClass"),
    ):
        assert obj.provider.startswith(provider.urn)


def test_every_sandbox_worker_group_lands_on_a_nodepool_it_can_use(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["sandbox"]
    pools = {
        p.inputs["metadata"]["name"]: p.inputs["spec"]
        for p in run.of_type("kubernetes:karpenter.sh/v1:NodePool")
    }
    ray = run.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    for group in ray["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        itype = pod["nodeSelector"]["node.kubernetes.io/instance-type"]
        tolerated = {t.get("key") for t in pod.get("tolerations") or []}
        fits = [
            name
            for name, spec in pools.items()
            if itype.split(".")[0]
            in next(
                r["values"]
                for r in spec["template"]["spec"]["requirements"]
                if r["key"].endswith("instance-family")
            )
            and all(t["key"] in tolerated for t in spec["template"]["spec"].get("taints") or [])
        ]
        assert fits, f"{group['groupName']} ({itype}) fits no NodePool"


def test_teardown_deletes_ray_then_nodepools_then_the_cluster(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["sandbox"]
    waits = _depends_on(run)
    cluster = run.one("eks:index:Cluster").urn
    pools = [p.urn for p in run.of_type("kubernetes:karpenter.sh/v1:NodePool")]
    ray_objects = [
        run.one("kubernetes:ray.io/v1:RayCluster"),
        run.one("kubernetes:core/v1:Namespace", "ray-namespace"),
        *run.of_type("kubernetes:ray.io/v1:RayJob"),
    ]
    for obj in ray_objects:
        # Created after and so deleted before every NodePool: no Ray pod outlives the nodes' pool.
        assert set(pools) <= waits[obj.urn], obj.name
    for pool in pools:
        assert cluster in waits[pool]
    assert not set(pools) & {u for o in ray_objects for u in [o.urn]}


def test_extra_admins_get_cluster_admin_access_entries() -> None:
    admin = "arn:aws:iam::123456789012:role/PlatformAdmin"
    run = run_program("sandbox", {"newCluster": {"adminPrincipalArns": [admin]}})
    assert run.error is None, run.error
    entry = run.one("aws:eks/accessEntry:AccessEntry").inputs
    assert entry["principalArn"] == admin and entry["clusterName"] == "ray-sandbox"
    policy = run.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation").inputs
    assert policy["policyArn"].endswith("cluster-access-policy/AmazonEKSClusterAdminPolicy")
    assert policy["accessScope"] == {"type": "cluster"}


def test_existing_vpc_subnets_skip_the_vpc() -> None:
    subnets = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    run = run_program("sandbox", {"newCluster": {"vpcId": "vpc-0123456789abcdef0", "subnetIds": subnets}})
    assert run.error is None, run.error
    assert not run.of_type("awsx:ec2:Vpc")
    cluster = run.one("eks:index:Cluster").inputs
    assert cluster["vpcId"] == "vpc-0123456789abcdef0" and cluster["privateSubnetIds"] == subnets


def test_existing_cluster_creates_no_aws_resources(aws_stack_run: ProgramRun) -> None:
    target = aws_stack_run.one("ray-on-eks:aws:ClusterTarget")
    children = [r for r in aws_stack_run.resources if r.parent == target.urn]
    if aws_stack_run.config.get("ray-on-eks:createCluster") == "true":
        assert "eks:index:Cluster" in [c.type for c in children]
    else:
        assert [c.type for c in children] == ["pulumi:providers:kubernetes"]


def test_build_kubeconfig_uses_exec_auth_only() -> None:
    doc = build_kubeconfig(cluster_name="c", endpoint="https://e", ca_data="Q0E=", region="eu-west-1")
    user = doc["users"][0]["user"]
    assert set(user) == {"exec"}
    assert user["exec"]["args"][-3:] == ["eu-west-1", "--output", "json"]

"""HyperPod description parsing, node capacity and the fit check, without mocks."""

from __future__ import annotations

from typing import Any

import pytest

from components.builders.hyperpod import (
    EFA_HUGEPAGES_MIB,
    HyperPodLookupError,
    Resources,
    ec2_instance_type,
    fit_problems,
    fsx_network,
    kube_reserved_cpu_millis,
    node_allocatable,
    parse_hyperpod_description,
    ray_pod_sets,
)
from components.config import HeadConfig, WorkerGroupConfig
from tests.pulumi_harness import (
    HYPERPOD_ARN,
    HYPERPOD_EKS_CLUSTER,
    HYPERPOD_SECURITY_GROUP,
    HYPERPOD_SUBNET,
    INSTANCE_TYPES,
    hyperpod_description,
)

HEAD = HeadConfig(cpu="4", memory="16Gi", instance_type="ml.m5.2xlarge")
GPU = WorkerGroupConfig(
    name="gpu-workers",
    instance_type="ml.g5.12xlarge",
    replicas=2,
    min_replicas=1,
    max_replicas=4,
    cpu="44",
    memory="160Gi",
    gpus=4,
    efa_devices=1,
)
NO_AUTOSCALER = Resources(cpu_millis=500, memory_mib=512)


def _cluster(**kwargs: Any) -> Any:
    return parse_hyperpod_description(HYPERPOD_ARN, hyperpod_description(**kwargs))


def _allocatable(cluster: Any) -> dict[str, Resources]:
    return {
        g.instance_type: node_allocatable(INSTANCE_TYPES[ec2_instance_type(g.instance_type)])
        for g in cluster.instance_groups
    }


def _problems(groups: list[WorkerGroupConfig], *, clusters: int = 1, autoscaler: bool = False) -> list[str]:
    cluster = _cluster()
    sets = ray_pod_sets(
        head=HEAD,
        worker_groups=groups,
        autoscaler_enabled=autoscaler,
        autoscaler_resources=NO_AUTOSCALER,
        clusters=clusters,
    )
    return fit_problems(sets, cluster, _allocatable(cluster))


# ---- description ---------------------------------------------------------------------------------


def test_description_gives_orchestrator_network_and_instance_groups() -> None:
    cluster = _cluster()
    assert cluster.name == "ml-cluster"
    assert cluster.eks_cluster_name == HYPERPOD_EKS_CLUSTER
    assert cluster.subnet_ids == (HYPERPOD_SUBNET,)
    assert cluster.security_group_ids == (HYPERPOD_SECURITY_GROUP,)
    assert [(g.name, g.instance_type, g.count) for g in cluster.instance_groups] == [
        ("controller", "ml.m5.2xlarge", 2),
        ("workers", "ml.g5.12xlarge", 4),
    ]


def test_current_count_not_the_target_count_is_what_pods_can_use() -> None:
    raw = hyperpod_description()
    raw["instanceGroups"][1].update(instanceCount=8, currentCount=3)
    cluster = parse_hyperpod_description(HYPERPOD_ARN, raw)
    assert cluster.nodes_of("ml.g5.12xlarge") == 3


def test_slurm_cluster_is_refused_with_one_line() -> None:
    with pytest.raises(HyperPodLookupError) as info:
        _cluster(eks=False)
    assert "not orchestrated by Amazon EKS" in str(info.value)
    assert "\n" not in str(info.value)


def test_failed_cluster_is_refused() -> None:
    raw = {**hyperpod_description(), "clusterStatus": "Failed"}
    with pytest.raises(HyperPodLookupError, match="is Failed"):
        parse_hyperpod_description(HYPERPOD_ARN, raw)


def test_fsx_goes_into_the_hyperpod_subnet_unless_overridden() -> None:
    cluster = _cluster()
    assert fsx_network(cluster, None, ()) == (HYPERPOD_SUBNET, (HYPERPOD_SECURITY_GROUP,))
    assert fsx_network(cluster, "subnet-0123456789abcdef0", ("sg-0aaaaaaaaaaaaaaa1",)) == (
        "subnet-0123456789abcdef0",
        ("sg-0aaaaaaaaaaaaaaa1",),
    )


# ---- capacity ------------------------------------------------------------------------------------


def test_kube_reserved_cpu_follows_the_eks_ami_ranges() -> None:
    # 16 vCPUs: 60m (first core) + 10m + 10m (cores 3-4) + 12 x 2.5m = 110m.
    assert kube_reserved_cpu_millis(16) == 110
    assert kube_reserved_cpu_millis(1) == 60


def test_efa_nodes_lose_their_huge_pages_from_memory() -> None:
    plain = node_allocatable(INSTANCE_TYPES["g5.12xlarge"] | {"efaSupported": False})
    efa = node_allocatable(INSTANCE_TYPES["g5.12xlarge"])
    assert efa.efa == 1 and plain.efa == 0
    assert plain.memory_mib - efa.memory_mib == EFA_HUGEPAGES_MIB == efa.hugepages_mib
    assert efa.gpus == 4


def test_neuron_devices_are_counted() -> None:
    assert node_allocatable(INSTANCE_TYPES["trn1.32xlarge"]).neuron == 16


# ---- fit check -----------------------------------------------------------------------------------


def test_the_documented_hyperpod_shape_fits() -> None:
    assert _problems([GPU]) == []


def test_an_instance_type_the_cluster_lacks_is_named_with_what_it_has() -> None:
    (problem,) = _problems([GPU.model_copy(update={"instance_type": "ml.g5.48xlarge"})])
    assert problem.startswith("workerGroups[0].instanceType: ml.g5.48xlarge")
    assert "controller (ml.m5.2xlarge x 2), workers (ml.g5.12xlarge x 4)" in problem


def test_too_many_pods_for_the_instance_group() -> None:
    (problem,) = _problems([GPU.model_copy(update={"replicas": 5, "max_replicas": 5})])
    assert problem.startswith("workerGroups[0]: 5 pods of worker group 'gpu-workers'")
    assert "4 ml.g5.12xlarge nodes" in problem and "only 4 do" in problem


def test_the_autoscaler_counts_max_replicas_and_every_concurrent_cluster_counts() -> None:
    assert _problems([GPU], autoscaler=True) == []  # maxReplicas 4 on 4 nodes
    head_problem, worker_problem = _problems([GPU], clusters=3)  # 3 clusters x 2 replicas = 6 > 4
    assert (
        worker_problem.startswith("workerGroups[0]: 6 pods")
        and "3 Ray clusters x 2 replicas" in worker_problem
    )
    assert head_problem.startswith("head: 3 pods")
    (head,) = _problems([GPU.model_copy(update={"replicas": 1})], clusters=3)
    assert head.startswith("head: 3 pods of the head")  # one 4-CPU head per ml.m5.2xlarge, 2 nodes


def test_more_gpus_than_a_node_has() -> None:
    (problem,) = _problems([GPU.model_copy(update={"gpus": 8})])
    assert "asks for cpu 44, memory 163840Mi, GPUs 8" in problem
    assert "more GPUs than one ml.g5.12xlarge node offers" in problem


def test_more_efa_devices_than_a_node_has() -> None:
    (problem,) = _problems([GPU.model_copy(update={"efa_devices": 2})])
    assert "more EFA devices than one ml.g5.12xlarge node offers" in problem
    assert "EFA devices 1" in problem  # what the node has


def test_cpu_beyond_the_reserve_is_refused() -> None:
    # 48 vCPUs minus kube-reserved and the DaemonSet allowance leave less than 48.
    (problem,) = _problems([GPU.model_copy(update={"cpu": "48", "replicas": 1})])
    assert "more cpu than one ml.g5.12xlarge node offers" in problem


def test_unpinned_head_only_needs_some_instance_group() -> None:
    cluster = _cluster()
    sets = ray_pod_sets(
        head=HeadConfig(cpu="64", memory="8Gi"),
        worker_groups=[GPU],
        autoscaler_enabled=False,
        autoscaler_resources=NO_AUTOSCALER,
        clusters=1,
    )
    (problem,) = fit_problems(sets, cluster, _allocatable(cluster))
    assert problem.startswith("head: one pod of the head asks for cpu 64")

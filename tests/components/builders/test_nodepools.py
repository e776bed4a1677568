"""The new cluster's capacity, pure: NodePools against the Karpenter v1 CRD, the fit check, gp3."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from components.builders.nodepools import (
    AUTO_MODE_NODE_CLASS,
    EBS_PROVISIONER,
    PodPlacement,
    PoolSpec,
    build_default_storage_class,
    build_nodepool,
    family_problem,
    nodepool_problems,
)
from components.config import NewClusterConfig
from tests.kuberay_schemas import _strict

KARPENTER = Path(__file__).resolve().parents[2] / "schemas" / "karpenter-1.14.1"


def _nodepool_schema() -> dict:
    doc = yaml.safe_load((KARPENTER / "karpenter.sh_nodepools.yaml").read_text())
    (version,) = [v for v in doc["spec"]["versions"] if v["name"] == "v1"]
    return _strict(version["schema"]["openAPIV3Schema"])


def _pods(*pods: PodPlacement) -> list[PodPlacement]:
    return list(pods)


def _pod(instance_type: str | None, gpus: int = 0, selector: dict[str, str] | None = None) -> PodPlacement:
    return PodPlacement(
        key="workerGroups[0].instanceType",
        instance_type=instance_type,
        gpus=gpus,
        node_selector=selector or {},
        tolerates_gpu_taint=gpus > 0,
    )


POOLS = NewClusterConfig(cpu_capacity_types=("on-demand", "spot")).pools()


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: p.name)
def test_nodepools_validate_against_the_karpenter_v1_crd(pool: PoolSpec) -> None:
    doc = build_nodepool(pool)
    assert doc["apiVersion"] == "karpenter.sh/v1" and doc["kind"] == "NodePool"
    errors = list(jsonschema.Draft7Validator(_nodepool_schema()).iter_errors(doc))
    assert not errors, [e.message for e in errors]


def test_a_misspelt_field_fails_the_crd_schema() -> None:
    doc = build_nodepool(POOLS[0])
    doc["spec"]["disruption"]["consolidateAftr"] = "5m"
    assert list(jsonschema.Draft7Validator(_nodepool_schema()).iter_errors(doc))


def test_pools_use_auto_modes_node_class_limits_and_consolidation() -> None:
    cpu, gpu = (build_nodepool(p) for p in POOLS)
    for doc in (cpu, gpu):
        assert doc["spec"]["template"]["spec"]["nodeClassRef"] == AUTO_MODE_NODE_CLASS
        assert doc["spec"]["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert cpu["spec"]["limits"] == {"cpu": "256"}
    assert gpu["spec"]["limits"] == {"nvidia.com/gpu": "8"}
    assert "taints" not in cpu["spec"]["template"]["spec"]
    assert gpu["spec"]["template"]["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    ]
    requirements = {r["key"]: r["values"] for r in cpu["spec"]["template"]["spec"]["requirements"]}
    assert requirements["karpenter.sh/capacity-type"] == ["on-demand", "spot"]
    assert "m6i" in requirements["eks.amazonaws.com/instance-family"]


def test_no_gpu_pool_when_the_gpu_limit_is_zero() -> None:
    assert [p.name for p in NewClusterConfig(gpu_limit=0).pools()] == ["ray-cpu"]


def test_every_default_group_shape_fits() -> None:
    assert nodepool_problems(POOLS, _pods(_pod("m6i.2xlarge"), _pod("g5.2xlarge", gpus=1))) == []


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (_pod("g5.2xlarge", gpus=0), "no cpu NodePool"),  # a GPU node, pods that do not tolerate its taint
        (_pod("m6i.2xlarge", gpus=1), "add 'm6i' to newCluster.gpuInstanceFamilies"),  # no GPU there
        (_pod("p5.48xlarge", gpus=8), "add 'p5' to newCluster.gpuInstanceFamilies"),
        (_pod("x2idn.16xlarge"), "add 'x2idn' to newCluster.cpuInstanceFamilies"),
        (_pod("m6i.large", selector={"karpenter.sh/capacity-type": "reserved"}), "capacity-type=reserved"),
        (_pod("m6i.large", selector={"team": "ml"}), "team=ml"),
    ],
)
def test_unsatisfiable_groups_are_named_with_the_fix(pod: PodPlacement, expected: str) -> None:
    (problem,) = nodepool_problems(POOLS, [pod])
    assert problem.startswith("workerGroups[0].instanceType: ")
    assert expected in problem


def test_selectors_the_pool_sets_are_satisfiable() -> None:
    pod = _pod(
        "m6i.large",
        selector={"karpenter.sh/capacity-type": "spot", "topology.kubernetes.io/zone": "us-west-2a"},
    )
    assert nodepool_problems(POOLS, [pod]) == []


@pytest.mark.parametrize(
    ("family", "ok"), [("m6i", True), ("g6e", True), ("m7g", False), ("g5g", False), ("6x", False)]
)
def test_family_check(family: str, ok: bool) -> None:
    assert (family_problem(family) is None) is ok


def test_default_storage_class_is_encrypted_gp3_on_auto_modes_ebs() -> None:
    sc = build_default_storage_class()
    assert sc["provisioner"] == EBS_PROVISIONER == "ebs.csi.eks.amazonaws.com"
    assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"

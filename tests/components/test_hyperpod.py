"""HyperPod stacks under mocks: the cluster lookup wiring, the fit check and what every pod gets.

The mocked Cloud Control describes an EKS-orchestrated HyperPod cluster of two instance groups
(``controller``: 2 x ml.m5.2xlarge, ``workers``: 4 x ml.g5.12xlarge; tests/pulumi_harness.py); tests
that need another cluster replace the description with ``monkeypatch.setitem``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from components.builders.placement import HYPERPOD_HEALTH_LABEL, HYPERPOD_SCHEDULABLE
from components.builders.ray import EFA_ENV, HUGEPAGES_RESOURCE, NEURON_RESOURCE, SHM_VOLUME
from components.config import ConfigError
from components.kuberay_operator import load_crds
from tests.kuberay_schemas import _strict
from tests.kuberay_validation import validate
from tests.pulumi_harness import (
    ACCOUNT,
    HYPERPOD_ARN,
    HYPERPOD_CLUSTERS,
    HYPERPOD_EKS_CLUSTER,
    HYPERPOD_SECURITY_GROUP,
    HYPERPOD_SUBNET,
    ProgramRun,
    hyperpod_description,
    run_ok,
    run_program,
    run_shared,
)

STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
GPU_GROUP = {
    "name": "gpu-workers",
    "instanceType": "ml.g5.12xlarge",
    "replicas": 2,
    "minReplicas": 1,
    "maxReplicas": 4,
    "cpu": "44",
    "memory": "160Gi",
    "gpus": 4,
    "efaDevices": 1,
}


def _fails_before_any_resource(run: ProgramRun, *fragments: str) -> str:
    assert isinstance(run.error, ConfigError), f"expected ConfigError, got {run.error!r}"
    message = str(run.error)
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message
    assert run.resources == [], "nothing may be registered when the HyperPod check fails"
    return message


def _fsx_network(run: ProgramRun) -> tuple[str, list[str], set[str]]:
    params = run.one(STORAGE_CLASS, "fsx-sc").inputs["parameters"]
    rules = {r.inputs["securityGroupId"] for r in run.of_type(RULE) if r.name.startswith("fsx-")}
    return params["subnetId"], params["securityGroupIds"].split(","), rules


# ---- lookup wiring -------------------------------------------------------------------------------


def test_eks_cluster_and_fsx_network_come_from_the_hyperpod_description() -> None:
    run = run_shared("hyperpod")
    assert "ray-on-eks:clusterName" not in run.config  # nothing but the ARN was configured
    kubeconfig = json.loads(run.one("pulumi:providers:kubernetes").inputs["kubeconfig"])
    assert kubeconfig["current-context"] == HYPERPOD_EKS_CLUSTER
    assert run.exports["clusterName"] == HYPERPOD_EKS_CLUSTER
    assert run.exports["hyperpodClusterName"] == "ml-cluster"
    # The HyperPod nodes' subnet and group, not the EKS cluster's (subnet-0aa11..., sg-0fedcba...).
    assert _fsx_network(run) == (HYPERPOD_SUBNET, [HYPERPOD_SECURITY_GROUP], {HYPERPOD_SECURITY_GROUP})


def test_explicit_subnet_and_security_groups_win_over_the_description() -> None:
    overrides = {
        "hyperpod": {
            "clusterArn": HYPERPOD_ARN,
            "subnetId": "subnet-0123456789abcdef0",
            "securityGroupIds": ["sg-0aaaaaaaaaaaaaaa1", "sg-0aaaaaaaaaaaaaaa2"],
        }
    }
    subnet, groups, rules = _fsx_network(run_ok("hyperpod", overrides))
    assert subnet == "subnet-0123456789abcdef0"
    assert groups == ["sg-0aaaaaaaaaaaaaaa1", "sg-0aaaaaaaaaaaaaaa2"] and rules == set(groups)


def test_fsx_overrides_win_over_hyperpod_overrides() -> None:
    run = run_ok(
        "hyperpod",
        {
            "hyperpod": {"clusterArn": HYPERPOD_ARN, "subnetId": "subnet-0123456789abcdef0"},
            "fsx": {"enabled": True, "subnetId": "subnet-0fedcba9876543210", "storageCapacityGib": 1200},
        },
    )
    assert _fsx_network(run)[0] == "subnet-0fedcba9876543210"


def test_a_matching_cluster_name_is_accepted_and_a_wrong_one_refused() -> None:
    run_ok("hyperpod", {"clusterName": HYPERPOD_EKS_CLUSTER})
    _fails_before_any_resource(
        run_program("hyperpod", {"clusterName": "some-other-eks"}),
        "ray-on-eks:clusterName: 'some-other-eks' is not the EKS cluster",
        HYPERPOD_EKS_CLUSTER,
    )


def test_a_missing_cluster_is_one_line_before_any_resource() -> None:
    arn = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:cluster/0000000000ab"
    message = _fails_before_any_resource(
        run_program("hyperpod", {"hyperpod": {"clusterArn": arn}}),
        "ray-on-eks:hyperpod.clusterArn: cannot read HyperPod cluster",
        "resource not found",
    )
    assert len(message.splitlines()) == 2  # the heading and one problem


def test_a_slurm_cluster_is_refused_before_any_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(HYPERPOD_CLUSTERS, HYPERPOD_ARN, hyperpod_description(eks=False))
    _fails_before_any_resource(run_program("hyperpod"), "not orchestrated by Amazon EKS")


def test_aws_native_region_must_match(monkeypatch: pytest.MonkeyPatch) -> None:
    _fails_before_any_resource(run_program("hyperpod", {"aws-native:region": None}), "aws-native:region")


# ---- fit check through the program ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (
            {"instanceType": "ml.p5.48xlarge", "gpus": 8, "efaDevices": 32},
            [
                "workerGroups[0].instanceType: ml.p5.48xlarge is not an instance type",
                "workers (ml.g5.12xlarge x 4)",
            ],
        ),
        ({"replicas": 3, "maxReplicas": 4}, ["workerGroups[0]: 6 pods", "only 4 do"]),
        ({"gpus": 8}, ["workerGroups[0]: one pod", "more GPUs than one ml.g5.12xlarge"]),
        ({"efaDevices": 2}, ["workerGroups[0]: one pod", "more EFA devices than one ml.g5.12xlarge"]),
    ],
    ids=["wrong-type", "too-many-pods", "gpus", "efa"],
)
def test_a_shape_the_cluster_cannot_run_fails_before_any_resource(
    change: dict[str, Any], fragments: list[str]
) -> None:
    # 2 Ray clusters (the RayCluster and the ephemeral finetune-llm job) share the worker shape.
    run = run_program("hyperpod", {"workerGroups": [{**GPU_GROUP, **change}]})
    _fails_before_any_resource(run, *[f"ray-on-eks:{fragments[0]}", *fragments[1:]])


# ---- every pod pinned ----------------------------------------------------------------------------


def _pod_specs(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec (a mapping with ``containers``) inside ``node``, with where it was found."""
    if isinstance(node, dict):
        if "containers" in node:
            yield path, node
        for key, value in node.items():
            yield from _pod_specs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _pod_specs(value, f"{path}[{index}]")


def _big_cluster(monkeypatch: pytest.MonkeyPatch, *groups: tuple[str, str, int]) -> None:
    monkeypatch.setitem(HYPERPOD_CLUSTERS, HYPERPOD_ARN, hyperpod_description(groups=list(groups)))


def test_every_pod_template_on_a_hyperpod_stack_is_pinned_to_schedulable_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RayCluster + ephemeral job cluster + RayService cluster: 3 heads, 6 GPU workers.
    _big_cluster(monkeypatch, ("controller", "ml.m5.2xlarge", 3), ("workers", "ml.g5.12xlarge", 6))
    jobs = [
        {"name": "train-digits", "workload": "dt-pytorch", "cluster": "ephemeral"},
        {"name": "hello", "workload": "quickstart", "cluster": "shared"},
    ]
    run = run_ok("hyperpod", {"rayJobs": jobs, "rayServices": [{"name": "digits"}]})
    seen: dict[str, int] = {}
    for kind, resources in (
        ("RayCluster", run.custom_resources("RayCluster")),
        ("RayJob", run.custom_resources("RayJob")),
        ("RayService", run.custom_resources("RayService")),
        ("CronJob", run.of_type("kubernetes:batch/v1:CronJob")),
    ):
        for resource in resources:
            for path, spec in _pod_specs(resource.inputs["spec"]):
                where = f"{kind} {resource.name}{path}"
                assert spec.get("nodeSelector", {}).get(HYPERPOD_HEALTH_LABEL) == HYPERPOD_SCHEDULABLE, where
                seen[kind] = seen.get(kind, 0) + 1
    # head + worker; 2 submitters + the ephemeral cluster's head + worker; head + worker; cleanup.
    assert seen == {"RayCluster": 2, "RayJob": 4, "RayService": 2, "CronJob": 1}


# ---- accelerators --------------------------------------------------------------------------------

NEURON_IMAGE = "123456789012.dkr.ecr.us-east-2.amazonaws.com/ray-neuron:2.60.0-sdk2.24"
ACCELERATOR_GROUPS = [
    {
        "name": "cpu-workers",
        "instanceType": "ml.m5.2xlarge",
        "replicas": 1,
        "maxReplicas": 1,
        "cpu": "2",
        "memory": "8Gi",
    },
    GPU_GROUP,
    {
        "name": "trn-workers",
        "instanceType": "ml.trn1.32xlarge",
        "replicas": 1,
        "maxReplicas": 1,
        "cpu": "120",
        "memory": "480Gi",
        "neuronDevices": 16,
        "efaDevices": 8,
        "image": NEURON_IMAGE,
    },
]


def _crd_errors(document: dict[str, Any]) -> list[str]:
    """Violations of the vendored KubeRay v1 CRD schema (unknown fields rejected)."""
    crd = next(c for c in load_crds() if c["spec"]["names"]["kind"] == document["kind"])
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    validator = jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_shm_efa_and_neuron_settings_land_exactly_on_the_groups_that_need_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _big_cluster(
        monkeypatch,
        ("controller", "ml.m5.2xlarge", 2),
        ("workers", "ml.g5.12xlarge", 4),
        ("trainium", "ml.trn1.32xlarge", 2),
    )
    run = run_ok("hyperpod", {"workerGroups": ACCELERATOR_GROUPS, "rayJobs": []})
    cluster = run.one("kubernetes:ray.io/v1:RayCluster")
    document = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": cluster.inputs["metadata"]}
    document["spec"] = cluster.inputs["spec"]
    assert _crd_errors(document) == []
    assert validate(document) == []  # KubeRay v1.7.0's own admission rules

    groups = {g["groupName"]: g["template"]["spec"] for g in cluster.inputs["spec"]["workerGroupSpecs"]}
    head = cluster.inputs["spec"]["headGroupSpec"]["template"]["spec"]

    def shm(spec: dict[str, Any]) -> str | None:
        for volume in spec.get("volumes", []):
            if volume["name"] == SHM_VOLUME:
                assert volume["emptyDir"]["medium"] == "Memory"
                mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
                assert mounts[SHM_VOLUME] == "/dev/shm"
                return str(volume["emptyDir"]["sizeLimit"])
        return None

    def limits(spec: dict[str, Any]) -> dict[str, Any]:
        resources = spec["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"]
        return dict(resources["limits"])

    def env(spec: dict[str, Any]) -> dict[str, str]:
        return {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}

    # /dev/shm: half the pod's memory on the GPU and Neuron groups, none on CPU pods or the head.
    assert (shm(head), shm(groups["cpu-workers"])) == (None, None)
    assert shm(groups["gpu-workers"]) == "81920Mi"
    assert shm(groups["trn-workers"]) == "245760Mi"
    # EFA: devices, huge pages and the libfabric / NCCL environment only where efaDevices is set.
    assert limits(groups["gpu-workers"])["vpc.amazonaws.com/efa"] == 1
    assert limits(groups["gpu-workers"])[HUGEPAGES_RESOURCE] == "5120Mi"
    assert limits(groups["trn-workers"])["vpc.amazonaws.com/efa"] == 8
    for name in ("gpu-workers", "trn-workers"):
        assert EFA_ENV.items() <= env(groups[name]).items()
    for spec in (head, groups["cpu-workers"]):
        assert not {"vpc.amazonaws.com/efa", HUGEPAGES_RESOURCE, NEURON_RESOURCE} & set(limits(spec))
        assert not set(EFA_ENV) & set(env(spec))
    # Neuron: devices, toleration and the group's own image only on the Trainium group.
    assert limits(groups["trn-workers"])[NEURON_RESOURCE] == 16
    assert NEURON_RESOURCE not in limits(groups["gpu-workers"])
    assert groups["trn-workers"]["containers"][0]["image"] == NEURON_IMAGE
    assert any(t["key"] == NEURON_RESOURCE for t in groups["trn-workers"]["tolerations"])
    assert groups["gpu-workers"]["containers"][0]["image"].endswith("-gpu")
    assert groups["cpu-workers"]["containers"][0]["image"] != NEURON_IMAGE
    # Still restricted: no capability is added for EFA.
    for spec in groups.values():
        assert spec["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_neuron_devices_beyond_the_instance_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _big_cluster(monkeypatch, ("controller", "ml.m5.2xlarge", 2), ("trainium", "ml.trn1.32xlarge", 2))
    trn = {**ACCELERATOR_GROUPS[2], "neuronDevices": 32}
    _fails_before_any_resource(
        run_program("hyperpod", {"workerGroups": [trn], "rayJobs": []}),
        "more Neuron devices than one ml.trn1.32xlarge node offers",
    )


def test_an_instance_type_without_ec2_facts_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _big_cluster(monkeypatch, ("controller", "ml.m5.2xlarge", 2), ("odd", "ml.x9.huge", 1))
    _fails_before_any_resource(
        run_program("hyperpod"), "cannot read the capacity of instance type ml.x9.huge", "InvalidInstanceType"
    )

"""Stack configuration: Pulumi.yaml is a valid project file, its keys match the models, and bad
input fails before any resource is registered with a message naming the key, the value and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.config import ConfigError, StackConfig, parse_stack_config
from components.versions import RAY_VERSION
from tests.pulumi_harness import REPO, run_program, stack_files

PROJECT_FILE = REPO / "Pulumi.yaml"

MINIMAL: dict[str, Any] = {
    "region": "us-west-2",
    "clusterName": "ml-dev",
    "workerGroups": [{"name": "cpu", "instanceType": "m6i.2xlarge"}],
}


def test_pulumi_yaml_validates_against_pulumis_project_schema(schemas: Path) -> None:
    schema = json.loads((schemas / "pulumi-project.json").read_text())
    project = yaml.safe_load(PROJECT_FILE.read_text())
    jsonschema.Draft202012Validator(schema).validate(project)


def test_pulumi_yaml_types_are_only_those_the_cli_accepts() -> None:
    # Checked without the shared schema too: an object type or a schema on a provider key breaks
    # `pulumi up` before the program runs.
    config = yaml.safe_load(PROJECT_FILE.read_text())["config"]
    for key, decl in config.items():
        if ":" in key:
            assert not isinstance(decl, dict), f"provider key {key} must take a plain value"
            continue
        assert isinstance(decl, dict) and decl.get("description"), f"{key} needs a description"
        assert decl.get("type", "string") in {"string", "integer", "boolean", "array"}, key


def test_pulumi_yaml_declares_exactly_the_model_keys_with_matching_defaults() -> None:
    declared = yaml.safe_load(PROJECT_FILE.read_text())["config"]
    fields = {field.alias: field for name, field in StackConfig.model_fields.items() if name != "region"}
    assert set(declared) == set(fields)
    for key, decl in declared.items():
        if "default" in decl:
            assert decl["default"] == fields[key].default, (
                f"{key}: Pulumi.yaml default differs from the model"
            )


def test_minimal_config_parses_with_documented_defaults() -> None:
    config = parse_stack_config(MINIMAL)
    assert config.cluster_type == "eks"
    assert config.namespace == "ray"
    assert config.token_auth is True
    assert config.retain_data is True
    assert config.head.num_cpus == 0
    assert config.worker_groups[0].max_replicas == 1


def test_models_are_frozen() -> None:
    config = parse_stack_config(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        config.namespace = "other"  # type: ignore[misc]


def test_numbers_for_quantities_are_accepted() -> None:
    config = parse_stack_config(
        {**MINIMAL, "workerGroups": [{"name": "cpu", "instanceType": "m6i.2xlarge", "cpu": 4}]}
    )
    assert config.worker_groups[0].cpu == "4"


def _group(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "cpu-workers", "instanceType": "m6i.2xlarge", **fields}]


STATIC_FSX: dict[str, Any] = {
    "enabled": True,
    "mode": "static",
    "fileSystemId": "fs-0123456789abcdef0",
    "dnsName": "fs-0123456789abcdef0.fsx.us-west-2.amazonaws.com",
    "mountName": "abcdefgh",
}

WEST_ARN = "arn:aws:sagemaker:us-west-2:123456789012:cluster/a1b2c3d4e5f6"

# (id, overrides applied to Pulumi.dev.yaml, key the message must name, text the message must contain)
BAD_CONFIGS: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing cluster name", {"clusterName": None}, "ray-on-eks:clusterName", "pulumi config set"),
    ("missing region", {"aws:region": None}, "aws:region", "required"),
    ("malformed region", {"aws:region": "uswest2"}, "aws:region", '"uswest2"'),
    (
        "unknown cluster type",
        {"clusterType": "gke"},
        "ray-on-eks:clusterType",
        "'eks', 'hyperpod' or 'kubernetes'",
    ),
    ("bad cluster name", {"clusterName": "my cluster!"}, "ray-on-eks:clusterName", "letters, digits"),
    (
        "hyperpod without its block",
        {"clusterType": "hyperpod"},
        "ray-on-eks:hyperpod",
        "hyperpod.clusterArn",
    ),
    (
        "hyperpod with EC2 instance types",
        {
            "clusterType": "hyperpod",
            "hyperpod": {"clusterArn": WEST_ARN},
        },
        "ray-on-eks:workerGroups[0].instanceType",
        "ml.m6i.2xlarge",
    ),
    (
        "eks with a SageMaker instance type",
        {"workerGroups": _group(instanceType="ml.g5.2xlarge")},
        "ray-on-eks:workerGroups[0].instanceType",
        "g5.2xlarge",
    ),
    (
        "hyperpod with createCluster",
        {
            "clusterType": "hyperpod",
            "createCluster": True,
            "hyperpod": {"clusterArn": WEST_ARN},
            "workerGroups": _group(instanceType="ml.m5.2xlarge"),
        },
        "ray-on-eks:createCluster",
        "cannot be combined",
    ),
    (
        "min > max replicas",
        {"workerGroups": _group(minReplicas=3, maxReplicas=1)},
        "ray-on-eks:workerGroups[0]",
        "minReplicas (3) is greater than maxReplicas (1)",
    ),
    (
        "new cluster: a CPU group on a GPU family (its pods do not tolerate the GPU taint)",
        {"createCluster": True, "workerGroups": _group(instanceType="g5.2xlarge")},
        "ray-on-eks:workerGroups[0].instanceType",
        "no cpu NodePool can launch a node for node.kubernetes.io/instance-type=g5.2xlarge",
    ),
    (
        "new cluster: a GPU group on a family no GPU NodePool allows",
        {"createCluster": True, "workerGroups": _group(instanceType="p5.48xlarge", gpus=8)},
        "ray-on-eks:workerGroups[0].instanceType",
        "add 'p5' to newCluster.gpuInstanceFamilies",
    ),
    (
        "new cluster: GPU group with gpuLimit 0 (no GPU NodePool)",
        {
            "createCluster": True,
            "newCluster": {"gpuLimit": 0},
            "workerGroups": _group(instanceType="g5.xlarge", gpus=1),
        },
        "ray-on-eks:workerGroups[0].instanceType",
        "no gpu NodePool",
    ),
    (
        "new cluster: pinned head outside the CPU NodePool",
        {"createCluster": True, "head": {"instanceType": "x2idn.16xlarge"}},
        "ray-on-eks:head.instanceType",
        "add 'x2idn' to newCluster.cpuInstanceFamilies",
    ),
    (
        "new cluster: Graviton family",
        {"createCluster": True, "newCluster": {"cpuInstanceFamilies": ["m7g"]}},
        "ray-on-eks:newCluster.cpuInstanceFamilies",
        "Graviton (arm64) family; the Ray images are amd64, use an x86 family such as m7i",
    ),
    (
        "new cluster: a family in both NodePools",
        {"createCluster": True, "newCluster": {"cpuInstanceFamilies": ["m6i", "g5"]}},
        "ray-on-eks:newCluster",
        "both list g5",
    ),
    (
        "new cluster: unknown capacity type",
        {"createCluster": True, "newCluster": {"gpuCapacityTypes": ["reserved"]}},
        "ray-on-eks:newCluster.gpuCapacityTypes[0]",
        "on-demand",
    ),
    (
        "new cluster: vpcId without subnetIds",
        {"createCluster": True, "newCluster": {"vpcId": "vpc-0123456789abcdef0"}},
        "ray-on-eks:newCluster",
        "vpcId and subnetIds go together",
    ),
    (
        "new cluster: one subnet",
        {
            "createCluster": True,
            "newCluster": {"vpcId": "vpc-0123456789abcdef0", "subnetIds": ["subnet-0123456789abcdef0"]},
        },
        "ray-on-eks:newCluster",
        "at least two availability zones",
    ),
    (
        "new cluster: one availability zone",
        {"createCluster": True, "newCluster": {"availabilityZones": 1}},
        "ray-on-eks:newCluster.availabilityZones",
        "greater than or equal to 2",
    ),
    (
        "new cluster: public VPC CIDR",
        {"createCluster": True, "newCluster": {"vpcCidr": "8.8.0.0/16"}},
        "ray-on-eks:newCluster.vpcCidr",
        "10.0.0.0/16",
    ),
    (
        "new cluster: admin given as an STS session ARN",
        {
            "createCluster": True,
            "newCluster": {"adminPrincipalArns": ["arn:aws:sts::123456789012:assumed-role/Admin/me"]},
        },
        "ray-on-eks:newCluster.adminPrincipalArns[0]",
        "not an sts assumed-role session ARN",
    ),
    (
        "new cluster: old node-group key",
        {"createCluster": True, "newCluster": {"gpuNodesMax": 3}},
        "ray-on-eks:newCluster.gpuNodesMax",
        "unknown key",
    ),
    (
        "replicas outside bounds",
        {"workerGroups": _group(replicas=5, maxReplicas=2)},
        "ray-on-eks:workerGroups[0]",
        "replicas (5) must lie between",
    ),
    ("negative gpus", {"workerGroups": _group(gpus=-1)}, "ray-on-eks:workerGroups[0].gpus", "-1"),
    (
        "non-numeric replicas",
        {"workerGroups": _group(maxReplicas="lots")},
        "ray-on-eks:workerGroups[0].maxReplicas",
        "a whole number",
    ),
    (
        "malformed memory",
        {"workerGroups": _group(memory="16 gigs")},
        "ray-on-eks:workerGroups[0].memory",
        "8Gi",
    ),
    ("negative cpu", {"workerGroups": _group(cpu="-2")}, "ray-on-eks:workerGroups[0].cpu", "500m"),
    (
        "group name not a DNS label",
        {"workerGroups": _group(name="GPU_Workers")},
        "ray-on-eks:workerGroups[0].name",
        "DNS label",
    ),
    (
        "duplicate group names",
        {"workerGroups": _group() + _group()},
        "ray-on-eks:workerGroups",
        "more than once",
    ),
    ("no worker groups", {"workerGroups": []}, "ray-on-eks:workerGroups", "add at least one"),
    ("workerGroups not a list", {"workerGroups": {"name": "x"}}, "ray-on-eks:workerGroups", "a list"),
    (
        "misspelt field",
        {"workerGroups": _group(maxReplica=2)},
        "ray-on-eks:workerGroups[0].maxReplica",
        "unknown key",
    ),
    ("misspelt top-level key", {"workergroups": []}, "ray-on-eks:workergroups", "unknown key"),
    ("tokenAuth not a boolean", {"tokenAuth": "sometimes"}, "ray-on-eks:tokenAuth", "true or false"),
    (
        "networkPolicies not a boolean",
        {"networkPolicies": "strict"},
        "ray-on-eks:networkPolicies",
        "true or false",
    ),
    (
        "GCS FT without Redis",
        {"gcsFaultTolerance": {"enabled": True}},
        "ray-on-eks:gcsFaultTolerance",
        "redisAddress",
    ),
    (
        "static FSx without its ids",
        {"fsx": {"enabled": True, "mode": "static"}},
        "ray-on-eks:fsx",
        "fileSystemId, dnsName, mountName",
    ),
    (
        "invalid bucket name",
        {"s3": {"enabled": True, "bucketName": "My_Bucket"}},
        "ray-on-eks:s3.bucketName",
        "valid S3 bucket name",
    ),
    (
        "existing bucket without a name",
        {"s3": {"enabled": True, "createBucket": False}},
        "ray-on-eks:s3",
        "bucketName",
    ),
    (
        "bad retention",
        {"monitoring": {"prometheusRetention": "two weeks"}},
        "ray-on-eks:monitoring.prometheusRetention",
        "two weeks",
    ),
    (
        "prometheus storage class without a size",
        {"monitoring": {"storageClass": "gp3"}},
        "ray-on-eks:monitoring",
        "set prometheusStorageGib",
    ),
    (
        "alertmanager not a boolean",
        {"monitoring": {"alertmanager": "sometimes"}},
        "ray-on-eks:monitoring.alertmanager",
        "true or false",
    ),
    (
        "scrapeKubeProxy not a boolean",
        {"monitoring": {"scrapeKubeProxy": "maybe"}},
        "ray-on-eks:monitoring.scrapeKubeProxy",
        "true or false",
    ),
    (
        "monitoring namespace shared with Ray",
        {"monitoring": {"namespace": "ray"}},
        "monitoring.namespace",
        "pick another one",
    ),
    (
        "unknown job cluster mode",
        {"rayJobs": [{"name": "j", "workload": "quickstart", "cluster": "mine"}]},
        "ray-on-eks:rayJobs[0].cluster",
        "'shared' or 'ephemeral'",
    ),
    (
        "job with both a workload and own code",
        {
            "rayJobs": [
                {
                    "name": "j",
                    "workload": "quickstart",
                    "code": "examples/hello_ray",
                    "entrypoint": "python main.py",
                }
            ]
        },
        "ray-on-eks:rayJobs[0]",
        "set either workload",
    ),
    (
        "job own code without an entrypoint",
        {"rayJobs": [{"name": "j", "code": "examples/hello_ray"}]},
        "ray-on-eks:rayJobs[0]",
        "needs an entrypoint, e.g. entrypoint: python main.py",
    ),
    (
        "job own code outside the repo",
        {"rayJobs": [{"name": "j", "code": "../outside", "entrypoint": "python main.py"}]},
        "ray-on-eks:rayJobs[0].code",
        "relative to the repo root",
    ),
    (
        "job own code that does not exist",
        {"rayJobs": [{"name": "j", "code": "no/such/dir", "entrypoint": "python main.py"}]},
        "ray-on-eks:rayJobs[0].code",
        "'no/such/dir' is not a directory",
    ),
    (
        "entrypoint on a catalog workload",
        {"rayJobs": [{"name": "j", "workload": "quickstart", "entrypoint": "python x.py"}]},
        "ray-on-eks:rayJobs[0]",
        "entrypoint applies to code",
    ),
    (
        "service own code without an import path",
        {"rayServices": [{"name": "s", "code": "examples/hello_serve"}]},
        "ray-on-eks:rayServices[0]",
        "needs importPath as module:attribute",
    ),
    (
        "service with both a workload and own code",
        {
            "rayServices": [
                {
                    "name": "s",
                    "workload": "serve",
                    "code": "examples/hello_serve",
                    "importPath": "app:deployment",
                }
            ]
        },
        "ray-on-eks:rayServices[0]",
        "set either workload",
    ),
    (
        "import path on a catalog service",
        {"rayServices": [{"name": "s", "importPath": "app:deployment"}]},
        "ray-on-eks:rayServices[0]",
        "importPath applies to code",
    ),
    (
        "duplicate job names",
        {"rayJobs": [{"name": "j", "workload": "quickstart"}] * 2},
        "ray-on-eks:rayJobs",
        "more than once",
    ),
    (
        "retries on the shared cluster",
        {"rayJobs": [{"name": "j", "workload": "quickstart", "cluster": "shared", "backoffLimit": 1}]},
        "ray-on-eks:rayJobs[0].backoffLimit",
        "1 cannot be used with cluster: shared",
    ),
    (
        "job name KubeRay refuses",
        {"rayJobs": [{"name": "1-train", "workload": "quickstart"}]},
        "ray-on-eks:rayJobs[0].name",
        "DNS-1035 label of at most 47",
    ),
    (
        "service name too long for KubeRay",
        {"rayServices": [{"name": "s" * 48}]},
        "ray-on-eks:rayServices[0].name",
        "DNS-1035 label of at most 47",
    ),
    (
        "highThroughputIngress not a boolean",
        {"rayServices": [{"name": "s", "highThroughputIngress": "sometimes"}]},
        "ray-on-eks:rayServices[0].highThroughputIngress",
        'got "sometimes", expected true or false',
    ),
    (
        "cluster name starting with a digit",
        {"rayClusterName": "1ray"},
        "ray-on-eks:rayClusterName",
        "DNS-1035",
    ),
    ("unknown iamMode", {"iamMode": "keys"}, "ray-on-eks:iamMode", "'pod-identity' or 'irsa'"),
    ("malformed JSON object", {"head": "{cpu: 2"}, "ray-on-eks:head", "not valid"),
    # --- shared storage (FsxConfig / managePodIdentityAgent) ---
    (
        "FSx capacity off the PERSISTENT_2 steps",
        {"fsx": {"enabled": True, "deploymentType": "PERSISTENT_2", "storageCapacityGib": 3600}},
        "ray-on-eks:fsx",
        "storageCapacityGib 3600 is not valid for deploymentType PERSISTENT_2; allowed: 1200, 2400 or a multiple of 2400",
    ),
    (
        "FSx capacity off the SCRATCH_1 steps",
        {"fsx": {"enabled": True, "deploymentType": "SCRATCH_1", "storageCapacityGib": 4800}},
        "ray-on-eks:fsx",
        "storageCapacityGib 4800 is not valid for deploymentType SCRATCH_1; allowed: 1200, 2400 or a multiple of 3600",
    ),
    (
        "FSx PERSISTENT_1 throughput tier",
        {"fsx": {"enabled": True, "deploymentType": "PERSISTENT_1", "perUnitStorageThroughput": 125}},
        "ray-on-eks:fsx",
        "perUnitStorageThroughput 125 is not valid for deploymentType PERSISTENT_1; allowed: 50, 100, 200",
    ),
    (
        "FSx PERSISTENT_2 throughput tier",
        {"fsx": {"enabled": True, "perUnitStorageThroughput": 300}},
        "ray-on-eks:fsx",
        "perUnitStorageThroughput 300 is not valid for deploymentType PERSISTENT_2; allowed: 125, 250, 500, 1000",
    ),
    (
        "FSx scratch with a throughput",
        {"fsx": {"enabled": True, "deploymentType": "SCRATCH_2", "perUnitStorageThroughput": 200}},
        "ray-on-eks:fsx",
        "perUnitStorageThroughput 200 cannot be set for deploymentType SCRATCH_2",
    ),
    (
        "FSx Lustre 2.10 on PERSISTENT_2",
        {"fsx": {"enabled": True, "lustreVersion": "2.10"}},
        "ray-on-eks:fsx",
        "lustreVersion 2.10 is not available for deploymentType PERSISTENT_2; allowed: 2.12, 2.15",
    ),
    (
        "FSx unknown deployment type",
        {"fsx": {"enabled": True, "deploymentType": "PERSISTENT_3"}},
        "ray-on-eks:fsx.deploymentType",
        "'SCRATCH_1', 'SCRATCH_2', 'PERSISTENT_1' or 'PERSISTENT_2'",
    ),
    (
        "FSx unknown Lustre version",
        {"fsx": {"enabled": True, "lustreVersion": "2.16"}},
        "ray-on-eks:fsx.lustreVersion",
        "'2.10', '2.12' or '2.15'",
    ),
    (
        "FSx malformed file system id",
        {"fsx": {**STATIC_FSX, "fileSystemId": "my-fs"}},
        "ray-on-eks:fsx.fileSystemId",
        '"my-fs": is not an FSx file system id (expected fs-0123456789abcdef0',
    ),
    (
        "FSx malformed subnet",
        {"fsx": {"enabled": True, "subnetId": "private-a"}},
        "ray-on-eks:fsx.subnetId",
        '"private-a": is not a subnet id',
    ),
    (
        "FSx malformed security group",
        {"fsx": {"enabled": True, "securityGroupIds": ["default"]}},
        "ray-on-eks:fsx.securityGroupIds[0]",
        '"default": is not a security group id',
    ),
    (
        "FSx capacity not a number",
        {"fsx": {"enabled": True, "storageCapacityGib": "1.2TiB"}},
        "ray-on-eks:fsx.storageCapacityGib",
        "a whole number",
    ),
    (
        "HyperPod cluster name instead of its ARN",
        {
            "clusterType": "hyperpod",
            "hyperpod": {"clusterArn": "ml-cluster"},
            "workerGroups": _group(instanceType="ml.m5.2xlarge"),
        },
        "ray-on-eks:hyperpod.clusterArn",
        "aws sagemaker describe-cluster",
    ),
    (
        "HyperPod cluster in another region",
        {
            "clusterType": "hyperpod",
            "hyperpod": {"clusterArn": WEST_ARN.replace("us-west-2", "eu-west-1")},
            "workerGroups": _group(instanceType="ml.m5.2xlarge"),
        },
        "ray-on-eks:hyperpod.clusterArn",
        "eu-west-1",
    ),
    (
        "HyperPod without aws-native:region",
        {
            "clusterType": "hyperpod",
            "hyperpod": {"clusterArn": WEST_ARN},
            "workerGroups": _group(instanceType="ml.m5.2xlarge"),
            "head": {"instanceType": "ml.m5.2xlarge"},
        },
        "aws-native:region",
        "pulumi config set aws-native:region us-west-2",
    ),
    (
        "image tagged latest",
        {"workerGroups": _group(image="rayproject/ray:latest")},
        "ray-on-eks:workerGroups[0].image",
        "(not latest)",
    ),
    ("untagged head image", {"head": {"image": "rayproject/ray"}}, "ray-on-eks:head.image", "pinned"),
    (
        "Trainium group without neuronDevices",
        {"workerGroups": _group(instanceType="trn1.32xlarge", image="repo/ray-neuron:2.60.0")},
        "ray-on-eks:workerGroups[0]",
        "neuronDevices",
    ),
    (
        "Neuron devices on a GPU type",
        {"workerGroups": _group(instanceType="g5.2xlarge", neuronDevices=1, image="repo/ray-neuron:2.60.0")},
        "ray-on-eks:workerGroups[0]",
        "has no Neuron devices",
    ),
    (
        "Neuron group without an image",
        {"workerGroups": _group(instanceType="trn1.32xlarge", neuronDevices=16)},
        "ray-on-eks:workerGroups[0]",
        "Neuron SDK",
    ),
    (
        "shmSize as large as memory",
        {"workerGroups": _group(gpus=1, memory="16Gi", shmSize="16Gi")},
        "ray-on-eks:workerGroups[0]",
        "shmSize",
    ),
    (
        "bad efa hugepages",
        {"workerGroups": _group(efaHugepages="lots")},
        "ray-on-eks:workerGroups[0].efaHugepages",
        "memory quantity",
    ),
    (
        "unknown FSx driver source",
        {"fsx": {"enabled": True, "driver": "helm"}},
        "ray-on-eks:fsx.driver",
        "'install' or 'existing'",
    ),
    (
        "FSx driver version of another major",
        {"fsx": {"enabled": True, "driverVersion": "v2.0.0-eksbuild.1"}},
        "ray-on-eks:fsx.driverVersion",
        "not a v1.x build",
    ),
    (
        "S3 driver version that is not an EKS build",
        {"s3": {"enabled": True, "driverVersion": "2.7.0"}},
        "ray-on-eks:s3.driverVersion",
        "eksbuild",
    ),
    (
        "driver version pinned for an existing driver",
        {"s3": {"enabled": True, "driver": "existing", "driverVersion": "v2.7.0-eksbuild.1"}},
        "ray-on-eks:s3.driverVersion",
        "remove driverVersion or set driver: install",
    ),
    (
        "agent version without the agent",
        {"podIdentityAgentVersion": "v1.3.10-eksbuild.2"},
        "ray-on-eks:podIdentityAgentVersion",
        "managePodIdentityAgent: true",
    ),
    (
        "Pod Identity agent with IRSA",
        {"iamMode": "irsa", "managePodIdentityAgent": True},
        "ray-on-eks:managePodIdentityAgent",
        "iamMode is irsa",
    ),
    (
        "Pod Identity agent with createCluster",
        {"createCluster": True, "managePodIdentityAgent": True},
        "ray-on-eks:managePodIdentityAgent",
        "runs the Pod Identity agent itself",
    ),
    (
        "eks worker group without instance type",
        {"workerGroups": [{"name": "cpu-workers"}]},
        "ray-on-eks:workerGroups[0].instanceType",
        "required for clusterType eks",
    ),
    (
        "eks worker group with a non-EC2 instance type",
        {"workerGroups": _group(instanceType="e2-standard-4")},
        "ray-on-eks:workerGroups[0].instanceType",
        "not an EC2 instance type",
    ),
    (
        "instance type that is no label value",
        {"workerGroups": _group(instanceType="g5 2xlarge")},
        "ray-on-eks:workerGroups[0].instanceType",
        "node label value",
    ),
    (
        "kubeconfig settings on eks",
        {"kubernetes": {"context": "kind-ray"}},
        "ray-on-eks:kubernetes",
        "only for clusterType kubernetes",
    ),
    (
        "storage class on eks",
        {"storage": {"storageClass": "gp3"}},
        "ray-on-eks:storage.storageClass",
        "fsx or s3",
    ),
    # --- workload images ---
    (
        "ray image by tag, not digest",
        {"rayImages": {"cpu": "123456789012.dkr.ecr.us-west-2.amazonaws.com/ray:cpu-1"}},
        "ray-on-eks:rayImages.cpu",
        "is not pinned by digest; use <registry>/<repository>:<tag>@sha256:<64 hex digits>",
    ),
    (
        "unknown image flavour",
        {"rayImages": {"tpu": "x@sha256:" + "a" * 64}},
        "ray-on-eks:rayImages.tpu",
        "unknown key",
    ),
    (
        "invalid ECR repository name",
        {"ecrRepository": {"enabled": True, "name": "Ray Images"}},
        "ray-on-eks:ecrRepository.name",
        "not a valid ECR repository name",
    ),
    (
        "ECR keepImages zero",
        {"ecrRepository": {"enabled": True, "keepImages": 0}},
        "ray-on-eks:ecrRepository.keepImages",
        "greater than 0",
    ),
    (
        "build without a repository",
        {"buildImages": True, "ecrRepository": {"enabled": False}},
        "ray-on-eks:buildImages",
        "set ecrRepository.enabled: true",
    ),
    (
        "build and configured digests",
        {"buildImages": True, "rayImages": {"cpu": f"x:{RAY_VERSION}-py311-cpu-0@sha256:" + "a" * 64}},
        "ray-on-eks:rayImages",
        "remove rayImages or set buildImages: false",
    ),
    (
        "runtime pip off on the stock image",
        {"runtimePip": False},
        "ray-on-eks:runtimePip",
        "rayImages.cpu/gpu is not set",
    ),
    (
        "unknown pre-pull setting",
        {"prePullImages": "some"},
        "ray-on-eks:prePullImages",
        "'none', 'gpu' or 'all'",
    ),
]

# Pulumi.kind.yaml (clusterType kubernetes) with one bad or AWS-only key each: same row shape.
BAD_KUBERNETES_CONFIGS: list[tuple[str, dict[str, Any], str, str]] = [
    ("aws:region on kubernetes", {"aws:region": "us-west-2"}, "aws:region", "AWS-only"),
    ("clusterName on kubernetes", {"clusterName": "ml-dev"}, "ray-on-eks:clusterName", "kubernetes.context"),
    ("createCluster on kubernetes", {"createCluster": True}, "ray-on-eks:createCluster", "AWS-only"),
    ("newCluster on kubernetes", {"newCluster": {"cpuLimit": 32}}, "ray-on-eks:newCluster", "AWS-only"),
    (
        "hyperpod on kubernetes",
        {"hyperpod": {"clusterArn": "arn:aws:sagemaker:us-west-2:123456789012:cluster/abc123"}},
        "ray-on-eks:hyperpod",
        "AWS-only",
    ),
    ("fsx on kubernetes", {"fsx": {"enabled": True}}, "ray-on-eks:fsx.enabled", "storage.storageClass"),
    ("s3 on kubernetes", {"s3": {"enabled": True}}, "ray-on-eks:s3.enabled", "storage.storageClass"),
    ("irsa on kubernetes", {"iamMode": "irsa"}, "ray-on-eks:iamMode", "AWS-only"),
    (
        "Pod Identity agent on kubernetes",
        {"managePodIdentityAgent": True},
        "ray-on-eks:managePodIdentityAgent",
        "AWS-only",
    ),
    (
        "ECR repository on kubernetes",
        {"ecrRepository": {"enabled": True}},
        "ray-on-eks:ecrRepository.enabled",
        "AWS-only",
    ),
    (
        "EFA on kubernetes",
        {"workerGroups": [{"name": "cpu-workers", "efaDevices": 1}]},
        "ray-on-eks:workerGroups[0].efaDevices",
        "EFA exists only on AWS",
    ),
    (
        "kubeconfig contents instead of a path",
        {"kubernetes": {"kubeconfig": "apiVersion: v1\nkind: Config\n"}},
        "ray-on-eks:kubernetes.kubeconfig",
        "not its contents",
    ),
    (
        "context with a space",
        {"kubernetes": {"context": "kind ray"}},
        "ray-on-eks:kubernetes.context",
        "get-contexts",
    ),
    (
        "malformed storage class",
        {"storage": {"storageClass": "Standard_RWX"}},
        "ray-on-eks:storage.storageClass",
        "kubectl get storageclass",
    ),
    (
        "unknown access mode",
        {"storage": {"storageClass": "nfs", "accessMode": "ReadOnlyMany"}},
        "ray-on-eks:storage.accessMode",
        "'ReadWriteMany' or 'ReadWriteOnce'",
    ),
    (
        "zero-sized shared claim",
        {"storage": {"storageClass": "standard", "sizeGib": 0}},
        "ray-on-eks:storage.sizeGib",
        "greater than 0",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_fails_before_any_resource(overrides: dict[str, Any], key: str, fragment: str) -> None:
    run = run_program("dev", overrides)
    assert isinstance(run.error, ConfigError), f"expected ConfigError, got {run.error!r}"
    message = str(run.error)
    assert key in message, message
    assert fragment in message, message
    assert "Traceback" not in message
    assert run.resources == [], "nothing may be registered when the configuration is invalid"


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [c[1:] for c in BAD_KUBERNETES_CONFIGS],
    ids=[c[0] for c in BAD_KUBERNETES_CONFIGS],
)
def test_bad_kubernetes_config_fails_before_any_resource(
    overrides: dict[str, Any], key: str, fragment: str
) -> None:
    run = run_program("kind", overrides)
    assert isinstance(run.error, ConfigError), f"expected ConfigError, got {run.error!r}"
    message = str(run.error)
    assert key in message, message
    assert fragment in message, message
    # One line per problem, each naming its key.
    assert len([line for line in message.splitlines() if line.startswith("  - ")]) == 1, message
    assert run.resources == [] and run.invokes == []


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_stack_config({**MINIMAL, "clusterType": "gke", "workerGroups": _group(gpus=-1, cpu="x")})
    message = str(info.value)
    for key in (
        "ray-on-eks:clusterType",
        "ray-on-eks:workerGroups[0].gpus",
        "ray-on-eks:workerGroups[0].cpu",
    ):
        assert key in message


@pytest.mark.parametrize("path", stack_files(), ids=lambda p: p.name)
def test_every_stack_file_parses(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())["config"]
    raw = {key.split(":", 1)[1]: value for key, value in doc.items() if key.startswith("ray-on-eks:")}
    parse_stack_config({**raw, **({"region": doc["aws:region"]} if "aws:region" in doc else {})})

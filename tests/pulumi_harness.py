"""Run the real ``__main__.py`` under Pulumi mocks and record everything it registers.

No Pulumi CLI, no cloud: ``pulumi.runtime.set_mocks`` replaces the engine. A recording monitor keeps,
for every resource, its type, name, URN, parent, inputs (plain and as sent, with secret markers),
dependencies and options, so tests can assert on what ``pulumi up`` would create.

Stack files are read the way the engine reads them: ``Pulumi.<stack>.yaml`` ``config:`` values,
plus the project defaults declared in ``Pulumi.yaml``, with structured values passed as JSON text.

CRD schemas: the three KubeRay CRDs are ~1 MB of OpenAPI schema, and serializing them through the
Pulumi SDK costs ~1.6 s of a ~1.9 s mocked run. Unless a run asks for ``crd_schemas=True``, the
program gets the vendored CRD documents with each version's ``openAPIV3Schema`` body replaced by a
marked stand-in (names, versions, scope, subresources and everything else unchanged). The tests about
the CRDs' content, and the checks on it, make a full run (``run_shared("dev", crd_schemas=True)``: every
stack applies the same files), as the benchmarks do. Nothing else in the program reads a CRD schema.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import hashlib
import json
import os
import pickle
import runpy
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from components import kuberay_operator
from components.versions import KUBERAY_VERSION

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "__main__.py"
PROJECT = "ray-on-eks"
ACCOUNT = "123456789012"
SECRET_SIG = rpc._special_sig_key  # marker key of a secret value on the wire
SECRET_VALUE = rpc._special_secret_sig
RESOURCE_VALUE = rpc._special_resource_sig
UNKNOWN = rpc.UNKNOWN
# Newest EKS add-on builds the mock reports (shaped like EKS's; not used as pins anywhere).
ADDON_VERSIONS = {
    "aws-fsx-csi-driver": "v1.9.0-eksbuild.1",
    "aws-mountpoint-s3-csi-driver": "v2.7.0-eksbuild.1",
    "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
}
SUPPORTED_KUBERNETES = ("1.31", "1.32", "1.33", "1.34")
# When set, every mocked program run and every memoized-run copy appends one JSON line to this file
# (bench/test_suite.py reads it to say how much of the unit suite's time is mocked program runs).
HARNESS_LOG_ENV = "RAY_ON_EKS_HARNESS_LOG"


# What a mocked run without crd_schemas gets as each CRD version's openAPIV3Schema.
CRD_SCHEMA_STAND_IN = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "description": "tests/pulumi_harness.py: schema body left out of this mocked run (crd_schemas=False)",
}


_LOAD_CRDS = kuberay_operator.load_crds  # the program's own loader (the harness swaps it during runs)


@functools.cache
def _crds_without_schemas(version: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = json.loads(json.dumps(_LOAD_CRDS(version)))
    for doc in docs:
        for crd_version in doc["spec"]["versions"]:
            crd_version["schema"]["openAPIV3Schema"] = dict(CRD_SCHEMA_STAND_IN)
    return docs


@contextlib.contextmanager
def _crd_documents(full: bool) -> Iterator[None]:
    """While a run lasts, hand the program the CRD documents in full or with stand-in schemas.

    A loader a test patched in itself is left alone.
    """
    if full or kuberay_operator.load_crds is not _LOAD_CRDS:
        yield
        return

    def without_schemas(version: str = KUBERAY_VERSION) -> list[dict[str, Any]]:
        return _crds_without_schemas(version)  # cached, as load_crds's documents are

    kuberay_operator.load_crds = without_schemas  # type: ignore[assignment]
    try:
        yield
    finally:
        kuberay_operator.load_crds = _LOAD_CRDS


def log_event(event: str, stack: str, seconds: float, **more: Any) -> None:
    """One JSON line in the file ``RAY_ON_EKS_HARNESS_LOG`` names (nothing when it is unset), with the
    running test; ``bench.test_suite`` reads them (tests/conftest.py logs each process's ``gc`` event)."""
    path = os.environ.get(HARNESS_LOG_ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    entry = {"event": event, "stack": stack, "seconds": seconds, "test": test, **more}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def _plain(node: Any) -> Any:
    """Wire value -> plain value: secrets unwrapped, resource references replaced by their URN."""
    if isinstance(node, dict):
        sig = node.get(SECRET_SIG)
        if sig == SECRET_VALUE:
            return _plain(node.get("value"))
        if sig == RESOURCE_VALUE:
            return node.get("urn")
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    if node == UNKNOWN:
        return None
    if isinstance(node, float) and node.is_integer():
        return int(node)  # protobuf Struct numbers are doubles; Kubernetes schemas want integers
    return node


def _wire_safe(node: Any) -> Any:
    """Mock state -> JSON-compatible structure for the response."""
    if isinstance(node, dict):
        return {str(key): _wire_safe(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_wire_safe(value) for value in node]
    if isinstance(node, str | int | float | bool) or node is None:
        return node
    return str(node)


def _with_secret_outputs(state: dict[str, Any], secret_outputs: Any) -> dict[str, Any]:
    """Mark ``additionalSecretOutputs`` (e.g. RandomPassword ``result``) secret, as the engine does."""
    for key in secret_outputs:
        if key in state and not (isinstance(state[key], dict) and state[key].get(SECRET_SIG) == SECRET_VALUE):
            state[key] = {SECRET_SIG: SECRET_VALUE, "value": state[key]}
    return state


def stack_files() -> list[Path]:
    """Every ``Pulumi.<stack>.yaml`` in the repo."""
    return sorted(p for p in REPO.glob("Pulumi.*.yaml"))


def stack_name(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def _engine_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def load_stack_config(stack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The config map the engine would hand the program for ``stack`` (with optional overrides).

    An override value of ``None`` removes the key.
    """
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    values: dict[str, Any] = {}
    for key, decl in (project.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(decl, dict) and "default" in decl:
            values[full] = decl["default"]
        elif not isinstance(decl, dict):
            values[full] = decl
    stack_doc = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text()) or {}
    values.update(stack_doc.get("config") or {})
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            values.pop(full, None)
        else:
            values[full] = value
    return {key: _engine_value(value) for key, value in values.items()}


# --------------------------------------------------------------------------------------------------
# Mocks: realistic computed outputs for what the program creates and looks up
# --------------------------------------------------------------------------------------------------


# The mocked cluster's subnets, in the cluster's order: the first maps public IPs on launch (a public
# subnet, as `subnet_ids[0]` often is on a real EKS cluster), the second does not.
CLUSTER_SUBNETS: dict[str, dict[str, Any]] = {
    "subnet-0aa11bb22cc33dd44": {"mapPublicIpOnLaunch": True, "az": "a", "cidrBlock": "10.0.0.0/24"},
    "subnet-0ee55ff66aa77bb88": {"mapPublicIpOnLaunch": False, "az": "b", "cidrBlock": "10.0.1.0/24"},
}


def _filter_values(inputs: dict[str, Any], name: str) -> list[str] | None:
    for item in inputs.get("filters") or []:
        if item.get("name") == name:
            return [str(v) for v in item.get("values") or []]
    return None


def _eks_cluster(name: str, region: str) -> dict[str, Any]:
    return {
        "id": name,
        "name": name,
        "arn": f"arn:aws:eks:{region}:{ACCOUNT}:cluster/{name}",
        "endpoint": f"https://0123456789ABCDEF0123456789ABCDEF.gr7.{region}.eks.amazonaws.com",
        "certificateAuthorities": [{"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM="}],
        "identities": [
            {"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/0123456789ABCDEF"}]}
        ],
        "version": "1.33",
        "platformVersion": "eks.5",
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{name}-cluster-role",
        "status": "ACTIVE",
        "vpcConfig": {
            "vpcId": "vpc-0a1b2c3d4e5f60718",
            "subnetIds": list(CLUSTER_SUBNETS),
            "securityGroupIds": ["sg-0123456789abcdef0"],
            "clusterSecurityGroupId": "sg-0fedcba9876543210",
            "endpointPrivateAccess": True,
            "endpointPublicAccess": True,
            "publicAccessCidrs": ["0.0.0.0/0"],
        },
        "accessConfigs": [{"authenticationMode": "API_AND_CONFIG_MAP"}],
        "kubernetesNetworkConfigs": [{"serviceIpv4Cidr": "172.20.0.0/16", "ipFamily": "ipv4"}],
        "tags": {},
    }


# SageMaker HyperPod clusters the mocked Cloud Control knows, by ARN, as pulumi-aws-native's
# aws-native:sagemaker:getCluster returns them (the AWS::SageMaker::Cluster model, camelCase keys).
# Tests add or replace entries with monkeypatch.setitem.
HYPERPOD_ARN = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:cluster/a1b2c3d4e5f6"
HYPERPOD_SUBNET = "subnet-0a1b2c3d4e5f60718"
HYPERPOD_SECURITY_GROUP = "sg-0a1b2c3d4e5f60718"
HYPERPOD_EKS_CLUSTER = "hyperpod-eks-orchestrator"


def hyperpod_description(
    *, name: str = "ml-cluster", groups: list[tuple[str, str, int]] | None = None, eks: bool = True
) -> dict[str, Any]:
    """A described EKS-orchestrated HyperPod cluster; ``groups`` are (name, instance type, current count)."""
    groups = (
        groups
        if groups is not None
        else [("controller", "ml.m5.2xlarge", 2), ("workers", "ml.g5.12xlarge", 4)]
    )
    region = HYPERPOD_ARN.split(":")[3]
    description: dict[str, Any] = {
        "clusterArn": HYPERPOD_ARN,
        "clusterName": name,
        "clusterStatus": "InService",
        "creationTime": "2026-11-02T09:14:05Z",
        "nodeRecovery": "Automatic",
        "vpcConfig": {"subnets": [HYPERPOD_SUBNET], "securityGroupIds": [HYPERPOD_SECURITY_GROUP]},
        "instanceGroups": [
            {
                "instanceGroupName": group,
                "instanceType": instance_type,
                "instanceCount": count,
                "currentCount": count,
                "executionRole": f"arn:aws:iam::{ACCOUNT}:role/hyperpod-execution",
                "lifeCycleConfig": {"sourceS3Uri": "s3://hyperpod-lifecycle/", "onCreate": "on_create.sh"},
                "threadsPerCore": 1,
            }
            for group, instance_type, count in groups
        ],
    }
    if eks:
        description["orchestrator"] = {
            "eks": {"clusterArn": f"arn:aws:eks:{region}:{ACCOUNT}:cluster/{HYPERPOD_EKS_CLUSTER}"}
        }
    return description


HYPERPOD_CLUSTERS: dict[str, dict[str, Any]] = {HYPERPOD_ARN: hyperpod_description()}

# aws ec2 describe-instance-types facts, shaped as aws:ec2/getInstanceType returns them.
INSTANCE_TYPES: dict[str, dict[str, Any]] = {
    "m5.2xlarge": {"defaultVcpus": 8, "memorySize": 32768, "efaSupported": False},
    "m6i.2xlarge": {"defaultVcpus": 8, "memorySize": 32768, "efaSupported": False},
    "g5.2xlarge": {
        "defaultVcpus": 8,
        "memorySize": 32768,
        "efaSupported": False,
        "gpuses": [{"count": 1, "manufacturer": "NVIDIA", "memorySize": 24576, "name": "A10G"}],
    },
    "g5.12xlarge": {
        "defaultVcpus": 48,
        "memorySize": 196608,
        "efaSupported": True,
        "efaMaximumInterfaces": 1,
        "gpuses": [{"count": 4, "manufacturer": "NVIDIA", "memorySize": 24576, "name": "A10G"}],
    },
    "p5.48xlarge": {
        "defaultVcpus": 192,
        "memorySize": 2097152,
        "efaSupported": True,
        "efaMaximumInterfaces": 32,
        "gpuses": [{"count": 8, "manufacturer": "NVIDIA", "memorySize": 81920, "name": "H100"}],
    },
    "trn1.32xlarge": {
        "defaultVcpus": 128,
        "memorySize": 524288,
        "efaSupported": True,
        "efaMaximumInterfaces": 8,
        "neuronDevices": [
            {"count": 16, "coreCount": 2, "coreVersion": 2, "memorySize": 32768, "name": "Trainium"}
        ],
    },
}


class RealisticMocks(Mocks):
    """Computed outputs shaped like the real providers' (ARNs, ids, names, DNS names).

    ``subnets`` (facts per subnet id) and ``existing_buckets`` are the account the invokes describe;
    the lifecycle test passes what an earlier ``destroy`` kept. ``ecr``: ECR repositories that already
    exist (name -> {tag: digest}), e.g. kept by a previous ``destroy`` or filled by the images workflow.
    """

    def __init__(
        self,
        region: str = "us-west-2",
        subnets: Mapping[str, Mapping[str, Any]] | None = None,
        existing_buckets: tuple[str, ...] = (),
        ecr: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.region = region
        self.subnets = dict(CLUSTER_SUBNETS if subnets is None else subnets)
        self.existing_buckets = existing_buckets
        self.ecr = {name: dict(tags) for name, tags in (ecr or {}).items()}
        # Every invoke token the program called, in order (e.g. "aws:eks/getCluster:getCluster").
        self.invokes: list[str] = []

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        state: dict[str, Any] = dict(inputs)
        rid = f"{name}-id"
        if typ.startswith("kubernetes:") and typ != "pulumi:providers:kubernetes":
            meta = dict(state.get("metadata") or {})
            meta.setdefault("name", name)
            meta.setdefault("uid", f"uid-{name}")
            state["metadata"] = meta
            ns = meta.get("namespace")
            rid = f"{ns}/{meta['name']}" if ns else meta["name"]
            if typ == "kubernetes:helm.sh/v3:Release":
                release = inputs.get("name") or name
                state["name"] = release
                state["status"] = {
                    "name": release,
                    "namespace": inputs.get("namespace", "default"),
                    "status": "deployed",
                    "version": inputs.get("version", ""),
                    "chart": inputs.get("chart", ""),
                    "revision": 1,
                }
                rid = f"{inputs.get('namespace', 'default')}/{release}"
        elif typ.startswith("aws:"):
            resource_name = (
                inputs.get("name") or inputs.get("bucket") or f"{name}-{abs(hash(name)) % 10**7:07d}"
            )
            service = typ.split(":")[1].split("/")[0]
            state.setdefault("arn", f"arn:aws:{service}:{self.region}:{ACCOUNT}:{name}")
            if typ in ("aws:iam/role:Role", "aws:iam/policy:Policy"):
                kind = "role" if typ.endswith("Role") else "policy"
                state["name"] = resource_name
                state["arn"] = f"arn:aws:iam::{ACCOUNT}:{kind}/{resource_name}"
                rid = resource_name
            elif typ.startswith("aws:s3/bucket"):
                bucket = inputs.get("bucket") or f"{name}-{abs(hash(name)) % 10**7:07d}"
                state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}", region=self.region)
                rid = bucket
            elif typ == "aws:fsx/lustreFileSystem:LustreFileSystem":
                rid = "fs-0123456789abcdef0"
                state.update(dnsName=f"{rid}.fsx.{self.region}.amazonaws.com", mountName="abcdefgh")
            elif typ == "aws:eks/podIdentityAssociation:PodIdentityAssociation":
                state.update(associationId=f"a-{name}", associationArn=state["arn"])
            elif typ == "aws:ec2/securityGroup:SecurityGroup":
                rid = "sg-0abc1234def567890"
            elif typ == "aws:ecr/repository:Repository":
                rid = inputs["name"]
                state.update(
                    registryId=ACCOUNT,
                    repositoryUrl=f"{ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com/{rid}",
                    arn=f"arn:aws:ecr:{self.region}:{ACCOUNT}:repository/{rid}",
                )
        elif typ.startswith("random:"):
            length = int(inputs.get("length", 32))
            state["result"] = ("Mock-Pw-" + "x" * length)[:length]
            rid = f"{name}-random"
        elif typ == "docker-build:index:Image":
            # The pushed manifest's digest; unknown during preview (build_on_preview: false).
            digest = "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
            state.update(digest=digest, ref=f"{inputs['tags'][0]}@{digest}", contextHash="mock")
            rid = f"{name}-image"
        elif typ == "eks:index:Cluster":
            state["kubeconfigJson"] = json.dumps({"kind": "Config"})
        elif typ == "awsx:ec2:Vpc":
            zones = int(inputs.get("numberOfAvailabilityZones", 3))
            # Only the ids: awsx's other outputs (natGateways, subnets...) are resource lists whose
            # names clash with the inputs, which the mock must not echo back.
            state = dict(
                vpcId="vpc-0c0ffee0c0ffee000",
                privateSubnetIds=[f"subnet-0aaaa00000000000{i}" for i in range(zones)],
                publicSubnetIds=[f"subnet-0bbbb00000000000{i}" for i in range(zones)],
            )
        return rid, state

    def call(self, args: MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        self.invokes.append(args.token)
        inputs = dict(args.args)
        # Lookups of things that do not exist fail the invoke, as the providers do.
        if args.token == "aws-native:sagemaker:getCluster":
            found = HYPERPOD_CLUSTERS.get(inputs.get("clusterArn", ""))
            return (dict(found), []) if found else ({}, [("clusterArn", "resource not found")])
        if args.token == "aws:ec2/getInstanceType:getInstanceType":
            facts = INSTANCE_TYPES.get(inputs.get("instanceType", ""))
            if facts is None:
                return {}, [("instanceType", f"InvalidInstanceType: {inputs.get('instanceType')}")]
            return {"instanceType": inputs["instanceType"], "id": inputs["instanceType"], **facts}, []
        return self._invoke(args.token, inputs), []

    def _invoke(self, token: str, inputs: dict[str, Any]) -> dict[Any, Any]:
        if token == "aws:eks/getCluster:getCluster":
            return _eks_cluster(inputs["name"], self.region)
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                "userId": "AIDAEXAMPLE",
                "id": ACCOUNT,
            }
        if token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "id": "aws",
                "reverseDnsPrefix": "com.amazonaws",
            }
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region, "endpoint": ""}
        if token == "aws:eks/getAddonVersion:getAddonVersion":
            # What `aws eks describe-addon-versions` answers, per add-on, for a supported Kubernetes
            # version; anything else is an error, as on EKS.
            name, kubernetes = inputs.get("addonName"), inputs.get("kubernetesVersion")
            if name not in ADDON_VERSIONS or kubernetes not in SUPPORTED_KUBERNETES:
                raise ValueError(f"no {name} add-on version for Kubernetes {kubernetes!r}")
            return {"version": ADDON_VERSIONS[name], "addonName": name, "id": name}
        if token == "aws:ec2/getSubnet:getSubnet":
            facts = self.subnets.get(str(inputs.get("id")), {"mapPublicIpOnLaunch": False, "az": "a"})
            return {
                "id": inputs.get("id"),
                "vpcId": "vpc-0a1b2c3d4e5f60718",
                "availabilityZone": f"{self.region}{facts['az']}",
                "cidrBlock": facts.get("cidrBlock", "10.0.1.0/24"),
                "mapPublicIpOnLaunch": facts["mapPublicIpOnLaunch"],
            }
        if token == "aws:ec2/getSubnets:getSubnets":
            # DescribeSubnets filters: subnet-id and map-public-ip-on-launch ("true"/"false").
            ids = _filter_values(inputs, "subnet-id")
            public = _filter_values(inputs, "map-public-ip-on-launch")
            found = [
                subnet
                for subnet, facts in self.subnets.items()
                if (ids is None or subnet in ids)
                and (public is None or str(bool(facts["mapPublicIpOnLaunch"])).lower() in public)
            ]
            return {"ids": found, "id": self.region}
        if token == "aws:s3/getBuckets:getBuckets":
            prefix = str(inputs.get("prefix") or "")
            names = [b for b in self.existing_buckets if b.startswith(prefix)]
            return {
                "buckets": names,
                "bucketArns": [f"arn:aws:s3:::{b}" for b in names],
                "id": self.region,
            }
        if token == "aws:ecr/getRepositories:getRepositories":
            return {"names": sorted(self.ecr), "id": self.region, "region": self.region}
        if token == "aws:ecr/getImages:getImages":
            name = inputs["repositoryName"]
            if name not in self.ecr:
                raise ValueError(f"RepositoryNotFoundException: {name}")  # as ECR answers
            images = [{"imageTag": tag, "imageDigest": digest} for tag, digest in self.ecr[name].items()]
            return {"imageIds": images, "repositoryName": name, "id": name}
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            registry = inputs.get("registryId") or ACCOUNT
            return {
                "authorizationToken": "QVdTOm1vY2s=",
                "userName": "AWS",
                "password": "mock-ecr-password",
                "proxyEndpoint": f"https://{registry}.dkr.ecr.{self.region}.amazonaws.com",
                "expiresAt": "2030-01-01T00:00:00Z",
                "id": self.region,
            }
        raise NotImplementedError(
            f"tests/pulumi_harness.py has no mock for invoke {token!r}; add a realistic one to RealisticMocks.call"
        )


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------


@dataclass
class Registered:
    """One resource as ``pulumi up`` would register it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    wire_inputs: dict[str, Any]  # as sent to the engine: secrets still wrapped in their marker
    dependencies: list[str]
    provider: str
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    aliases: list[Any]
    additional_secret_outputs: list[str]
    import_id: str = ""  # the `import` resource option ("" when the resource is created)
    # The resource's state after the (mocked) create: inputs plus what the provider computed, e.g. the
    # metadata.name it generated for an object registered without one.
    state: dict[str, Any] = field(default_factory=dict)

    def has_secret_at(self, *path: str) -> bool:
        node: Any = self.wire_inputs
        for part in path:
            if isinstance(node, dict) and node.get(SECRET_SIG) == SECRET_VALUE:
                return True
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return isinstance(node, dict) and node.get(SECRET_SIG) == SECRET_VALUE


class RecordingMonitor(MockMonitor):
    """A mock monitor that also records each registration request."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        # Re-implemented rather than delegated: the stock mock deserializes resource references by
        # re-creating the resources on another event loop, which fails for multi-language
        # components (pulumi-eks). Here a reference is recorded as the referenced URN.
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        wire = json_format.MessageToDict(request.object)
        inputs = _plain(wire)
        rid, state = self.mocks.new_resource(
            MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=inputs,
                provider=request.provider,
                resource_id=request.importId,
                custom=request.custom or False,
            )
        )
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, rid or "", state)
        self.registered.append(
            Registered(
                type=request.type,
                name=request.name,
                urn=urn,
                parent=request.parent,
                custom=bool(request.custom),
                inputs=inputs,
                wire_inputs=wire,
                dependencies=list(request.dependencies),
                provider=request.provider,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                aliases=[json_format.MessageToDict(a) for a in request.aliases] + list(request.aliasURNs),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                import_id=request.importId,
                state=_plain(_wire_safe(state)),
            )
        )
        obj = struct_pb2.Struct()
        json_format.ParseDict(_with_secret_outputs(_wire_safe(state), request.additionalSecretOutputs), obj)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=rid or "", object=obj)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.component_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


@dataclass
class ProgramRun:
    """What one run of ``__main__.py`` produced."""

    stack: str
    config: dict[str, str]
    resources: list[Registered] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)
    error: BaseException | None = None
    # register_outputs of each component, by URN (plain values).
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Invoke tokens (data-source calls such as aws.eks.get_cluster), in call order.
    invokes: list[str] = field(default_factory=list)
    # Whether the CRDs were registered with their real schemas (see the module docstring).
    crd_schemas: bool = False

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise KeyError(urn)

    def custom_resources(self, kind: str) -> list[Registered]:
        """Kubernetes custom resources (``kubernetes:ray.io/v1:RayCluster`` etc.) of ``kind``."""
        return [r for r in self.resources if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")]

    def ancestors(self, resource: Registered) -> Iterator[Registered]:
        urns = {r.urn: r for r in self.resources}
        parent = resource.parent
        while parent in urns:
            yield urns[parent]
            parent = urns[parent].parent


def _run_main() -> None:
    runpy.run_path(str(MAIN), run_name="__main__")


def run_program(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    preview: bool = False,
    mocks: RealisticMocks | None = None,
    ecr: Mapping[str, Mapping[str, str]] | None = None,
    *,
    crd_schemas: bool = False,
) -> ProgramRun:
    """Run ``__main__.py`` for ``stack`` under mocks, in an isolated context, and record it.

    ``mocks``: a :class:`RealisticMocks` (or subclass) describing the account; default: a fresh one
    for the stack's region, with ``ecr`` as its existing ECR repositories (name -> {tag: digest}).
    ``crd_schemas``: register the KubeRay CRDs with their real schemas (slow; see the module docstring).
    """
    config = load_stack_config(stack, overrides)
    region = json.loads(json.dumps(config.get("aws:region", "us-west-2")))
    mocks = mocks if mocks is not None else RealisticMocks(region=region, ecr=ecr)
    first_invoke = len(mocks.invokes)  # a caller's mocks may have served earlier runs
    monitor = RecordingMonitor(mocks)
    run = ProgramRun(stack=stack, config=config, crd_schemas=crd_schemas)

    def body() -> None:
        # A test that ran asyncio.run() before leaves the thread without a current loop, which
        # set_mocks needs: give it one, as pulumi's own _sync_await does.
        _ensure_event_loop()
        settings.ROOT.set(None)
        pulumi.runtime.set_all_config(config)
        pulumi.runtime.set_mocks(
            monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor
        )
        settings.SETTINGS.rpc_manager.clear()
        settings.SETTINGS.outputs.clear()
        try:
            with _crd_documents(full=crd_schemas):
                _sync_await(run_pulumi_func(_run_main))
        except BaseException as exc:  # the program's own error is the result under test
            run.error = exc
            return
        root = settings.get_root_resource()
        outputs: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)
            run.exports[key] = _sync_await(out.future())
            if _sync_await(out.is_secret()):
                run.secret_exports.add(key)

    started = time.perf_counter()
    contextvars.copy_context().run(body)
    if os.environ.get(HARNESS_LOG_ENV):  # the input key costs a JSON dump of the environment
        log_event(
            "run",
            stack,
            time.perf_counter() - started,
            ok=run.error is None,
            crd_schemas=crd_schemas,
            # Same input as another run (what run_shared keys on, plus the mock's class): a
            # candidate for run_shared.
            input=hashlib.sha256(
                (_shared_key(stack, overrides, ecr) + type(mocks).__qualname__ + str(crd_schemas)).encode()
            ).hexdigest()[:16],
        )
    run.resources = monitor.registered
    run.component_outputs = monitor.component_outputs
    run.invokes = mocks.invokes[first_invoke:]
    return run


def run_ok(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    ecr: Mapping[str, Mapping[str, str]] | None = None,
    *,
    crd_schemas: bool = False,
) -> ProgramRun:
    """:func:`run_program` for a configuration that must evaluate without error."""
    run = run_program(stack, overrides, ecr=ecr, crd_schemas=crd_schemas)
    if run.error is not None:
        raise AssertionError(
            f"Pulumi.{stack}.yaml with {dict(overrides or {})}: the program failed: {run.error!r}"
        )
    return run


# Successful runs by everything that decides them (see _shared_key); filled by run_shared.
_SHARED_RUNS: dict[str, ProgramRun] = {}


def _shared_key(
    stack: str, overrides: Mapping[str, Any] | None, ecr: Mapping[str, Mapping[str, str]] | None
) -> str:
    """What a mocked run depends on besides the repository's files: the stack, its overrides, the ECR
    the mock describes, the mock's module-level account tables and the program it runs (tests
    ``monkeypatch`` them) and the environment (e.g. ``KUBECONFIG``)."""
    return json.dumps(
        {
            "program": [str(MAIN), _run_main.__module__, _run_main.__qualname__],
            "stack": stack,
            "overrides": overrides or {},
            "ecr": ecr or {},
            "tables": [
                HYPERPOD_CLUSTERS,
                INSTANCE_TYPES,
                ADDON_VERSIONS,
                CLUSTER_SUBNETS,
                SUPPORTED_KUBERNETES,
            ],
            # pytest names the running test in PYTEST_CURRENT_TEST: not an input of the program.
            "environ": {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"},
        },
        sort_keys=True,
        default=repr,
    )


def run_shared(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    ecr: Mapping[str, Mapping[str, str]] | None = None,
    *,
    crd_schemas: bool = False,
) -> ProgramRun:
    """:func:`run_ok`, run once per test session for each distinct input; each caller gets its own deep copy.

    For tests that only read what the program registered. A test that observes the run itself (warnings
    logged through a patched ``pulumi.log``, a patched component or builder function) must call
    :func:`run_ok` or :func:`run_program`: a memoized run does not execute the program again. A run
    made with ``crd_schemas`` also answers callers that do not ask for them (it differs only in the
    CRD schema bodies), not the other way round.
    """
    key = _shared_key(stack, overrides, ecr)
    if key not in _SHARED_RUNS or (crd_schemas and not _SHARED_RUNS[key].crd_schemas):
        _SHARED_RUNS[key] = run_ok(stack, overrides, ecr=ecr, crd_schemas=crd_schemas)
    started = time.perf_counter()
    result = _copy_run(_SHARED_RUNS[key])
    log_event("copy", stack, time.perf_counter() - started)
    return result


def _copy_run(run: ProgramRun) -> ProgramRun:
    """An independent deep copy: a pickle round trip (4x faster than ``copy.deepcopy`` on a dev run's
    ~3 MB of plain dicts and lists, with the same sharing semantics), ``deepcopy`` if it cannot pickle."""
    try:
        copied: ProgramRun = pickle.loads(pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError):
        copied = copy.deepcopy(run)
    return copied

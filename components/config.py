"""Stack configuration: the only module that reads ``pulumi.Config``.

``load_stack_config()`` reads every project key once, validates it into frozen pydantic models and
returns a :class:`StackConfig`. Every other module receives those models, never raw config.

Invalid input raises :class:`ConfigError` (a ``pulumi.RunError``, so the CLI prints the message
without a traceback) *before* any resource is registered. Each problem names the config key as a
user would type it (``ray-on-eks:workerGroups[0].minReplicas``), the bad value and how to fix it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Self

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.builders.images import stack_flavours, uses_stock_image, workload_image_problem
from components.builders.nodepools import PodPlacement, PoolSpec, family_problem, nodepool_problems
from components.builders.placement import GPU_TAINT_KEY
from components.builders.storage import (
    FSX_CSI_ADDON,
    POD_IDENTITY_AGENT_ADDON,
    S3_CSI_ADDON,
    check_addon_version,
)
from components.versions import KUBERAY_FEATURE_GATES, KUBERAY_VERSION
from workloads.catalog import ENV_CONTRACT, WORKLOADS

REPO_ROOT = Path(__file__).resolve().parent.parent

PROJECT = "ray-on-eks"

# --------------------------------------------------------------------------------------------------
# Value types shared by several models
# --------------------------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_INSTANCE_TYPE = re.compile(r"^(ml\.)?[a-z][a-z0-9-]*\.[a-z0-9]+$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
_EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_HYPERPOD_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:cluster/[a-z0-9]+$")
# A pinned image: a tag other than "latest", or a digest. The registry part may carry a port.
_PINNED_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._/:-][a-z0-9]+)*)(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:[0-9a-f]{64})$"
)
# Trainium / Inferentia instance families: their accelerators are Neuron devices.
_NEURON_FAMILY = re.compile(r"^(ml\.)?(trn|inf)[0-9]")


def _dns_label(value: str, max_len: int = 63) -> str:
    if len(value) > max_len or not _DNS_LABEL.match(value):
        raise ValueError(
            f"must be a lowercase DNS label of at most {max_len} characters "
            "(a-z, 0-9 and '-', starting and ending with a letter or digit)"
        )
    return value


def _cpu(value: str) -> str:
    if not _CPU.match(value) or _cpu_cores(value) <= 0:
        raise ValueError('must be a positive Kubernetes CPU quantity such as "2", "0.5" or "500m"')
    return value


def _memory(value: str) -> str:
    if not _MEMORY.match(value) or memory_bytes(value) <= 0:
        raise ValueError('must be a positive Kubernetes memory quantity such as "8Gi" or "512Mi"')
    return value


def _cpu_cores(value: str) -> float:
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def cpu_cores(value: str) -> float:
    """Cores in a Kubernetes CPU quantity (``"500m"`` -> 0.5)."""
    return _cpu_cores(value)


_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def memory_bytes(value: str) -> float:
    """Bytes in a Kubernetes memory quantity (``"8Gi"`` -> 8589934592)."""
    match = re.match(r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$", value)
    if not match or match.group(2) not in _MEMORY_UNITS:
        raise ValueError(f"not a memory quantity: {value!r}")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def _aws_id(prefix: str, what: str) -> AfterValidator:
    pattern = re.compile(rf"^{prefix}-[0-9a-f]{{8,17}}$")

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"is not a {what} id (expected {prefix}-0123456789abcdef0)")
        return value

    return AfterValidator(check)


def _check_bounds(low_key: str, low: int, high_key: str, high: int) -> None:
    """A lower bound above its upper bound: one message naming both keys and the fix."""
    if low > high:
        raise ValueError(
            f"{low_key} ({low}) is greater than {high_key} ({high}); lower {low_key} or raise {high_key}"
        )


def _pinned_image(value: str) -> str:
    match = _PINNED_IMAGE.match(value)
    if not match or match.group("tag") == "latest":
        raise ValueError(
            "must be a pinned image reference, repository:tag (not latest) or repository@sha256:<digest>, "
            "e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com/ray-neuron:2.60.0-sdk2.24"
        )
    return value


# KubeRay v1.7.0 limits (ray-operator/controllers/ray/utils/constant.go MaxRayClusterNameLength = 53,
# MaxRayJobNameLength = MaxRayServiceNameLength = 53 - 6: the operator appends "-" + 5 random
# characters to name the cluster a RayJob/RayService creates), and validation.go requires DNS-1035
# labels (a letter first) for RayCluster, RayJob and RayService names.
KUBERAY_OWNED_NAME_MAX = 47
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _kuberay_name(value: str, max_len: int = KUBERAY_OWNED_NAME_MAX) -> str:
    """A name KubeRay accepts for a RayJob/RayService (validation.go ValidateRayJobMetadata etc.)."""
    if len(value) > max_len or not _DNS1035_LABEL.match(value):
        raise ValueError(
            f"must be a lowercase DNS-1035 label of at most {max_len} characters (a-z, 0-9 and '-', "
            "starting with a letter and ending with a letter or digit), as KubeRay requires"
        )
    return value


def _kuberay_cluster_name(value: str) -> str:
    # Up to 63 here so that 51-63 characters get the cross-field message about KubeRay's truncation.
    return _kuberay_name(value, 63)


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
KubeRayName = Annotated[str, AfterValidator(_kuberay_name)]
SubnetId = Annotated[str, _aws_id("subnet", "subnet")]
SecurityGroupId = Annotated[str, _aws_id("sg", "security group")]
CpuQuantity = Annotated[str, AfterValidator(_cpu)]
MemoryQuantity = Annotated[str, AfterValidator(_memory)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]


def _driver_field(addon_name: str) -> Any:
    """The ``driver`` field of a storage section (FSx, S3)."""
    return Field(
        default="install",
        description=f"install: the stack installs the {addon_name} EKS add-on; existing: the cluster already "
        "runs the driver (HyperPod quick setup, a platform team) and the stack only gives its service account "
        "an IAM role.",
    )


def _driver_version_field(addon_name: str) -> Any:
    """The ``driverVersion`` field of a storage section: an optional pin of the add-on version."""
    return Field(
        default=None,
        description=f"Pin the {addon_name} add-on version (e.g. a -eksbuild.N build); unset = the newest EKS "
        "offers for the cluster's Kubernetes version.",
    )


def _addon_version(addon_name: str, key: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return check_addon_version(addon_name, value, key)
        except ValueError as exc:
            # The key is in the error's location already; keep the reason and the fix.
            raise ValueError(str(exc).removeprefix(f"{key}: ")) from None

    return AfterValidator(check)


def _driver_problems(section: str, driver: str, version: str | None) -> list[str]:
    if driver == "existing" and version is not None:
        return [
            f"{section}.driverVersion: {version!r} is set but {section}.driver is existing, so the stack "
            f"installs no add-on; remove driverVersion or set driver: install"
        ]
    return []


class _Model(BaseModel):
    """Base: camelCase keys as users write them in ``Pulumi.<stack>.yaml``, no unknown keys, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # Users write `cpu: 4` as often as `cpu: "4"`; both mean the quantity "4".
        coerce_numbers_to_str=True,
    )


# --------------------------------------------------------------------------------------------------
# Cluster target
# --------------------------------------------------------------------------------------------------


class HyperPodConfig(_Model):
    """The SageMaker HyperPod cluster whose EKS orchestrator this stack deploys into.

    Only the ARN is configured: everything else (orchestrator EKS cluster, VPC subnets and security
    groups, instance groups) is read from the cluster itself before any resource is registered
    (components/hyperpod.py). ``subnetId`` / ``securityGroupIds`` override what the lookup finds.
    """

    cluster_arn: str = Field(
        description=(
            "ARN of the SageMaker HyperPod cluster (aws sagemaker describe-cluster --cluster-name <name> "
            "--query ClusterArn --output text); its EKS cluster, subnets, security groups and instance "
            "groups are looked up from it."
        )
    )
    subnet_id: SubnetId | None = Field(
        default=None,
        description="Override the subnet FSx for Lustre is created in (default: the HyperPod cluster's first subnet).",
    )
    security_group_ids: tuple[SecurityGroupId, ...] = Field(
        default=(),
        description="Override the security groups that get the Lustre rules (default: the HyperPod cluster's).",
    )

    @field_validator("cluster_arn")
    @classmethod
    def _cluster_arn(cls, value: str) -> str:
        if not _HYPERPOD_ARN.match(value):
            raise ValueError(
                "is not a SageMaker HyperPod cluster ARN (arn:aws:sagemaker:<region>:<account>:cluster/<id>); "
                "print it with aws sagemaker describe-cluster --cluster-name <name> --query ClusterArn --output text"
            )
        return value

    @property
    def region(self) -> str:
        """The region in the ARN (the cluster lives there)."""
        return self.cluster_arn.split(":")[3]


def _families(value: tuple[str, ...]) -> tuple[str, ...]:
    for family in value:
        problem = family_problem(family)
        if problem:
            raise ValueError(problem)
    if len(set(value)) != len(value):
        raise ValueError("lists a family more than once")
    return value


InstanceFamilies = Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_families)]
CapacityTypes = Annotated[tuple[Literal["on-demand", "spot"], ...], Field(min_length=1)]
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[\w+=,.@/-]+$")


def _principal(value: str) -> str:
    if not _IAM_PRINCIPAL.match(value):
        raise ValueError(
            "is not an IAM role or user ARN such as arn:aws:iam::123456789012:role/Admin (EKS access entries "
            "take the role ARN, not an sts assumed-role session ARN)"
        )
    return value


_CIDR16 = re.compile(r"^(10|172|192)\.[0-9]{1,3}\.0\.0/16$")


def _vpc_cidr(value: str) -> str:
    if not _CIDR16.match(value):
        raise ValueError("is not a private /16 CIDR block such as 10.0.0.0/16")
    return value


class NewClusterConfig(_Model):
    """A cluster this program creates (``createCluster: true``): EKS Auto Mode, its VPC, Ray NodePools.

    Auto Mode runs Karpenter, the NVIDIA driver and device plugin, EBS CSI, CoreDNS and the Pod
    Identity agent for the cluster, so nothing here sizes nodes: NodePools say which instance
    families may be launched and cap them with limits.
    """

    kubernetes_version: str | None = Field(
        default=None, description="EKS Kubernetes version; defaults to components/versions.py."
    )
    vpc_id: Annotated[str, _aws_id("vpc", "VPC")] | None = Field(
        default=None,
        description="Use this existing VPC (with subnetIds) instead of creating one; unset = a new VPC.",
    )
    subnet_ids: tuple[SubnetId, ...] = Field(
        default=(),
        description="Private subnets of vpcId (two or more AZs, tagged kubernetes.io/role/internal-elb) for the "
        "cluster and its nodes.",
    )
    vpc_cidr: Annotated[str, AfterValidator(_vpc_cidr)] = Field(
        default="10.0.0.0/16", description="CIDR of the VPC the stack creates (a private /16)."
    )
    availability_zones: Annotated[int, Field(ge=2, le=4)] = Field(
        default=2,
        description="Availability zones of the new VPC (2-4): a public and a private subnet in each, one NAT gateway.",
    )
    cpu_instance_families: InstanceFamilies = Field(
        default=("m6i", "m7i", "c6i", "c7i", "r6i", "r7i"),
        description="EC2 families the CPU NodePool may launch (x86); CPU worker groups must use one.",
    )
    cpu_capacity_types: CapacityTypes = Field(
        default=("on-demand",), description="Capacity types of the CPU NodePool: on-demand and/or spot."
    )
    cpu_limit: PositiveInt = Field(
        default=256, description="Ceiling on the vCPUs of all CPU NodePool nodes (the NodePool's limits.cpu)."
    )
    gpu_instance_families: InstanceFamilies = Field(
        default=("g5", "g6", "g6e"),
        description="EC2 GPU families the GPU NodePool may launch; GPU worker groups must use one.",
    )
    gpu_capacity_types: CapacityTypes = Field(
        default=("on-demand",), description="Capacity types of the GPU NodePool: on-demand and/or spot."
    )
    gpu_limit: NonNegativeInt = Field(
        default=8,
        description="Ceiling on the GPUs of all GPU NodePool nodes (limits nvidia.com/gpu); 0 = no GPU NodePool.",
    )
    consolidate_after_seconds: NonNegativeInt = Field(
        default=300, description="How long a node stays empty or underused before Auto Mode removes it."
    )
    admin_principal_arns: tuple[Annotated[str, AfterValidator(_principal)], ...] = Field(
        default=(),
        description="Extra IAM roles/users given cluster admin (EKS access entries); the deploying identity always is.",
    )

    @model_validator(mode="after")
    def _network(self) -> Self:
        if (self.vpc_id is None) != (not self.subnet_ids):
            raise ValueError(
                "vpcId and subnetIds go together: set both to use an existing VPC's private subnets, or neither "
                "to create a VPC"
            )
        if self.subnet_ids and len(self.subnet_ids) < 2:
            raise ValueError(
                "subnetIds: EKS needs subnets in at least two availability zones; list two or more"
            )
        overlap = sorted(set(self.cpu_instance_families) & set(self.gpu_instance_families))
        if overlap:
            raise ValueError(
                f"cpuInstanceFamilies and gpuInstanceFamilies both list {', '.join(overlap)}; a family belongs to one "
                "NodePool, remove it from one list"
            )
        return self

    def pools(self) -> list[PoolSpec]:
        """The Ray NodePools: ``ray-cpu`` always, ``ray-gpu`` unless gpuLimit is 0."""
        pools = [
            PoolSpec(
                name="ray-cpu",
                families=self.cpu_instance_families,
                capacity_types=self.cpu_capacity_types,
                limits={"cpu": str(self.cpu_limit)},
                gpu=False,
                consolidate_after_seconds=self.consolidate_after_seconds,
            )
        ]
        if self.gpu_limit:
            pools.append(
                PoolSpec(
                    name="ray-gpu",
                    families=self.gpu_instance_families,
                    capacity_types=self.gpu_capacity_types,
                    limits={"nvidia.com/gpu": str(self.gpu_limit)},
                    gpu=True,
                    consolidate_after_seconds=self.consolidate_after_seconds,
                )
            )
        return pools


class KubernetesConfig(_Model):
    """clusterType kubernetes: the kubeconfig and context the Kubernetes provider deploys with."""

    context: str | None = Field(
        default=None,
        description="kubeconfig context to deploy into (e.g. kind-ray); unset = the kubeconfig's current context.",
    )
    kubeconfig: str | None = Field(
        default=None,
        description="Path of the kubeconfig file; unset = $KUBECONFIG, else ~/.kube/config.",
    )

    @field_validator("context")
    @classmethod
    def _context(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError("must be a kubeconfig context name (kubectl config get-contexts -o name)")
        return value

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig(cls, value: str | None) -> str | None:
        # The provider would also accept the file's contents, but they hold credentials and the stack
        # config is plain text: only a path is allowed here.
        if value is not None and (
            not value.strip() or "\n" in value or value.lstrip().startswith("apiVersion")
        ):
            raise ValueError("must be the path of a kubeconfig file (not its contents), e.g. ~/.kube/config")
        return value


_STORAGE_CLASS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class StorageConfig(_Model):
    """clusterType kubernetes: shared storage claimed from an existing StorageClass, mounted at /shared."""

    storage_class: str | None = Field(
        default=None,
        description=(
            "Existing StorageClass for the shared claim (kubectl get storageclass); unset = no shared "
            "storage. Only for clusterType kubernetes (EKS and HyperPod use fsx / s3)."
        ),
    )
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        default="ReadWriteMany",
        description=(
            "ReadWriteMany (NFS, CephFS, EFS, Filestore, Azure Files...): every Ray pod on any node shares "
            "STORAGE_PATH. ReadWriteOnce (local-path, block disks): one node only, so every Ray pod must "
            "run on that node; fine for single-node clusters such as kind."
        ),
    )
    size_gib: PositiveInt = Field(default=100, description="Requested size of the shared claim in GiB.")

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str | None) -> str | None:
        if value is not None and not _STORAGE_CLASS_NAME.match(value):
            raise ValueError(
                "is not a StorageClass name (lowercase letters, digits, '-' and '.'; kubectl get storageclass)"
            )
        return value


# --------------------------------------------------------------------------------------------------
# Ray cluster shape
# --------------------------------------------------------------------------------------------------


class TolerationConfig(_Model):
    """A Kubernetes toleration added to a worker group's pods."""

    key: str = Field(description="Taint key to tolerate, e.g. nvidia.com/gpu.")
    operator: Literal["Equal", "Exists"] = Field(default="Exists", description="Exists, or Equal to value.")
    value: str | None = Field(default=None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; unset tolerates every effect."
    )


class HeadConfig(_Model):
    """The Ray head pod."""

    cpu: CpuQuantity = Field(default="2", description="CPU request and limit of the head container.")
    memory: MemoryQuantity = Field(
        default="8Gi", description="Memory request and limit of the head container."
    )
    num_cpus: NonNegativeInt = Field(
        default=0,
        description="CPUs the head advertises to Ray (rayStartParams num-cpus); 0 keeps work off the head.",
    )
    instance_type: str | None = Field(
        default=None, description="Pin the head to nodes of this instance type."
    )
    image: PinnedImage | None = Field(
        default=None,
        description="Image of the head (and of RayJob submitters); default: the pinned Ray image. Tag or digest, never latest.",
    )


class WorkerGroupConfig(_Model):
    """One Ray worker group: pods of one shape on one instance type."""

    name: DnsLabel = Field(description="Group name (a DNS label), e.g. gpu-workers.")
    instance_type: str | None = Field(
        default=None,
        description=(
            "Node instance type, e.g. g5.2xlarge (EKS) or ml.g5.8xlarge (HyperPod); required there. "
            "clusterType kubernetes: optional (the node.kubernetes.io/instance-type label; or use nodeSelector)."
        ),
    )
    replicas: NonNegativeInt = Field(default=1, description="Initial number of worker pods.")
    min_replicas: NonNegativeInt = Field(default=0, description="Autoscaling lower bound.")
    max_replicas: NonNegativeInt = Field(default=1, description="Autoscaling upper bound.")
    cpu: CpuQuantity = Field(default="4", description="CPU request and limit per worker pod.")
    memory: MemoryQuantity = Field(default="16Gi", description="Memory request and limit per worker pod.")
    gpus: NonNegativeInt = Field(default=0, description="nvidia.com/gpu per worker pod.")
    efa_devices: NonNegativeInt = Field(
        default=0,
        description=(
            "vpc.amazonaws.com/efa devices per worker pod; the image needs libfabric and the aws-ofi-nccl "
            "plugin (set image), else NCCL falls back to TCP."
        ),
    )
    efa_hugepages: MemoryQuantity = Field(
        default="5120Mi",
        description="hugepages-2Mi requested by each EFA pod (EKS EFA guide; EFA nodes pre-allocate 5128 x 2Mi).",
    )
    neuron_devices: NonNegativeInt = Field(
        default=0,
        description="aws.amazon.com/neuron devices per worker pod (Trainium/Inferentia, ml.trn*/ml.inf*; needs image).",
    )
    shm_size: MemoryQuantity | None = Field(
        default=None,
        description=(
            "Size of the memory-backed /dev/shm of GPU and Neuron pods (counts against memory); "
            "unset = half of memory. Setting it on a CPU group gives that group one too."
        ),
    )
    image: PinnedImage | None = Field(
        default=None,
        description=(
            "Image of this group (custom CUDA or Neuron builds); default: the pinned Ray image. "
            "Tag or digest, never latest."
        ),
    )
    tolerations: tuple[TolerationConfig, ...] = Field(default=(), description="Extra tolerations.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node selector labels.")

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str | None) -> str | None:
        # A node label value on any cluster; the EC2/SageMaker shape is checked per clusterType.
        if value is not None and not _LABEL_VALUE.match(value):
            raise ValueError(
                "is not a node label value (at most 63 letters, digits, '-', '_' or '.', e.g. g5.2xlarge)"
            )
        return value

    @property
    def neuron(self) -> bool:
        """Whether the group runs on Trainium / Inferentia (Neuron) instances."""
        return self.instance_type is not None and bool(_NEURON_FAMILY.match(self.instance_type))

    @property
    def shm_bytes(self) -> int | None:
        """Size of the group's memory-backed /dev/shm in bytes; None when it gets none."""
        if self.shm_size is not None:
            return int(memory_bytes(self.shm_size))
        if self.gpus or self.neuron_devices:
            return int(memory_bytes(self.memory) // 2)
        return None

    @model_validator(mode="after")
    def _accelerators(self) -> Self:
        if self.neuron and not self.neuron_devices:
            raise ValueError(
                f"instanceType {self.instance_type} is a Trainium/Inferentia type but neuronDevices is 0; set "
                "neuronDevices (aws.amazon.com/neuron per pod) and image (a Ray image with the Neuron SDK)"
            )
        if self.neuron_devices and not self.neuron:
            raise ValueError(
                f"neuronDevices is {self.neuron_devices} but instanceType {self.instance_type} has no Neuron "
                "devices; use a trn*/inf* instance type or set neuronDevices: 0"
            )
        if self.neuron_devices and self.image is None:
            raise ValueError(
                "neuronDevices is set but image is not; the default Ray image has no Neuron SDK, set image to a "
                "pinned Ray image built with it"
            )
        if self.neuron and self.gpus:
            raise ValueError(f"gpus is {self.gpus} but {self.instance_type} has no NVIDIA GPUs; set gpus: 0")
        if self.shm_size is not None and memory_bytes(self.shm_size) >= memory_bytes(self.memory):
            raise ValueError(
                f"shmSize {self.shm_size} is not smaller than memory {self.memory}; /dev/shm is memory-backed and "
                "counts against the pod's memory, lower shmSize or raise memory"
            )
        return self

    @model_validator(mode="after")
    def _replicas(self) -> Self:
        _check_bounds("minReplicas", self.min_replicas, "maxReplicas", self.max_replicas)
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must lie between minReplicas ({self.min_replicas}) and "
                f"maxReplicas ({self.max_replicas}); change replicas or widen the bounds"
            )
        return self


class AutoscalerConfig(_Model):
    """Ray autoscaler (v2) running beside the head."""

    enabled: bool = Field(default=False, description="Turn on in-tree autoscaling (autoscaler v2).")
    idle_timeout_seconds: PositiveInt = Field(
        default=60, description="Seconds before an idle worker is removed."
    )
    upscaling_mode: Literal["Default", "Aggressive", "Conservative"] = Field(
        default="Default", description="How fast the autoscaler adds workers."
    )


class SecretKeyRef(_Model):
    """A key in an existing Kubernetes Secret in the Ray namespace."""

    name: DnsLabel = Field(description="Secret name in the Ray namespace.")
    key: str = Field(description="Key inside the Secret.")


class GcsFaultToleranceConfig(_Model):
    """GCS fault tolerance with an external Redis (e.g. ElastiCache)."""

    enabled: bool = Field(default=False, description="Turn on GCS fault tolerance (needs redisAddress).")
    redis_address: str | None = Field(default=None, description="host:port of the Redis endpoint.")
    redis_password_secret: SecretKeyRef | None = Field(
        default=None, description="Secret (name, key) holding the Redis password; never a literal password."
    )

    @model_validator(mode="after")
    def _redis(self) -> Self:
        if self.enabled and not self.redis_address:
            raise ValueError(
                "enabled is true but redisAddress is empty; set redisAddress to host:port of your Redis "
                "or set enabled: false"
            )
        if self.redis_address and not re.match(r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$", self.redis_address):
            raise ValueError(
                f"redisAddress {self.redis_address!r} must be host:port, e.g. my-redis.example:6379"
            )
        return self


# --------------------------------------------------------------------------------------------------
# KubeRay operator
# --------------------------------------------------------------------------------------------------


class KubeRayConfig(_Model):
    """The KubeRay operator Helm release."""

    namespace: DnsLabel = Field(default="kuberay-system", description="Namespace of the operator.")
    cpu: CpuQuantity = Field(default="100m", description="Operator CPU request (and limit).")
    memory: MemoryQuantity = Field(default="512Mi", description="Operator memory request (and limit).")
    feature_gates: dict[str, bool] = Field(
        default_factory=dict, description="KubeRay feature gates by name, e.g. {RayJobDeletionPolicy: true}."
    )
    batch_scheduler: Literal["volcano", "yunikorn", "kai-scheduler", "scheduler-plugins"] | None = Field(
        default=None, description="Optional batch scheduler integration."
    )
    watch_namespaces: tuple[DnsLabel, ...] = Field(
        default=(), description="Namespaces the operator watches; empty = the stack's Ray namespace only."
    )

    @field_validator("feature_gates")
    @classmethod
    def _gates(cls, value: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(value) - set(KUBERAY_FEATURE_GATES))
        if unknown:
            raise ValueError(
                f"unknown feature gate(s) {', '.join(unknown)} for KubeRay {KUBERAY_VERSION} (the operator "
                f"would exit at start); known gates: {', '.join(KUBERAY_FEATURE_GATES)}"
            )
        return value


# --------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------


# FSx for Lustre rules (AWS CreateFileSystem API reference, "StorageCapacity", "PerUnitStorageThroughput"
# and "FileSystemTypeVersion"): capacity steps and throughput tiers per deployment type, and which Lustre
# versions each deployment type can be created with.
FSX_CAPACITY_STEP_GIB = {"SCRATCH_1": 3600, "SCRATCH_2": 2400, "PERSISTENT_1": 2400, "PERSISTENT_2": 2400}
FSX_THROUGHPUT = {"PERSISTENT_1": (50, 100, 200), "PERSISTENT_2": (125, 250, 500, 1000)}
# Used when perUnitStorageThroughput is not set: the lowest (cheapest) tier.
FSX_DEFAULT_THROUGHPUT = {"PERSISTENT_1": 50, "PERSISTENT_2": 125}
FSX_LUSTRE_VERSIONS = {
    "SCRATCH_1": ("2.10", "2.12", "2.15"),
    "SCRATCH_2": ("2.10", "2.12", "2.15"),
    "PERSISTENT_1": ("2.10", "2.12", "2.15"),
    "PERSISTENT_2": ("2.12", "2.15"),
}


def fsx_capacity_allowed(deployment_type: str, capacity_gib: int) -> bool:
    """Whether FSx accepts ``capacity_gib`` for ``deployment_type`` (1200, 2400, or a multiple of the step)."""
    return capacity_gib in (1200, 2400) or capacity_gib % FSX_CAPACITY_STEP_GIB[deployment_type] == 0


class FsxConfig(_Model):
    """FSx for Lustre shared storage, mounted at /fsx in every Ray pod."""

    enabled: bool = Field(default=False, description="Mount FSx for Lustre at /fsx in every Ray pod.")
    driver: Literal["install", "existing"] = _driver_field(FSX_CSI_ADDON)
    driver_version: Annotated[str, _addon_version(FSX_CSI_ADDON, "fsx.driverVersion")] | None = (
        _driver_version_field(FSX_CSI_ADDON)
    )
    mode: Literal["dynamic", "static"] = Field(
        default="dynamic",
        description="dynamic: the CSI driver creates a file system; static: use an existing one.",
    )
    deployment_type: Literal["SCRATCH_1", "SCRATCH_2", "PERSISTENT_1", "PERSISTENT_2"] = Field(
        default="PERSISTENT_2", description="FSx deployment type (dynamic mode)."
    )
    storage_capacity_gib: PositiveInt = Field(default=1200, description="Capacity in GiB.")
    per_unit_storage_throughput: PositiveInt | None = Field(
        default=None,
        description="MB/s per TiB (PERSISTENT_* only); unset = the lowest tier (PERSISTENT_2: 125, PERSISTENT_1: 50).",
    )
    data_compression: Literal["NONE", "LZ4"] = Field(
        default="LZ4", description="Data compression (dynamic mode)."
    )
    lustre_version: Literal["2.10", "2.12", "2.15"] = Field(
        default="2.15", description="Lustre version of a created file system."
    )
    subnet_id: SubnetId | None = Field(
        default=None,
        description="Subnet of a created file system; unset: on HyperPod its nodes' subnet (looked up, or hyperpod.subnetId), else the EKS cluster's first private subnet.",
    )
    security_group_ids: tuple[SecurityGroupId, ...] = Field(
        default=(), description="Override the security groups."
    )
    file_system_id: str | None = Field(default=None, description="static: existing file system id (fs-...).")
    dns_name: str | None = Field(default=None, description="static: the file system's DNS name.")
    mount_name: str | None = Field(default=None, description="static: the file system's Lustre mount name.")

    @field_validator("file_system_id")
    @classmethod
    def _file_system_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^fs-[0-9a-f]{8,17}$", value):
            raise ValueError(
                "is not an FSx file system id (expected fs-0123456789abcdef0; aws fsx describe-file-systems)"
            )
        return value

    @property
    def throughput(self) -> int | None:
        """The MB/s/TiB tier the file system gets: the configured one, else the lowest; None for SCRATCH_*."""
        if self.deployment_type.startswith("SCRATCH"):
            return None
        return self.per_unit_storage_throughput or FSX_DEFAULT_THROUGHPUT[self.deployment_type]

    @model_validator(mode="after")
    def _static(self) -> Self:
        if self.enabled and self.mode == "static":
            missing = [
                key
                for key, value in (
                    ("fileSystemId", self.file_system_id),
                    ("dnsName", self.dns_name),
                    ("mountName", self.mount_name),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"mode is static but {', '.join(missing)} is not set; give the existing file system's "
                    "fileSystemId, dnsName and mountName (aws fsx describe-file-systems), or use mode: dynamic"
                )
        return self

    @model_validator(mode="after")
    def _dynamic(self) -> Self:
        # Checked here, before any resource exists: the CSI driver would only report these as a PVC
        # stuck in Pending with a CreateFileSystem error in the controller log.
        if not (self.enabled and self.mode == "dynamic"):
            return self
        problems: list[str] = []
        kind = self.deployment_type
        if not fsx_capacity_allowed(kind, self.storage_capacity_gib):
            step = FSX_CAPACITY_STEP_GIB[kind]
            problems.append(
                f"storageCapacityGib {self.storage_capacity_gib} is not valid for deploymentType {kind}; "
                f"allowed: 1200, 2400 or a multiple of {step} (e.g. {step}, {2 * step})"
            )
        if kind.startswith("SCRATCH"):
            if self.per_unit_storage_throughput is not None:
                problems.append(
                    f"perUnitStorageThroughput {self.per_unit_storage_throughput} cannot be set for "
                    f"deploymentType {kind} (scratch throughput is fixed); remove perUnitStorageThroughput "
                    "or use PERSISTENT_1 / PERSISTENT_2"
                )
        elif (
            self.per_unit_storage_throughput is not None
            and self.per_unit_storage_throughput not in FSX_THROUGHPUT[kind]
        ):
            allowed = ", ".join(str(v) for v in FSX_THROUGHPUT[kind])
            problems.append(
                f"perUnitStorageThroughput {self.per_unit_storage_throughput} is not valid for "
                f"deploymentType {kind}; allowed: {allowed}"
            )
        if self.lustre_version not in FSX_LUSTRE_VERSIONS[kind]:
            allowed = ", ".join(FSX_LUSTRE_VERSIONS[kind])
            problems.append(
                f"lustreVersion {self.lustre_version} is not available for deploymentType {kind}; "
                f"allowed: {allowed}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class S3Config(_Model):
    """An S3 bucket mounted at /s3 through Mountpoint for Amazon S3."""

    enabled: bool = Field(default=False, description="Mount an S3 bucket at /s3 in every Ray pod.")
    driver: Literal["install", "existing"] = _driver_field(S3_CSI_ADDON)
    driver_version: Annotated[str, _addon_version(S3_CSI_ADDON, "s3.driverVersion")] | None = (
        _driver_version_field(S3_CSI_ADDON)
    )
    create_bucket: bool = Field(
        default=True, description="Create the bucket (true) or use bucketName (false)."
    )
    bucket_name: str | None = Field(
        default=None, description="Existing bucket, or the name of the one to create."
    )

    @field_validator("bucket_name")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not re.match(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$", value) or ".." in value
        ):
            raise ValueError(
                "is not a valid S3 bucket name: 3-63 characters of lowercase letters, digits, '.' and '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _existing(self) -> Self:
        if self.enabled and not self.create_bucket and not self.bucket_name:
            raise ValueError("createBucket is false but bucketName is empty; name the existing bucket")
        return self


# --------------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------------


class MonitoringConfig(_Model):
    """kube-prometheus-stack with Ray scraping, alerts and dashboards."""

    enabled: bool = Field(default=True, description="Install Prometheus and Grafana and scrape Ray.")
    namespace: DnsLabel = Field(default="monitoring", description="Namespace of the monitoring stack.")
    prometheus_retention: str = Field(
        default="15d",
        pattern=r"^[0-9]+(ms|s|m|h|d|w|y)$",
        description="How long Prometheus keeps samples, e.g. 12h, 15d, 4w.",
    )
    prometheus_storage_gib: PositiveInt | None = Field(
        default=None, description="Persistent volume size for Prometheus; unset = emptyDir (lost on restart)."
    )
    storage_class: str | None = Field(default=None, description="StorageClass for Prometheus' volume.")
    alertmanager: bool = Field(
        default=False,
        description="Run Alertmanager. Off: alerts show in Prometheus and Grafana only (the stack configures "
        "no receivers); on: add receivers with AlertmanagerConfig resources in the monitoring namespace.",
    )
    scrape_kube_proxy: bool = Field(
        default=False,
        description="Scrape kube-proxy. Off by default: the EKS kube-proxy add-on serves metrics on 127.0.0.1 "
        "only and kube-proxy-less clusters have none, so KubeProxyDown would always fire.",
    )

    @model_validator(mode="after")
    def _storage(self) -> Self:
        if self.storage_class is not None and self.prometheus_storage_gib is None:
            raise ValueError(
                f"storageClass {self.storage_class!r} is set but prometheusStorageGib is not, so Prometheus "
                "keeps its data in an emptyDir; set prometheusStorageGib (e.g. 50) or remove storageClass"
            )
        return self


# --------------------------------------------------------------------------------------------------
# Jobs and services
# --------------------------------------------------------------------------------------------------


class RayJobConfig(_Model):
    """A RayJob created after the cluster is ready."""

    name: KubeRayName = Field(description="RayJob name (a DNS-1035 label of at most 47 characters).")
    workload: str | None = Field(
        default=None,
        description="Workload name from workloads/catalog.py, e.g. dt-pytorch; or set code + entrypoint instead.",
    )
    code: str | None = Field(
        default=None,
        description=(
            "Your own code instead of a workload: a directory relative to the repo root (e.g. "
            "examples/hello_ray), shipped in the content-hashed workloads ConfigMap (Kubernetes' 1 MiB "
            "limit; larger code: python -m workloads submit DIR --stack S) and run from there."
        ),
    )
    entrypoint: str | None = Field(
        default=None, description="With code: the command run in that directory, e.g. 'python main.py'."
    )
    cluster: Literal["shared", "ephemeral"] = Field(
        default="shared",
        description="shared: run on the stack's RayCluster; ephemeral: a cluster created for the job and deleted after.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Env overrides: env-contract names for a catalog workload, any names for own code.",
    )
    secret_env: dict[str, SecretKeyRef] = Field(
        default_factory=dict,
        description=(
            "Env variables read from existing Secrets in the Ray namespace, e.g. HF_TOKEN: {name: hf-token, key: "
            "token}; set on the job's Ray pods as secretKeyRef, never as literals in the RayJob. cluster: "
            "ephemeral only (the shared cluster's pods serve every job)."
        ),
    )
    active_deadline_seconds: PositiveInt | None = Field(
        default=None, description="Fail the job after this many seconds; unset = no deadline."
    )
    backoff_limit: NonNegativeInt = Field(
        default=0,
        description="Retries of a failed job, each on a new cluster (cluster: ephemeral only; shared needs 0).",
    )
    ttl_seconds_after_finished: NonNegativeInt = Field(
        default=3600, description="ephemeral: seconds before a finished job's cluster is deleted."
    )

    @field_validator("workload")
    @classmethod
    def _job_workload(cls, value: str | None) -> str | None:
        return None if value is None else _workload_of_kind(value, "job")

    @field_validator("code")
    @classmethod
    def _job_code(cls, value: str | None) -> str | None:
        return None if value is None else own_code_dir(value)

    @field_validator("env")
    @classmethod
    def _job_env(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # `code` is declared before `env`, so it is already validated here; own code takes any names.
        return value if info.data.get("code") else _contract_env(value)

    @field_validator("secret_env")
    @classmethod
    def _job_secret_env(cls, value: dict[str, SecretKeyRef], info: ValidationInfo) -> dict[str, SecretKeyRef]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name; use e.g. HF_TOKEN")
        if not info.data.get("code"):
            _contract_env(dict.fromkeys(value, ""), secrets=True)
        both = sorted(set(value) & set(info.data.get("env") or {}))
        if both:
            raise ValueError(
                f"{', '.join(both)} set in both env and secretEnv; keep only the secretEnv entry"
            )
        return value

    @model_validator(mode="after")
    def _program(self) -> Self:
        if (self.workload is None) == (self.code is None):
            raise ValueError(
                "set either workload (a catalog workload, e.g. quickstart) or code + entrypoint (your own "
                "code, e.g. code: examples/hello_ray, entrypoint: python main.py)"
            )
        if self.code is not None and not (self.entrypoint or "").strip():
            raise ValueError(f"code {self.code!r} needs an entrypoint, e.g. entrypoint: python main.py")
        if self.code is None and self.entrypoint is not None:
            raise ValueError("entrypoint applies to code (your own code), not to a catalog workload")
        if self.secret_env and self.cluster != "ephemeral":
            raise ValueError(
                f"secretEnv ({', '.join(sorted(self.secret_env))}) needs cluster: ephemeral: the shared "
                "RayCluster's pods run every job, so a job's secrets cannot be put on them"
            )
        return self


class RayServiceConfig(_Model):
    """A RayService running a Serve application from workloads/."""

    name: KubeRayName = Field(description="RayService name (a DNS-1035 label of at most 47 characters).")
    workload: str | None = Field(
        default=None,
        description="Workload name (kind service) from workloads/catalog.py; serve when neither it nor code is set.",
    )
    code: str | None = Field(
        default=None,
        description=(
            "Your own Serve app instead of a workload: a directory relative to the repo root, shipped "
            "in the workloads ConfigMap (1 MiB limit) and put first on PYTHONPATH."
        ),
    )
    import_path: str | None = Field(
        default=None, description="With code: the Serve import path module:attribute, e.g. app:deployment."
    )
    num_replicas: PositiveInt = Field(
        default=1, description="Serve replicas of the catalog deployment (own code sets its own)."
    )
    upgrade_strategy: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"] = Field(
        default="NewCluster",
        description="NewCluster: blue/green on a new RayCluster; None: update in place.",
    )
    high_throughput_ingress: bool = Field(
        default=True,
        description=(
            "Ray Serve's HAProxy + direct ingress (RAY_SERVE_ENABLE_HA_PROXY, RAY_SERVE_THROUGHPUT_OPTIMIZED "
            "on every Ray container; Serve logs go to files, not stderr; catalog apps also replay a request "
            "a dying replica dropped); false: the Python proxy actor."
        ),
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Env overrides: env-contract names for a catalog workload, any names for own code.",
    )

    @field_validator("workload")
    @classmethod
    def _service_workload(cls, value: str | None) -> str | None:
        return None if value is None else _workload_of_kind(value, "service")

    @field_validator("code")
    @classmethod
    def _service_code(cls, value: str | None) -> str | None:
        return None if value is None else own_code_dir(value)

    @field_validator("env")
    @classmethod
    def _service_env(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return value if info.data.get("code") else _contract_env(value)

    @model_validator(mode="after")
    def _program(self) -> Self:
        if self.code is not None and self.workload is not None:
            raise ValueError(
                "set either workload (a catalog service, e.g. serve) or code + importPath, not both"
            )
        if self.code is not None and not _IMPORT_PATH.match(self.import_path or ""):
            raise ValueError(
                f"code {self.code!r} needs importPath as module:attribute, e.g. importPath: app:deployment "
                f"(got {self.import_path!r})"
            )
        if self.code is None and self.import_path is not None:
            raise ValueError("importPath applies to code (your own Serve app), not to a catalog workload")
        return self

    @field_validator("upgrade_strategy")
    @classmethod
    def _upgrade(cls, value: str) -> str:
        if value == "NewClusterWithIncrementalUpgrade":
            # KubeRay needs upgradeStrategy.clusterUpgradeOptions.gatewayClassName (a Gateway API
            # controller) for it, which this stack does not install.
            raise ValueError(
                "NewClusterWithIncrementalUpgrade needs a Gateway API controller that this stack does not "
                "install; use NewCluster (zero-downtime blue/green) or None"
            )
        return value


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def own_code_dir(value: str) -> str:
    """A directory of the repo (relative, inside it) holding the user's own code."""
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"must be a directory relative to the repo root (no '..'), got {value!r}")
    if not (REPO_ROOT / path).is_dir():
        raise ValueError(f"{value!r} is not a directory under {REPO_ROOT}")
    return path.as_posix()


def _workload_of_kind(name: str, kind: str) -> str:
    """A workload name from workloads/catalog.py whose kind is ``kind`` (job or service)."""
    valid = sorted(w.name for w in WORKLOADS.values() if w.kind == kind)
    workload = WORKLOADS.get(name)
    if workload is None:
        raise ValueError(f"unknown workload; valid {kind} workloads: {', '.join(valid)}")
    if workload.kind != kind:
        where = "rayServices" if workload.kind == "service" else "rayJobs"
        raise ValueError(
            f"is a {workload.kind} workload, not a {kind}; run it from {where}, or pick one of: {', '.join(valid)}"
        )
    return name


def _contract_env(env: dict[str, str], *, secrets: bool = False) -> dict[str, str]:
    """``env`` if every name is in the workload env contract; ``secrets``: names from secretEnv."""
    known = [var.name for var in ENV_CONTRACT]
    unknown = sorted(set(env) - set(known))
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} not in the workload env contract; valid names: {', '.join(known)}"
        )
    literal = sorted(var.name for var in ENV_CONTRACT if var.secret and var.name in env)
    if literal and not secrets:
        raise ValueError(
            f"{', '.join(literal)} is a credential and never a literal in stack config: create a Secret "
            f"(kubectl -n <namespace> create secret generic hf-token --from-literal=token=...) and reference it "
            f"with secretEnv: {{{literal[0]}: {{name: hf-token, key: token}}}} (cluster: ephemeral jobs)"
        )
    return env


# --------------------------------------------------------------------------------------------------
# Workload images
# --------------------------------------------------------------------------------------------------

# ECR repository names: lowercase path components separated by '/', each of letters and digits joined
# by single '.', '_' or '-' (CreateRepository's repositoryName pattern), 2-256 characters.
_ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def _digest_pinned(value: str | None) -> str | None:
    problem = workload_image_problem(value) if value is not None else None
    if problem:
        raise ValueError(problem)
    return value


DigestRef = Annotated[str | None, AfterValidator(_digest_pinned)]


class RayImagesConfig(_Model):
    """Workload images (images/ built by CI or by hand), pinned by digest, per flavour."""

    cpu: DigestRef = Field(
        default=None,
        description="Image of the head, CPU workers and job submitters (repo:tag@sha256:...); unset = stock image.",
    )
    gpu: DigestRef = Field(
        default=None, description="Image of GPU worker groups (repo:tag@sha256:...); unset = stock GPU image."
    )

    def as_mapping(self) -> dict[str, str]:
        """The configured flavours only: ``{"cpu": ref, ...}``."""
        return {flavour: ref for flavour, ref in (("cpu", self.cpu), ("gpu", self.gpu)) if ref is not None}


class EcrRepositoryConfig(_Model):
    """The ECR repository the stack creates for the workload images."""

    enabled: bool = Field(
        default=False,
        description="Create the repository (immutable tags, scan on push, lifecycle policy; kept per retainData).",
    )
    name: str | None = Field(
        default=None,
        description="Repository name; unset = ray-on-eks/<stack>. Fixed: a kept repository is adopted by name.",
    )
    keep_images: PositiveInt = Field(
        default=10, description="Newest images kept per flavour (older ones expire by lifecycle policy)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not (2 <= len(value) <= 256 and _ECR_REPOSITORY.match(value)):
            raise ValueError(
                "is not a valid ECR repository name: 2-256 lowercase letters, digits and single '.', '_', "
                "'-' between them, with '/' between path parts (e.g. ray-on-eks/dev)"
            )
        return value


# --------------------------------------------------------------------------------------------------
# The whole stack
# --------------------------------------------------------------------------------------------------


class StackConfig(_Model):
    """Everything one stack deploys, validated and frozen."""

    # Both default to "" (not set): required for eks and hyperpod, refused for kubernetes (_cross_field).
    region: str = Field(
        default="",
        description="AWS region (provider key aws:region); required for eks and hyperpod, refused on kubernetes.",
    )
    cluster_type: Literal["eks", "hyperpod", "kubernetes"] = Field(
        default="eks",
        description=(
            "eks: an EKS cluster; hyperpod: the EKS cluster orchestrating a SageMaker HyperPod cluster; "
            "kubernetes: any cluster a kubeconfig context points at (kind, minikube, on-premises), no AWS."
        ),
    )
    cluster_name: str | None = Field(
        default=None,
        description=(
            "Name of the EKS cluster (required for clusterType eks). HyperPod stacks look up their "
            "orchestrator EKS cluster; if set there, it must match it. Refused on kubernetes."
        ),
    )
    kubernetes: KubernetesConfig | None = Field(
        default=None,
        description="clusterType kubernetes: kubeconfig path and context; unset = the current context.",
    )
    storage: StorageConfig = Field(
        default_factory=StorageConfig,
        description="clusterType kubernetes: shared storage from an existing StorageClass, at /shared.",
    )
    create_cluster: bool = Field(
        default=False,
        description="Create an EKS Auto Mode cluster (own VPC, Ray NodePools, gp3 default StorageClass) instead of using an existing one.",
    )
    new_cluster: NewClusterConfig = Field(
        default_factory=NewClusterConfig,
        description="The EKS Auto Mode cluster createCluster makes: its VPC, version and Ray NodePools.",
    )
    hyperpod: HyperPodConfig | None = Field(
        default=None, description="The HyperPod cluster (required for clusterType hyperpod)."
    )
    namespace: DnsLabel = Field(
        default="ray", description="Namespace of the RayCluster, jobs, services and workload ConfigMaps."
    )
    ray_cluster_name: Annotated[str, AfterValidator(_kuberay_cluster_name)] = Field(
        default="ray",
        description="Name of the long-running RayCluster (a letter first, at most 50 characters).",
    )
    ray_image_repository: str = Field(
        default="rayproject/ray", description="Ray image repository (e.g. an ECR mirror); the tag is pinned."
    )
    ray_images: RayImagesConfig = Field(
        default_factory=RayImagesConfig,
        description="Workload images pinned by digest, per flavour (cpu, gpu); see README 'Workload images'.",
    )
    ecr_repository: EcrRepositoryConfig = Field(
        default_factory=EcrRepositoryConfig, description="ECR repository for the workload images."
    )
    build_images: bool = Field(
        default=False,
        description="Build images/ during pulumi up (pulumi-docker-build, needs Docker) into ecrRepository.",
    )
    runtime_pip: bool | None = Field(
        default=None,
        description=(
            "Install the workloads' pip packages when a job starts; unset = only while a Ray pod runs "
            "the stock image."
        ),
    )
    pre_pull_images: Literal["none", "gpu", "all"] = Field(
        default="gpu",
        description="Pull the Ray image onto new nodes of these worker groups before Ray needs it (DaemonSet).",
    )
    head: HeadConfig = Field(default_factory=HeadConfig, description="The Ray head pod.")
    worker_groups: tuple[WorkerGroupConfig, ...] = Field(
        default=(), description="Ray worker groups (at least one)."
    )
    autoscaler: AutoscalerConfig = Field(default_factory=AutoscalerConfig, description="Ray autoscaler v2.")
    gcs_fault_tolerance: GcsFaultToleranceConfig = Field(
        default_factory=GcsFaultToleranceConfig, description="GCS fault tolerance with an external Redis."
    )
    token_auth: bool = Field(
        default=True, description="Ray token authentication (dashboard, Jobs API and GCS require the token)."
    )
    network_policies: bool = Field(
        default=True,
        description="NetworkPolicies in the Ray namespace: deny ingress except Ray pods, Prometheus and the "
        "KubeRay operator (needs a network-policy engine, e.g. the VPC CNI with enableNetworkPolicy).",
    )
    kuberay: KubeRayConfig = Field(default_factory=KubeRayConfig, description="The KubeRay operator.")
    retain_data: bool = Field(
        default=True,
        description="Keep data on pulumi destroy (FSx file systems, buckets); false deletes them with the stack.",
    )
    fsx: FsxConfig = Field(default_factory=FsxConfig, description="FSx for Lustre shared storage at /fsx.")
    s3: S3Config = Field(default_factory=S3Config, description="S3 bucket mounted at /s3.")
    monitoring: MonitoringConfig = Field(
        default_factory=MonitoringConfig, description="Prometheus, Grafana, Ray dashboards and alerts."
    )
    ray_jobs: tuple[RayJobConfig, ...] = Field(default=(), description="RayJobs submitted after deploy.")
    ray_services: tuple[RayServiceConfig, ...] = Field(
        default=(), description="RayServices (Ray Serve apps)."
    )
    expose_dashboards: bool = Field(
        default=False, description="Allow dashboards outside the cluster; default ClusterIP + port-forward."
    )
    iam_mode: Literal["pod-identity", "irsa"] = Field(
        default="pod-identity", description="How pods get AWS credentials: EKS Pod Identity or IRSA."
    )
    manage_pod_identity_agent: bool = Field(
        default=False,
        description="Install the eks-pod-identity-agent add-on (for existing clusters that lack it; pod-identity only).",
    )
    pod_identity_agent_version: (
        Annotated[str, _addon_version(POD_IDENTITY_AGENT_ADDON, "podIdentityAgentVersion")] | None
    ) = Field(
        default=None,
        description="Pin the eks-pod-identity-agent add-on version (with managePodIdentityAgent); unset = the "
        "newest EKS offers for the cluster's Kubernetes version.",
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError("is not an AWS region name such as us-west-2")
        return value

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, value: str | None) -> str | None:
        if value is not None and not _EKS_CLUSTER_NAME.match(value):
            raise ValueError(
                "is not a valid EKS cluster name: 1-100 letters, digits, '-' or '_', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        problems: list[str] = []
        if not self.worker_groups:
            problems.append(
                "workerGroups: no worker group is configured; add at least one, e.g. "
                "[{name: cpu-workers, instanceType: m6i.2xlarge}]"
            )
        if self.cluster_type == "eks" and self.cluster_name is None:
            problems.append(
                "clusterName: is required for clusterType eks. Fix: pulumi config set ray-on-eks:clusterName <name>"
            )
        if self.cluster_type == "hyperpod":
            if self.hyperpod is None:
                problems.append(
                    "hyperpod: clusterType is hyperpod but the hyperpod block is missing; set "
                    "hyperpod.clusterArn (aws sagemaker describe-cluster --cluster-name <name> --query ClusterArn)"
                )
            elif self.hyperpod.region != self.region:
                problems.append(
                    f"hyperpod.clusterArn: the cluster is in {self.hyperpod.region} but aws:region is {self.region}; "
                    "set aws:region (and aws-native:region) to the cluster's region"
                )
            if self.create_cluster:
                problems.append(
                    "createCluster: true cannot be combined with clusterType hyperpod; create the HyperPod "
                    "cluster with SageMaker first, or use clusterType eks"
                )
        elif self.cluster_type == "eks" and self.hyperpod is not None:
            problems.append(
                "hyperpod: is set but clusterType is eks; remove the hyperpod block or set clusterType"
            )
        problems += self._target_problems()
        for index, group in enumerate(self.worker_groups):
            if self.cluster_type == "kubernetes":
                continue  # any node label value; pods are placed by nodeSelector / instanceType as given
            if group.instance_type is None:
                problems.append(
                    f"workerGroups[{index}].instanceType: is required for clusterType {self.cluster_type} "
                    "(e.g. m6i.2xlarge, or ml.m5.2xlarge on HyperPod)"
                )
                continue
            if not _INSTANCE_TYPE.match(group.instance_type):
                problems.append(
                    f"workerGroups[{index}].instanceType: {group.instance_type!r} is not an EC2 instance type "
                    "such as g5.2xlarge (or ml.g5.8xlarge on HyperPod)"
                )
                continue
            on_hyperpod = group.instance_type.startswith("ml.")
            if self.cluster_type == "hyperpod" and not on_hyperpod:
                problems.append(
                    f"workerGroups[{index}].instanceType: {group.instance_type!r} is not a HyperPod instance "
                    f"type; HyperPod nodes are ml.* (e.g. ml.{group.instance_type})"
                )
            if self.cluster_type == "eks" and on_hyperpod:
                problems.append(
                    f"workerGroups[{index}].instanceType: {group.instance_type!r} is a SageMaker instance type; "
                    f"on EKS use the EC2 name ({group.instance_type.removeprefix('ml.')})"
                )
        problems += self._ray_cluster_problems()
        problems += self._image_problems()
        problems += _duplicates("workerGroups", [g.name for g in self.worker_groups])
        problems += _duplicates("rayJobs", [j.name for j in self.ray_jobs])
        problems += _duplicates("rayServices", [s.name for s in self.ray_services])
        if self.monitoring.enabled and self.monitoring.namespace in (self.namespace, self.kuberay.namespace):
            problems.append(
                f"monitoring.namespace: {self.monitoring.namespace!r} is also the Ray or KubeRay namespace; the "
                "monitoring stack creates and owns its namespace, so pick another one (default: monitoring)"
            )
        if self.manage_pod_identity_agent and self.iam_mode != "pod-identity":
            problems.append(
                "managePodIdentityAgent: is true but iamMode is irsa, which does not use the agent; "
                "set managePodIdentityAgent: false or iamMode: pod-identity"
            )
        if self.pod_identity_agent_version is not None and not self.manage_pod_identity_agent:
            problems.append(
                f"podIdentityAgentVersion: {self.pod_identity_agent_version!r} is set but managePodIdentityAgent "
                "is false, so the stack installs no agent; remove podIdentityAgentVersion or set "
                "managePodIdentityAgent: true"
            )
        if self.fsx.enabled:
            problems += _driver_problems("fsx", self.fsx.driver, self.fsx.driver_version)
        if self.s3.enabled:
            problems += _driver_problems("s3", self.s3.driver, self.s3.driver_version)
        if self.manage_pod_identity_agent and self.create_cluster:
            problems.append(
                "managePodIdentityAgent: createCluster makes an EKS Auto Mode cluster, which runs the Pod Identity "
                "agent itself; set managePodIdentityAgent: false"
            )
        if self.create_cluster:
            problems += self._capacity_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _capacity_problems(self) -> list[str]:
        """createCluster: every Ray pod must select nodes one of the new cluster's NodePools launches."""
        pods = [
            PodPlacement(
                key=f"workerGroups[{index}].instanceType",
                instance_type=group.instance_type,
                gpus=group.gpus,
                node_selector=group.node_selector,
                tolerates_gpu_taint=group.gpus > 0 or any(t.key == GPU_TAINT_KEY for t in group.tolerations),
            )
            for index, group in enumerate(self.worker_groups)
        ]
        # The head has no GPU and tolerates no taint; unpinned, it may also use the built-in
        # general-purpose pool, so only a pinned head is checked.
        if self.head.instance_type:
            pods.append(
                PodPlacement(
                    key="head.instanceType",
                    instance_type=self.head.instance_type,
                    gpus=0,
                    node_selector={},
                    tolerates_gpu_taint=False,
                )
            )
        return nodepool_problems(self.new_cluster.pools(), pods)

    def _target_problems(self) -> list[str]:
        """Keys that only one kind of target takes: AWS keys on EKS/HyperPod, kubeconfig and storage
        class on clusterType kubernetes (which makes no AWS call at all)."""
        kind = self.cluster_type
        if kind != "kubernetes":
            problems: list[str] = []
            if not self.region:
                problems.append(
                    f"aws:region: is required for clusterType {kind}. Fix: pulumi config set aws:region <value>"
                )
            if self.kubernetes is not None:
                problems.append(
                    f"kubernetes: is only for clusterType kubernetes, not {kind} (EKS is reached through "
                    "clusterName and aws:region); remove the kubernetes block"
                )
            if self.storage.storage_class is not None:
                problems.append(
                    f"storage.storageClass: is only for clusterType kubernetes; on {kind} shared storage is "
                    "fsx or s3, remove storage"
                )
            return problems
        aws_only: list[tuple[str, bool, str]] = [
            ("aws:region", bool(self.region), "pulumi config rm aws:region"),
            (
                "clusterName",
                bool(self.cluster_name),
                "the cluster is the kubeconfig context (kubernetes.context)",
            ),
            ("createCluster", self.create_cluster, "create the cluster yourself (kind create cluster)"),
            ("newCluster", "new_cluster" in self.model_fields_set, "remove newCluster"),
            ("hyperpod", self.hyperpod is not None, "remove the hyperpod block"),
            ("fsx.enabled", self.fsx.enabled, "shared storage on any cluster: storage.storageClass"),
            ("s3.enabled", self.s3.enabled, "shared storage on any cluster: storage.storageClass"),
            # Pulumi.yaml's default (pod-identity) reaches every stack, so only a changed value counts.
            ("iamMode", self.iam_mode != "pod-identity", "no AWS credentials are handed to pods"),
            ("managePodIdentityAgent", self.manage_pod_identity_agent, "remove managePodIdentityAgent"),
            (
                "ecrRepository.enabled",
                self.ecr_repository.enabled,
                "pin images from any registry by digest with rayImages",
            ),
            ("buildImages", self.build_images, "build and push with images.yml, then set rayImages"),
        ]
        aws_only += [
            (f"workerGroups[{index}].efaDevices", group.efa_devices > 0, "EFA exists only on AWS; set 0")
            for index, group in enumerate(self.worker_groups)
        ]
        return [
            f"{key}: is AWS-only and clusterType is kubernetes; {fix}"
            for key, is_set, fix in aws_only
            if is_set
        ]

    def _image_problems(self) -> list[str]:
        """Rules across rayImages, ecrRepository, buildImages and runtimePip."""
        problems: list[str] = []
        configured = self.ray_images.as_mapping()
        if self.build_images and not self.ecr_repository.enabled:
            problems.append(
                "buildImages: true pushes the images to the stack's ECR repository, which is off; set "
                "ecrRepository.enabled: true"
            )
        if self.build_images and configured:
            problems.append(
                f"rayImages: {', '.join(sorted(configured))} is set and buildImages is true; use one source "
                "of workload images: remove rayImages or set buildImages: false"
            )
        flavours = stack_flavours(group.gpus for group in self.worker_groups)
        images: dict[str, str] = dict.fromkeys(flavours, "built") if self.build_images else configured
        # Own code (rayJobs[].code / rayServices[].code) brings no catalog pip packages.
        workloads = [job.workload for job in self.ray_jobs if job.workload is not None]
        workloads += [svc.workload or "serve" for svc in self.ray_services if svc.code is None]
        needs_pip = sorted({name for name in workloads if WORKLOADS[name].pip})
        if self.runtime_pip is False and needs_pip and uses_stock_image(flavours, images):
            missing = [flavour for flavour in flavours if flavour not in images]
            problems.append(
                f"runtimePip: false but workloads {', '.join(needs_pip)} need packages the stock image lacks "
                f"and rayImages.{'/'.join(missing)} is not set; set rayImages (or buildImages: true), or "
                "remove runtimePip"
            )
        return problems

    def _ray_cluster_problems(self) -> list[str]:
        """Rules of the RayCluster / RayJob / RayService section that span several keys."""
        problems: list[str] = []
        if len(self.ray_cluster_name) > 50:
            # KubeRay shortens longer names (utils.CheckName), so the head Service and the token
            # Secret would not be called what the stack outputs say.
            problems.append(
                f"rayClusterName: {self.ray_cluster_name!r} is {len(self.ray_cluster_name)} characters; "
                "KubeRay truncates names over 50, use at most 50"
            )
        for index, job in enumerate(self.ray_jobs):
            # KubeRay v1.7.0 ValidateRayJobSpec: "BackoffLimit is incompatible with ClusterSelector mode";
            # the RayJob would be stored, then marked ValidationFailed without ever running.
            if job.cluster == "shared" and job.backoff_limit > 0:
                problems.append(
                    f"rayJobs[{index}].backoffLimit: {job.backoff_limit} cannot be used with cluster: shared "
                    "(KubeRay refuses retries of a job on an existing cluster and never runs it); set "
                    "backoffLimit: 0, or cluster: ephemeral to retry each attempt on a fresh cluster"
                )
        head_type = self.head.instance_type
        if self.cluster_type == "hyperpod" and not (head_type or "").startswith("ml."):
            problems.append(
                f"head.instanceType: {head_type!r} on HyperPod the head must be pinned to a HyperPod "
                "instance type (ml.*, e.g. ml.m5.2xlarge) like every other Ray pod"
            )
        if self.cluster_type == "eks" and head_type and head_type.startswith("ml."):
            problems.append(
                f"head.instanceType: {head_type!r} is a SageMaker instance type; on EKS use the EC2 name "
                f"({head_type.removeprefix('ml.')})"
            )
        return problems


def _duplicates(key: str, names: list[str]) -> list[str]:
    dupes = sorted({name for name in names if names.count(name) > 1})
    return [f"{key}: name {name!r} is used more than once; names must be unique" for name in dupes]


# --------------------------------------------------------------------------------------------------
# Reading and error reporting
# --------------------------------------------------------------------------------------------------


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. Pulumi prints the message without a Python traceback."""


_EXPECTATIONS = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
    "tuple_type": "a list",
    "list_type": "a list",
}


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-after", "tagged-union"):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def _qualified(path: str) -> str:
    return "aws:region" if path == "region" else f"{PROJECT}:{path}"


def _format_error(error: Any) -> str:
    loc = tuple(error["loc"])
    path = _key_path(loc)
    key = _qualified(path) if path else PROJECT
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return f"{key}: is required but not set. Fix: pulumi config set {key} <value>"
    if kind == "extra_forbidden":
        return f"{key}: unknown key. Fix: remove it or correct its spelling (see the config reference in README.md)"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
    if kind in _EXPECTATIONS:
        return f"{key}: got {shown}, expected {_EXPECTATIONS[kind]}. Fix: set {key} to {_EXPECTATIONS[kind]}"
    if kind == "value_error" and isinstance(value, dict):
        if not path:
            # Whole-stack cross-field problems: one per line, each starting with its own key.
            return "\n  - ".join(
                part if part.startswith("aws:") else f"{PROJECT}:{part}" for part in message.split("\n")
            )
        return f"{key}: {message}"
    return f"{key}: got {shown}: {message}"


def parse_stack_config(values: Mapping[str, Any]) -> StackConfig:
    """Validate raw config (camelCase keys, as in the stack file, plus ``region``) into a StackConfig.

    Pure: no Pulumi runtime needed. Raises :class:`ConfigError` listing every problem.
    """
    try:
        return StackConfig.model_validate(dict(values))
    except ValidationError as exc:
        lines = [_format_error(err) for err in exc.errors(include_url=False)]
        raise ConfigError("Invalid stack configuration:\n  - " + "\n  - ".join(lines)) from None


def _decode(value: str) -> Any:
    """Structured keys arrive as JSON text from the engine; scalars stay strings (pydantic coerces)."""
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"value {stripped[:60]!r} is not valid JSON/YAML structure: {exc}") from None
    return value


def parse_engine_config(engine: Mapping[str, str]) -> StackConfig:
    """Validate the engine's config map (``{"ray-on-eks:key": "text", "aws:region": ...}``).

    Pure: what :func:`load_stack_config` does with the running stack's config, callable without the
    engine (the fuzz tests feed it random maps). Raises :class:`ConfigError` for every problem.
    """
    known = {field.alias or name for name, field in StackConfig.model_fields.items()} - {"region"}
    unknown = sorted(
        key.split(":", 1)[1]
        for key in engine
        if key.startswith(f"{PROJECT}:") and key.split(":", 1)[1] not in known
    )
    if unknown:
        raise ConfigError(
            "Invalid stack configuration:\n  - "
            + "\n  - ".join(
                f"{PROJECT}:{key}: unknown key. Fix: remove it or correct its spelling "
                f"(known keys: {', '.join(sorted(known))})"
                for key in unknown
            )
        )
    raw: dict[str, Any] = {}
    for key in known:
        value = engine.get(f"{PROJECT}:{key}")
        if value is not None:
            try:
                raw[key] = _decode(value)
            except ConfigError as exc:
                raise ConfigError(f"Invalid stack configuration:\n  - {PROJECT}:{key}: {exc}") from None
    region = engine.get("aws:region")
    if region is not None:
        raw["region"] = region
    config = parse_stack_config(raw)
    native_region = engine.get("aws-native:region")
    if config.cluster_type == "hyperpod" and native_region != config.region:
        # The HyperPod lookup runs on pulumi-aws-native, whose provider reads only aws-native:region
        # (pulumi-aws-native provider/pkg/provider/provider.go, Configure).
        raise ConfigError(
            f"Invalid stack configuration:\n  - aws-native:region: is {native_region or 'unset'} but aws:region is "
            f"{config.region}; the HyperPod cluster lookup uses it. Fix: pulumi config set aws-native:region "
            f"{config.region}"
        )
    return config


def load_stack_config() -> StackConfig:
    """Read every project key from the running stack once and validate it."""
    from pulumi.runtime.config import CONFIG  # the engine's full key map, to catch misspelt keys

    return parse_engine_config(dict(CONFIG.get()))

"""What a SageMaker HyperPod cluster offers, and whether the configured Ray pods fit on it.

HyperPod users own fixed instance groups: a worker group asking for an instance type the cluster does
not have, or for more pods than its nodes hold, would sit ``Pending`` forever after a "successful"
``pulumi up``. So the program reads the cluster (components/hyperpod.py) and checks here, before any
resource exists, that every Ray pod has somewhere to run.

Pure: plain mappings in (the HyperPod description and EC2 instance-type facts as the invokes return
them), dataclasses and problem strings out. No Pulumi resources, no invokes.

Allocatable capacity of a node = the instance's vCPUs / memory / devices minus a system reserve:

* kube-reserved as the EKS AMIs compute it (awslabs/amazon-eks-ami, nodeadm/internal/kubelet/config.go):
  CPU 6% of the first core, 1% of the second, 0.5% of cores 3-4, 0.25% of the rest; memory
  ``11 MiB x maxPods + 255 MiB`` with maxPods 110 below 30 vCPUs and 250 from 30 vCPUs up;
* the kubelet's hard eviction threshold, ``memory.available<100Mi``;
* a DaemonSet allowance of 1 vCPU and 2 GiB for what runs on every HyperPod node (the HyperPod
  health-monitoring agent, VPC CNI, kube-proxy, NVIDIA / Neuron / EFA device plugins, CSI node
  drivers, node exporter);
* on EFA-capable instances, the 5128 2-MiB huge pages the EFA driver pre-allocates (Amazon EKS user
  guide, "Run machine learning training on Amazon EKS with Elastic Fabric Adapter"): they leave
  ``memory`` and are offered as ``hugepages-2Mi``.

EFA capacity is the instance type's maximum number of EFA interfaces (HyperPod attaches EFA to
every network card of EFA-capable types); GPUs and Neuron devices are all offered by their plugins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.config import HeadConfig, WorkerGroupConfig, cpu_cores, memory_bytes

MIB = 2**20
DAEMONSET_CPU_MILLIS = 1000
DAEMONSET_MEMORY_MIB = 2048
EVICTION_MEMORY_MIB = 100
EFA_HUGEPAGES_MIB = 5128 * 2
# Cluster states in which the instance groups are not there to run pods.
UNUSABLE_STATES = ("Failed", "Deleting")


class HyperPodLookupError(ValueError):
    """The HyperPod cluster cannot host this stack (not EKS-orchestrated, failed, deleting)."""


@dataclass(frozen=True, kw_only=True)
class InstanceGroup:
    """One HyperPod instance group: its name, ``ml.*`` instance type and current node count."""

    name: str
    instance_type: str
    count: int


@dataclass(frozen=True, kw_only=True)
class HyperPodCluster:
    """The facts this stack needs from a HyperPod cluster's description."""

    arn: str
    name: str
    status: str
    eks_cluster_arn: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    instance_groups: tuple[InstanceGroup, ...]

    @property
    def eks_cluster_name(self) -> str:
        """The orchestrator's name: the last part of ``arn:aws:eks:<region>:<account>:cluster/<name>``."""
        return self.eks_cluster_arn.rsplit("/", 1)[-1]

    def nodes_of(self, instance_type: str) -> int:
        return sum(g.count for g in self.instance_groups if g.instance_type == instance_type)

    def describe_groups(self) -> str:
        return ", ".join(f"{g.name} ({g.instance_type} x {g.count})" for g in self.instance_groups) or "none"


def parse_hyperpod_description(arn: str, raw: Mapping[str, Any]) -> HyperPodCluster:
    """The HyperPod cluster from the Cloud Control model ``aws-native:sagemaker:getCluster`` returns.

    Keys are the provider's camelCase (pulumi-aws-native ``naming.CfnToSdk`` of the
    AWS::SageMaker::Cluster model: clusterName, clusterStatus, orchestrator.eks.clusterArn,
    vpcConfig.{subnets,securityGroupIds}, instanceGroups[].{instanceGroupName,instanceType,
    currentCount,instanceCount}). Raises :class:`HyperPodLookupError` with one line naming the fix.
    """
    name = str(raw.get("clusterName") or arn.rsplit("/", 1)[-1])
    eks = ((raw.get("orchestrator") or {}).get("eks") or {}).get("clusterArn")
    if not eks:
        raise HyperPodLookupError(
            f"hyperpod.clusterArn: HyperPod cluster {name!r} is not orchestrated by Amazon EKS (Slurm?); "
            "Ray on this stack needs an EKS-orchestrated HyperPod cluster"
        )
    status = str(raw.get("clusterStatus") or "")
    if status in UNUSABLE_STATES:
        raise HyperPodLookupError(
            f"hyperpod.clusterArn: HyperPod cluster {name!r} is {status}; fix or recreate it "
            f"(aws sagemaker describe-cluster --cluster-name {name} shows why) before deploying Ray"
        )
    vpc = raw.get("vpcConfig") or {}
    groups = tuple(
        InstanceGroup(
            name=str(group.get("instanceGroupName")),
            instance_type=str(group.get("instanceType")),
            # CurrentCount: the nodes there now; InstanceCount is only the target.
            count=int(group.get("currentCount", group.get("instanceCount", 0)) or 0),
        )
        for group in raw.get("instanceGroups") or ()
    )
    return HyperPodCluster(
        arn=arn,
        name=name,
        status=status,
        eks_cluster_arn=str(eks),
        subnet_ids=tuple(vpc.get("subnets") or ()),
        security_group_ids=tuple(vpc.get("securityGroupIds") or ()),
        instance_groups=groups,
    )


def fsx_network(
    cluster: HyperPodCluster, subnet_id: str | None, security_group_ids: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    """Subnet and security groups for FSx on HyperPod: the explicit overrides, else the cluster's own.

    FSx for Lustre lives in one subnet: the cluster's first one (HyperPod nodes get their ENIs
    there); the Lustre rules go on the groups of the HyperPod nodes, not on the EKS cluster's group.
    """
    if subnet_id is None and not cluster.subnet_ids:
        raise HyperPodLookupError(
            f"hyperpod.subnetId: HyperPod cluster {cluster.name!r} reports no VPC subnets; set hyperpod.subnetId"
        )
    if not security_group_ids and not cluster.security_group_ids:
        raise HyperPodLookupError(
            f"hyperpod.securityGroupIds: HyperPod cluster {cluster.name!r} reports no security groups; "
            "set hyperpod.securityGroupIds"
        )
    return (
        subnet_id or cluster.subnet_ids[0],
        tuple(security_group_ids) or cluster.security_group_ids,
    )


# --------------------------------------------------------------------------------------------------
# Node capacity
# --------------------------------------------------------------------------------------------------


def ec2_instance_type(instance_type: str) -> str:
    """The EC2 type behind a SageMaker one: ``ml.g5.12xlarge`` -> ``g5.12xlarge``."""
    return instance_type.removeprefix("ml.")


@dataclass(frozen=True, kw_only=True)
class Resources:
    """An amount of schedulable resources (a pod's requests, or a node's allocatable)."""

    cpu_millis: int = 0
    memory_mib: int = 0
    gpus: int = 0
    efa: int = 0
    neuron: int = 0
    hugepages_mib: int = 0

    def fits_in(self, other: Resources) -> bool:
        return all(getattr(self, key) <= getattr(other, key) for key in _KEYS)

    def minus(self, other: Resources) -> Resources:
        return Resources(**{key: getattr(self, key) - getattr(other, key) for key in _KEYS})

    def short_of(self, other: Resources) -> list[str]:
        """The resources of ``self`` that exceed ``other``."""
        return [_LABELS[key] for key in _KEYS if getattr(self, key) > getattr(other, key)]

    def describe(self) -> str:
        parts = [f"cpu {self.cpu_millis / 1000:g}", f"memory {self.memory_mib}Mi"]
        parts += [f"{_LABELS[key]} {getattr(self, key)}" for key in _KEYS[2:] if getattr(self, key)]
        return ", ".join(parts)


_KEYS = ("cpu_millis", "memory_mib", "gpus", "efa", "neuron", "hugepages_mib")
_LABELS = {
    "cpu_millis": "cpu",
    "memory_mib": "memory",
    "gpus": "GPUs",
    "efa": "EFA devices",
    "neuron": "Neuron devices",
    "hugepages_mib": "hugepages-2Mi (Mi)",
}


def kube_reserved_cpu_millis(vcpus: int) -> int:
    """EKS AMI kube-reserved CPU: 6% / 1% / 0.5% / 0.25% of the successive core ranges."""
    total = vcpus * 1000
    reserved = 0.0
    for low, high, share in ((0, 1000, 0.06), (1000, 2000, 0.01), (2000, 4000, 0.005), (4000, total, 0.0025)):
        if total > low:
            reserved += (min(total, high) - low) * share
    return int(reserved)


def max_pods(vcpus: int) -> int:
    """EKS AMI default maxPods cap: 110 below 30 vCPUs, 250 from 30 up."""
    return 110 if vcpus < 30 else 250


def node_allocatable(raw: Mapping[str, Any]) -> Resources:
    """Allocatable resources of one node from ``aws:ec2/getInstanceType`` results, minus the reserve."""
    vcpus = int(raw.get("defaultVcpus") or 0)
    memory = int(raw.get("memorySize") or 0)
    efa = int(raw.get("efaMaximumInterfaces") or 0) if raw.get("efaSupported") else 0
    hugepages = EFA_HUGEPAGES_MIB if efa else 0
    reserved_memory = (11 * max_pods(vcpus) + 255) + EVICTION_MEMORY_MIB + DAEMONSET_MEMORY_MIB + hugepages
    return Resources(
        cpu_millis=max(vcpus * 1000 - kube_reserved_cpu_millis(vcpus) - DAEMONSET_CPU_MILLIS, 0),
        memory_mib=max(memory - reserved_memory, 0),
        gpus=sum(int(g.get("count") or 0) for g in raw.get("gpuses") or ()),
        efa=efa,
        neuron=sum(int(d.get("count") or 0) for d in raw.get("neuronDevices") or ()),
        hugepages_mib=hugepages,
    )


# --------------------------------------------------------------------------------------------------
# Fit check
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PodSet:
    """``count`` identical pods of one Ray group, pinned to ``instance_type`` (None: anywhere)."""

    key: str  # config key, e.g. "workerGroups[0]" or "head"
    label: str  # e.g. "worker group 'gpu-workers'"
    instance_type: str | None
    count: int
    per_pod: Resources
    why: str  # how count was reached, e.g. "2 Ray clusters x 2 replicas"


def _millis(cpu: str) -> int:
    return round(cpu_cores(cpu) * 1000)


def _ceil_mib(quantity_bytes: float) -> int:
    return int(-(-quantity_bytes // MIB))


def ray_pod_sets(
    *,
    head: HeadConfig,
    worker_groups: Sequence[WorkerGroupConfig],
    autoscaler_enabled: bool,
    autoscaler_resources: Resources,
    clusters: int,
) -> list[PodSet]:
    """The pods of ``clusters`` Ray clusters of one shape (the stack's RayCluster, every ephemeral
    RayJob cluster and every RayService cluster share it and run at the same time).

    Workers count ``maxReplicas`` with the autoscaler on (it may scale up to them), else ``replicas``.
    """
    head_pod = Resources(cpu_millis=_millis(head.cpu), memory_mib=_ceil_mib(memory_bytes(head.memory)))
    if autoscaler_enabled:
        head_pod = Resources(
            cpu_millis=head_pod.cpu_millis + autoscaler_resources.cpu_millis,
            memory_mib=head_pod.memory_mib + autoscaler_resources.memory_mib,
        )
    plural = "s" if clusters > 1 else ""
    sets = [
        PodSet(
            key="head",
            label="the head",
            instance_type=head.instance_type,
            count=clusters,
            per_pod=head_pod,
            why=f"{clusters} Ray cluster{plural}",
        )
    ]
    for index, group in enumerate(worker_groups):
        replicas = group.max_replicas if autoscaler_enabled else group.replicas
        sets.append(
            PodSet(
                key=f"workerGroups[{index}]",
                label=f"worker group {group.name!r}",
                instance_type=group.instance_type,
                count=clusters * replicas,
                per_pod=Resources(
                    cpu_millis=_millis(group.cpu),
                    memory_mib=_ceil_mib(memory_bytes(group.memory)),
                    gpus=group.gpus,
                    efa=group.efa_devices,
                    neuron=group.neuron_devices,
                    hugepages_mib=_ceil_mib(memory_bytes(group.efa_hugepages)) if group.efa_devices else 0,
                ),
                why=(
                    f"{clusters} Ray cluster{plural} x {replicas} "
                    f"{'maxReplicas' if autoscaler_enabled else 'replicas'}"
                ),
            )
        )
    return sets


def fit_problems(
    pod_sets: Iterable[PodSet], cluster: HyperPodCluster, allocatable: Mapping[str, Resources]
) -> list[str]:
    """Every reason the pods cannot all run on ``cluster``; empty when they fit.

    ``allocatable`` maps each ``ml.*`` instance type of the cluster to one node's allocatable
    resources. Pods pinned to an instance type are packed first-fit-decreasing onto that type's nodes;
    an unpinned pod only needs one instance type it fits on.
    """
    problems: list[str] = []
    by_type: dict[str, list[PodSet]] = {}
    for pods in pod_sets:
        if pods.count == 0:
            continue
        where = pods.instance_type
        if where is None:
            if not any(pods.per_pod.fits_in(node) for node in allocatable.values()):
                problems.append(
                    f"{pods.key}: one pod of {pods.label} asks for {pods.per_pod.describe()} and no instance "
                    f"group of HyperPod cluster {cluster.name!r} can hold it ({cluster.describe_groups()})"
                )
            continue
        key = f"{pods.key}.instanceType"
        if cluster.nodes_of(where) == 0 or where not in allocatable:
            problems.append(
                f"{key}: {where} is not an instance type of HyperPod cluster {cluster.name!r} with nodes; its "
                f"instance groups: {cluster.describe_groups()}. Use one of those types"
            )
            continue
        node = allocatable[where]
        if not pods.per_pod.fits_in(node):
            problems.append(
                f"{pods.key}: one pod of {pods.label} asks for {pods.per_pod.describe()}, more "
                f"{' and '.join(pods.per_pod.short_of(node))} than one {where} node offers "
                f"({node.describe()} after the system reserve); shrink the pod or use a larger instance type"
            )
            continue
        by_type.setdefault(where, []).append(pods)
    for where, sets in by_type.items():
        problems += _pack(where, sets, cluster, allocatable[where])
    return problems


def _pack(where: str, sets: list[PodSet], cluster: HyperPodCluster, node: Resources) -> list[str]:
    """First-fit decreasing of every pod pinned to ``where`` onto its nodes."""
    nodes = [node] * cluster.nodes_of(where)
    order = sorted(
        sets,
        key=lambda s: (s.per_pod.gpus, s.per_pod.neuron, s.per_pod.cpu_millis, s.per_pod.memory_mib),
        reverse=True,
    )
    for pods in order:
        for placed in range(pods.count):
            slot = next((i for i, free in enumerate(nodes) if pods.per_pod.fits_in(free)), None)
            if slot is None:
                others = [s.label for s in order if s is not pods]
                beside = f" beside {', '.join(others)}" if others else ""
                groups = ", ".join(g.name for g in cluster.instance_groups if g.instance_type == where)
                return [
                    f"{pods.key}: {pods.count} pods of {pods.label} ({pods.why}, each "
                    f"{pods.per_pod.describe()}) do not fit on the {len(nodes)} {where} nodes of HyperPod "
                    f"cluster {cluster.name!r} (instance group {groups}){beside}: only {placed} do. Lower "
                    "replicas/maxReplicas or the pod size, or grow the instance group"
                ]
            nodes[slot] = nodes[slot].minus(pods.per_pod)
    return []

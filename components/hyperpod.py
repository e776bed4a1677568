"""Read a SageMaker HyperPod cluster and its instance types before any resource is registered.

Both lookups are *plain* (synchronous) invokes: the program blocks on them at evaluation time, so a
missing cluster, a Slurm-orchestrated one or a Ray shape that cannot fit fails as a one-line
:class:`~components.config.ConfigError` before ``__main__.py`` registers its first resource (an
``*_output`` invoke would resolve only after resources had been registered). Invokes run in
``pulumi preview`` too, so a PR preview reports the same errors.

* The HyperPod cluster: ``aws-native:sagemaker:getCluster`` (Cloud Control ``GetResource`` of
  AWS::SageMaker::Cluster; its only identifier is the cluster ARN). The typed
  ``pulumi_aws_native.sagemaker.get_cluster`` result drops create-only properties (pulumi-aws-native
  provider/pkg/schema/gen.go leaves createOnlyProperties out of function outputs), among them
  ``VpcConfig`` and ``ClusterName``; the provider's invoke itself returns the whole Cloud Control
  model (provider/pkg/provider/provider.go ``getInvokeFunc``), so the untyped result is read here.
  A cluster that does not exist makes the provider fail the invoke ("resource not found").
* Instance capacities: ``aws.ec2.get_instance_type`` for the EC2 type behind each ``ml.*`` type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi_aws_native import _utilities as aws_native_utilities

from components.builders.hyperpod import (
    MIB,
    HyperPodCluster,
    HyperPodLookupError,
    Resources,
    ec2_instance_type,
    fit_problems,
    fsx_network,
    node_allocatable,
    parse_hyperpod_description,
    ray_pod_sets,
)
from components.builders.ray import AUTOSCALER_RESOURCES
from components.config import ConfigError, StackConfig, cpu_cores, memory_bytes

GET_CLUSTER = "aws-native:sagemaker:getCluster"


def _config_error(line: str) -> ConfigError:
    return ConfigError(f"Invalid stack configuration:\n  - ray-on-eks:{line}")


def _invoke_opts() -> pulumi.InvokeOptions:
    # The defaults the generated pulumi_aws_native functions pass (plugin version and download URL).
    return pulumi.InvokeOptions.merge(aws_native_utilities.get_invoke_opts_defaults(), None)


def describe_hyperpod_cluster(cluster_arn: str) -> HyperPodCluster:
    """The HyperPod cluster behind ``cluster_arn``; a :class:`ConfigError` when it cannot host Ray."""
    try:
        raw: Mapping[str, Any] = (
            pulumi.runtime.invoke(GET_CLUSTER, {"clusterArn": cluster_arn}, opts=_invoke_opts()).value or {}
        )
    except Exception as exc:  # the engine reports a failed invoke as a plain Exception
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _config_error(
            f"hyperpod.clusterArn: cannot read HyperPod cluster {cluster_arn} ({reason}); check the ARN and "
            "region with aws sagemaker describe-cluster --cluster-name <name> --query ClusterArn"
        ) from None
    try:
        return parse_hyperpod_description(cluster_arn, raw)
    except HyperPodLookupError as exc:
        raise _config_error(str(exc)) from None


def instance_allocatable(instance_types: Iterable[str]) -> dict[str, Resources]:
    """One node's allocatable resources for each ``ml.*`` (or EC2) instance type."""
    result: dict[str, Resources] = {}
    for instance_type in sorted(set(instance_types)):
        try:
            facts = aws.ec2.get_instance_type(instance_type=ec2_instance_type(instance_type))
        except Exception as exc:  # e.g. an ml.* type with no EC2 twin in this region
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _config_error(
                f"hyperpod.clusterArn: cannot read the capacity of instance type {instance_type} "
                f"({reason}); check the HyperPod cluster's instance groups"
            ) from None
        raw = {
            "defaultVcpus": facts.default_vcpus,
            "memorySize": facts.memory_size,
            "gpuses": [{"count": g.count} for g in facts.gpuses or ()],
            "efaSupported": facts.efa_supported,
            "efaMaximumInterfaces": facts.efa_maximum_interfaces,
            "neuronDevices": [{"count": d.count} for d in facts.neuron_devices or ()],
        }
        result[instance_type] = node_allocatable(raw)
    return result


@dataclass(frozen=True, kw_only=True)
class HyperPodTarget:
    """The described HyperPod cluster and where FSx for Lustre goes on it."""

    cluster: HyperPodCluster
    fsx_subnet_id: str
    fsx_security_group_ids: tuple[str, ...]


def lookup_hyperpod(config: StackConfig) -> HyperPodTarget:
    """Describe the configured HyperPod cluster and check that the Ray shape fits on it.

    Raises :class:`ConfigError` (every problem, one line each) before any resource is registered.
    """
    assert config.hyperpod is not None
    cluster = describe_hyperpod_cluster(config.hyperpod.cluster_arn)
    problems: list[str] = []
    if config.cluster_name is not None and config.cluster_name != cluster.eks_cluster_name:
        problems.append(
            f"clusterName: {config.cluster_name!r} is not the EKS cluster that orchestrates HyperPod cluster "
            f"{cluster.name!r} ({cluster.eks_cluster_name!r}); remove clusterName (it is looked up) or fix it"
        )
    try:
        subnet, groups = fsx_network(cluster, config.hyperpod.subnet_id, config.hyperpod.security_group_ids)
    except HyperPodLookupError as exc:
        if config.fsx.enabled and config.fsx.mode == "dynamic":
            problems.append(str(exc))
        subnet, groups = "", ()
    # Every Ray cluster of the stack shares one shape and runs at the same time: the RayCluster,
    # each ephemeral RayJob's cluster and each RayService's cluster.
    clusters = 1 + sum(job.cluster == "ephemeral" for job in config.ray_jobs) + len(config.ray_services)
    pod_sets = ray_pod_sets(
        head=config.head,
        worker_groups=config.worker_groups,
        autoscaler_enabled=config.autoscaler.enabled,
        autoscaler_resources=Resources(
            cpu_millis=round(cpu_cores(AUTOSCALER_RESOURCES["cpu"]) * 1000),
            memory_mib=int(memory_bytes(AUTOSCALER_RESOURCES["memory"]) // MIB),
        ),
        clusters=clusters,
    )
    types = {g.instance_type for g in cluster.instance_groups if g.count > 0}
    problems += fit_problems(pod_sets, cluster, instance_allocatable(types))
    if problems:
        raise ConfigError(
            "Invalid stack configuration:\n  - " + "\n  - ".join(f"ray-on-eks:{line}" for line in problems)
        )
    return HyperPodTarget(cluster=cluster, fsx_subnet_id=subnet, fsx_security_group_ids=groups)

"""KubeRay manifests: RayCluster, RayJob and RayService documents, and the workload ConfigMap data.

Pure: validated config models and plain values in, plain dicts out; no Pulumi resources. The one
exception to "plain" is ``head_env``: its values may be ``pulumi.Input[str]`` (e.g. the Grafana host
from the monitoring component); they are placed in the document untouched and Pulumi resolves them.

One cluster-spec builder (:func:`build_ray_cluster_spec`) serves the stack's RayCluster, every
ephemeral RayJob cluster and every RayService cluster, so all Ray pods share the same security
context, image, mounts and environment. ``tests/components/builders/test_ray.py`` and the schema tests
validate every document against the real KubeRay v1.7.0 CRDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components import contract
from components.builders.images import build_pre_pull_daemon_set, flavour_of, resolve_ray_image
from components.builders.network_policy import SUBMITTER_LABEL, SUBMITTER_VALUE
from components.builders.placement import GPU_TAINT_KEY, node_selector_for
from components.config import (
    AutoscalerConfig,
    GcsFaultToleranceConfig,
    HeadConfig,
    RayJobConfig,
    RayServiceConfig,
    SecretKeyRef,
    WorkerGroupConfig,
)
from components.versions import KUBECTL_IMAGE, RAY_IMAGE_REPOSITORY, RAY_VERSION
from workloads.catalog import CODE_ROOT, WORKLOADS_MOUNT_PATH, Workload, get_workload, workload_env
from workloads.serve_ingress import ray_service_env

API_VERSION = "ray.io/v1"
# The rayproject/ray images run as user "ray" (uid 1000, primary group "users", gid 100).
RAY_UID = 1000
RAY_GID = 100
EFA_RESOURCE = "vpc.amazonaws.com/efa"
GPU_RESOURCE = "nvidia.com/gpu"
# Trainium / Inferentia devices as the Neuron device plugin advertises them (Amazon EKS user guide,
# "Manage Neuron devices on Amazon EKS"; HyperPod installs the plugin with its Helm chart,
# aws/sagemaker-hyperpod-cli helm_chart). Nodes with them may carry this taint.
NEURON_RESOURCE = "aws.amazon.com/neuron"
NEURON_TAINT_KEY = "aws.amazon.com/neuron"
# EFA pods also request 2-MiB huge pages: the EFA driver pre-allocates them on every EFA node and
# libfabric backs its buffers with them (Amazon EKS user guide, "Run machine learning training on
# Amazon EKS with Elastic Fabric Adapter": the example worker requests hugepages-2Mi: 5120Mi next to
# vpc.amazonaws.com/efa; "Manage EFA devices on Amazon EKS": request the EFA devices in requests and
# limits). The device plugin mounts the allocated /dev/infiniband/uverbs* devices into the container,
# so no hostPath or privileged mode is needed. Neither guide asks for CAP_IPC_LOCK (memlock is
# unlimited for containers on the EKS / HyperPod AMIs' containerd), and the namespace's Pod Security
# "baseline" level would reject it; the pods keep dropping every capability.
HUGEPAGES_RESOURCE = "hugepages-2Mi"
# libfabric / NCCL environment of EFA pods, as AWS's HyperPod-on-EKS training examples set it
# (aws-samples/awsome-distributed-training 3.test_cases/pytorch/FSDP/kubernetes/*.yaml): libfabric's
# EFA provider, fork safety (Ray forks worker processes after NCCL registered memory) and NCCL's
# bootstrap socket on the pod interface, not loopback. FI_EFA_USE_DEVICE_RDMA is left to libfabric,
# which turns RDMA on where the instance supports it (setting it on g5, which has none, fails).
EFA_ENV = {"FI_PROVIDER": "efa", "FI_EFA_FORK_SAFE": "1", "NCCL_SOCKET_IFNAME": "^lo"}
SHM_VOLUME = "dshm"
WORKLOADS_VOLUME = "workloads"
# Key of the token in the Secret KubeRay generates for ``authOptions: {mode: token}``. The Secret is
# named after the RayCluster (KubeRay's ``utils.CheckName(cluster)``: names of <= 50 characters are
# kept as they are, which config validation enforces for rayClusterName).
AUTH_TOKEN_SECRET_KEY = "auth_token"
# Autoscaler sidecar (in the head pod): KubeRay's documented sizing, requests = limits.
AUTOSCALER_RESOURCES = {"cpu": "500m", "memory": "512Mi"}
SUBMITTER_RESOURCES = {"cpu": "500m", "memory": "1Gi"}
CLEANUP_RESOURCES = {"cpu": "100m", "memory": "128Mi"}
CLEANUP_SCHEDULE = "*/5 * * * *"
NOBODY = 65534
# pulumi-kubernetes await annotations: `pulumi up` waits for KubeRay to report the cluster ready
# before anything that depends on it (RayJobs) is created. Pulling a multi-GB GPU image and scaling
# nodes takes longer than the 10 minute default.
WAIT_FOR_READY = {
    "pulumi.com/waitFor": "jsonpath={.status.state}=ready",
    "pulumi.com/timeoutSeconds": "1800",
}
PART_OF = {"app.kubernetes.io/part-of": "ray-on-eks"}
# exposeDashboards: true puts the head Service behind an internal NLB; the annotation declares it to
# the policy pack (policy/checks.py check_dashboards_not_exposed), which refuses it otherwise.
EXPOSED = {contract.EXPOSE_DASHBOARDS_ANNOTATION: "true"}
# Server-side apply and the Ray autoscaler (issue 11, defect 5). pulumi-kubernetes applies server-side
# (field manager pulumi-kubernetes-*); autoscaler v2 scales by JSON-patching
# /spec/workerGroupSpecs/<i>/replicas and .../scaleStrategy (ray-project/ray
# python/ray/autoscaler/_private/kuberay/node_provider.py worker_replica_patch / worker_delete_patch,
# used by autoscaler/v2/instance_manager/cloud_providers/kuberay/cloud_provider.py). The KubeRay CRD
# declares no x-kubernetes-list-type on workerGroupSpecs (components/crds/kuberay-1.7.0), so the list
# is atomic: whoever writes any item owns the whole list, and the next `pulumi up` that changes the
# RayCluster would fail with an apply conflict on .spec.workerGroupSpecs. With patchForce the
# provider applies with force (pulumi-kubernetes provider/pkg/await/await.go patchForce), takes the
# list back and resets what the autoscaler set: replicas falls to its CRD default 0, which KubeRay
# clamps to minReplicas (utils.GetWorkerGroupDesiredReplicas). That deletes no running worker: with
# in-tree autoscaling KubeRay never deletes pods to meet a lower count (raycluster_controller.go
# reconcilePods, "Random Pod deletion is disabled"), and the autoscaler patches replicas again at
# its next scaling decision. A pending workersToDelete is dropped too; the idle workers stay and the
# autoscaler requests their removal again. Only the stack's own RayCluster needs it: the clusters of RayJobs and
# RayServices are created (and patched) by KubeRay, not applied by Pulumi.
PATCH_FORCE = {"pulumi.com/patchForce": "true"}
# What the autoscaler writes inside spec.workerGroupSpecs[*] (see above); used by the tests that
# derive the need for PATCH_FORCE from the CRD's list types.
AUTOSCALER_WRITES = ("replicas", "scaleStrategy")


@dataclass(frozen=True, kw_only=True)
class ClaimMount:
    """A PersistentVolumeClaim mounted in every Ray container."""

    volume_name: str
    claim_name: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True, kw_only=True)
class ClusterShape:
    """What a Ray cluster looks like: head, worker groups and cluster-wide options."""

    cluster_type: str
    head: HeadConfig
    worker_groups: tuple[WorkerGroupConfig, ...]
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    gcs_fault_tolerance: GcsFaultToleranceConfig = field(default_factory=GcsFaultToleranceConfig)
    token_auth: bool = True
    image_repository: str = RAY_IMAGE_REPOSITORY
    # Workload image per flavour ("cpu", "gpu"): digest-pinned refs or the `pulumi up` build's outputs
    # (pulumi.Input[str], placed in the documents untouched). A missing flavour runs the stock image.
    images: Mapping[str, Any] = field(default_factory=dict)
    expose_dashboards: bool = False


@dataclass(frozen=True, kw_only=True)
class PodContext:
    """What every Ray pod gets: service account, workload code, shared volumes and environment."""

    service_account: str = contract.RAY_SERVICE_ACCOUNT
    workloads_config_map: str | None = None
    workloads_items: tuple[tuple[str, str], ...] = ()  # (ConfigMap key, path under the mount)
    claims: tuple[ClaimMount, ...] = ()
    storage_path: str | None = None
    head_env: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Workload code as ConfigMap data
# --------------------------------------------------------------------------------------------------


def config_map_key(path: str) -> str:
    """ConfigMap key of a repo file (keys cannot contain '/'): ``workloads/serve/app.py`` -> ``serve--app.py``.

    The leading ``workloads/`` is dropped because the volume is mounted at WORKLOADS_MOUNT_PATH.
    """
    relative = mount_relative_path(path)
    return relative.replace("/", "--")


def mount_relative_path(path: str) -> str:
    """Path of a repo file under the workloads mount: ``workloads/serve/app.py`` -> ``serve/app.py``."""
    prefix = "workloads/"
    if not path.startswith(prefix) or ".." in path.split("/"):
        raise ValueError(f"workload file {path!r} is not under workloads/")
    return path.removeprefix(prefix)


def workload_files(workloads: Iterable[Workload]) -> list[str]:
    """Sorted union of the repo-relative files the given workloads need at run time."""
    return sorted({path for workload in workloads for path in workload.files})


def read_workload_files(paths: Iterable[str], root: Path) -> dict[str, str]:
    """Contents of ``paths`` (relative to ``root``), decoded exactly (no newline translation)."""
    return {path: (root / path).read_bytes().decode("utf-8") for path in paths}


def build_workloads_config_map_data(files: Mapping[str, str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """ConfigMap ``data`` and the volume ``items`` (key -> path) that recreate the ``workloads/`` tree."""
    data: dict[str, str] = {}
    items: list[dict[str, str]] = []
    for path in sorted(files):
        key = config_map_key(path)
        if key in data:
            raise ValueError(f"two workload files map to the ConfigMap key {key!r}; rename one of them")
        data[key] = files[path]
        items.append({"key": key, "path": mount_relative_path(path)})
    return data, items


CONFIG_MAP_LIMIT_BYTES = 1024 * 1024
"""Kubernetes refuses objects over 1 MiB (etcd's request limit; ``data`` counts key and value bytes)."""
CONFIG_MAP_HEADROOM_BYTES = 16 * 1024
"""Kept free for the object's metadata, so ``data`` must stay below limit - headroom."""
OWN_CODE_DIR = "code"
"""Own code of ``rayJobs[].code`` lives at ``WORKLOADS_MOUNT_PATH/code/<job name>/``."""


def job_workload(job: RayJobConfig) -> Workload:
    """The catalog workload of ``job``, or a workload for its own code (``code`` + ``entrypoint``).

    Own code runs from its mounted directory, with that directory first on PYTHONPATH so the
    driver and every Ray worker import its modules; any env names are accepted.
    """
    if job.code is None:
        return get_workload(job.workload or "")
    directory = own_code_mount_path(job.name)
    return Workload(
        name=job.name,
        kind="job",
        module="",
        command=f"cd {directory} && {job.entrypoint}",
        files=(),
        env_defaults={"PYTHONPATH": f"{directory}:{CODE_ROOT}"},
        pip=(),
        needs_storage=True,
        description=f"own code from {job.code}",
        open_env=True,
    )


def service_workload(service: RayServiceConfig) -> Workload:
    """The catalog workload of ``service`` (default serve), or one for its own code."""
    if service.code is None:
        return get_workload(service.workload or "serve")
    directory = own_code_mount_path(service.name)
    return Workload(
        name=service.name,
        kind="service",
        module=service.import_path or "",
        files=(),
        env_defaults={"PYTHONPATH": f"{directory}:{CODE_ROOT}"},
        pip=(),
        needs_storage=True,
        description=f"own Serve app from {service.code}",
        open_env=True,
    )


def own_code_mount_path(job_name: str) -> str:
    """Where the own code of RayJob ``job_name`` is mounted on every Ray pod."""
    return f"{WORKLOADS_MOUNT_PATH}/{OWN_CODE_DIR}/{job_name}"


def read_own_code(code_dir: str, root: Path) -> dict[str, str]:
    """The text files under ``root/code_dir`` (relative path -> content), skipping hidden files and
    ``__pycache__``; a binary file is an error naming the alternative."""
    base = root / code_dir
    files: dict[str, str] = {}
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base)
        if not path.is_file() or any(
            part.startswith(".") or part == "__pycache__" for part in relative.parts
        ):
            continue
        try:
            files[relative.as_posix()] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"rayJobs code {code_dir!r}: {relative.as_posix()} is not UTF-8 text and cannot go in a "
                f"ConfigMap; keep data in STORAGE_PATH, or submit the directory with "
                f"`python -m workloads submit {code_dir} --stack <stack> --entrypoint ...`"
            ) from None
    if not files:
        raise ValueError(f"rayJobs code {code_dir!r} holds no files")
    return files


def add_own_code(
    data: dict[str, str],
    items: list[dict[str, str]],
    *,
    job_name: str,
    code_dir: str,
    files: Mapping[str, str],
) -> None:
    """Add one job's own code to the workloads ConfigMap ``data``/``items`` (mounted per job)."""
    for relative, content in sorted(files.items()):
        key = f"{OWN_CODE_DIR}--{job_name}--" + relative.replace("/", "--")
        if key in data:
            raise ValueError(f"rayJobs code {code_dir!r}: two files map to the ConfigMap key {key!r}")
        data[key] = content
        items.append({"key": key, "path": f"{OWN_CODE_DIR}/{job_name}/{relative}"})


def check_config_map_size(data: Mapping[str, str], *, what: str) -> int:
    """The ``data`` size in bytes; over Kubernetes' limit it is an error naming the alternative."""
    size = sum(len(key.encode()) + len(value.encode()) for key, value in data.items())
    if size > CONFIG_MAP_LIMIT_BYTES - CONFIG_MAP_HEADROOM_BYTES:
        raise ValueError(
            f"{what} is {size} bytes, over the {CONFIG_MAP_LIMIT_BYTES - CONFIG_MAP_HEADROOM_BYTES}-byte "
            "budget of one ConfigMap (Kubernetes refuses objects over 1 MiB); remove the largest "
            "rayJobs[].code from the stack config and submit it with `python -m workloads submit DIR "
            "--stack <stack> --entrypoint CMD` instead (uploaded through the Ray Jobs API, up to 100 MiB)"
        )
    return size


def content_hash(data: Mapping[str, str], length: int = 10) -> str:
    """Stable short hash of ConfigMap data; part of the ConfigMap name so a code change rolls pods."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode())
        digest.update(b"\0")
        digest.update(data[key].encode())
        digest.update(b"\0")
    return digest.hexdigest()[:length]


# --------------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------------


def head_image(shape: ClusterShape) -> Any:
    """The image of the head (and of RayJob submitters): the head's own ``image`` when set, else the
    cpu workload image, else the stock image (see :func:`resolve_ray_image`)."""
    return resolve_ray_image(
        "cpu",
        images=shape.images,
        stock_repository=shape.image_repository,
        override=shape.head.image,
    )


def group_image(shape: ClusterShape, group: WorkerGroupConfig) -> Any:
    """The image of one worker group's pods: its own ``image`` when the group sets one, else the
    workload image of its flavour (gpu when it asks for GPUs, else cpu), else the stock image."""
    return resolve_ray_image(
        flavour_of(group.gpus),
        images=shape.images,
        stock_repository=shape.image_repository,
        # The group's own image (workerGroups[].image) wins over the flavour's workload image.
        override=group.image,
    )


def container_security_context() -> dict[str, Any]:
    """Restricted-profile container context: non-root uid 1000, no escalation, no capabilities."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RAY_UID,
        "runAsGroup": RAY_GID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RAY_UID,
        "runAsGroup": RAY_GID,
        "fsGroup": RAY_GID,
        # Only chown a volume whose root does not already belong to the group (large FSx trees).
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def ray_env(pods: PodContext) -> list[dict[str, Any]]:
    """Environment of every Ray container: the code root on PYTHONPATH and, if set, STORAGE_PATH."""
    env: list[dict[str, Any]] = [{"name": "PYTHONPATH", "value": CODE_ROOT}]
    if pods.storage_path:
        env.append({"name": "STORAGE_PATH", "value": pods.storage_path})
    return env


def _volumes(pods: PodContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if pods.workloads_config_map:
        volumes.append(
            {
                "name": WORKLOADS_VOLUME,
                "configMap": {
                    "name": pods.workloads_config_map,
                    "items": [{"key": key, "path": path} for key, path in pods.workloads_items],
                    "defaultMode": 0o444,
                },
            }
        )
        mounts.append({"name": WORKLOADS_VOLUME, "mountPath": WORKLOADS_MOUNT_PATH, "readOnly": True})
    for claim in pods.claims:
        volumes.append(
            {
                "name": claim.volume_name,
                "persistentVolumeClaim": {"claimName": claim.claim_name, "readOnly": claim.read_only},
            }
        )
        mounts.append({"name": claim.volume_name, "mountPath": claim.mount_path, "readOnly": claim.read_only})
    return volumes, mounts


def _resources(cpu: str, memory: str, extra: Mapping[str, int | str] | None = None) -> dict[str, Any]:
    """Requests = limits: Ray sizes its object store and scheduling from the limits."""
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory}
    for name, count in (extra or {}).items():
        if count:
            amounts[name] = count
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pre_stop() -> dict[str, Any]:
    # Let Ray drain and flush (object spilling, GCS) before the container gets SIGTERM.
    return {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}}


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def _pod_spec(
    *,
    container: dict[str, Any],
    pods: PodContext,
    volumes: list[dict[str, Any]],
    node_selector: Mapping[str, str],
    tolerations: list[dict[str, Any]],
    automount_token: bool,
    restart_never: bool,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serviceAccountName": pods.service_account,
        "automountServiceAccountToken": automount_token,
        "securityContext": pod_security_context(),
        "containers": [container],
    }
    if volumes:
        spec["volumes"] = volumes
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = tolerations
    if restart_never:
        # Autoscaler v2: a Ray node is never restarted in place (a restarted pod would rejoin as a
        # different Ray node); KubeRay replaces it instead.
        spec["restartPolicy"] = "Never"
    return spec


def _tolerations(group: WorkerGroupConfig) -> list[dict[str, Any]]:
    tolerations = [t.model_dump(exclude_none=True) for t in group.tolerations]
    if group.gpus and not any(t.get("key") == GPU_TAINT_KEY for t in tolerations):
        # GPU nodes carry the nvidia.com/gpu taint so that only pods asking for GPUs land there.
        tolerations.append({"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"})
    if group.neuron_devices and not any(t.get("key") == NEURON_TAINT_KEY for t in tolerations):
        tolerations.append({"key": NEURON_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def shm_volume(size_bytes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A memory-backed /dev/shm of ``size_bytes`` (volume, mount).

    The container runtime's default /dev/shm is 64 MiB; NCCL's shared-memory transport and Ray's
    object store need far more. A ``medium: Memory`` emptyDir is a tmpfs whose size is its
    ``sizeLimit`` (Kubernetes SizeMemoryBackedVolumes, GA since 1.32); its pages count against the
    container's memory limit, which config validation keeps above it.
    """
    mib = max(size_bytes // 2**20, 1)
    volume = {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": f"{mib}Mi"}}
    return volume, {"name": SHM_VOLUME, "mountPath": "/dev/shm"}


def serve_env(serve_ingress_env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Container env entries of the Serve ingress settings (workloads/serve_ingress.py says why)."""
    return [{"name": name, "value": value} for name, value in sorted(serve_ingress_env.items())]


def build_head_group(
    shape: ClusterShape,
    pods: PodContext,
    *,
    serve: bool = False,
    serve_ingress_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``headGroupSpec``: coordinator only (num-cpus 0 by default), dashboard on ClusterIP.

    ``serve_ingress_env``: with ``serve``, what every Ray container of a serving cluster gets (HAProxy
    runs on every node, the head included, and answers on the Serve port)."""
    volumes, mounts = _volumes(pods)
    ports = [
        _port("gcs-server", contract.RAY_GCS_PORT),
        _port("dashboard", contract.RAY_DASHBOARD_PORT),
        _port("client", contract.RAY_CLIENT_PORT),
        _port(contract.RAY_METRICS_PORT_NAME, contract.RAY_METRICS_PORT),
    ]
    if serve:
        ports.append(_port("serve", contract.RAY_SERVE_PORT))
    env = ray_env(pods) + [{"name": name, "value": value} for name, value in pods.head_env.items()]
    if serve:
        env += serve_env(serve_ingress_env or {})
    container: dict[str, Any] = {
        "name": "ray-head",
        "image": head_image(shape),
        "imagePullPolicy": "IfNotPresent",
        "ports": ports,
        "env": env,
        "resources": _resources(shape.head.cpu, shape.head.memory),
        "securityContext": container_security_context(),
        "lifecycle": _pre_stop(),
    }
    if mounts:
        container["volumeMounts"] = mounts
    head: dict[str, Any] = {
        # The dashboard listens on all pod interfaces; it is reachable only through the ClusterIP
        # head Service (kubectl port-forward) unless exposeDashboards asks for an internal NLB.
        "rayStartParams": {
            "dashboard-host": "0.0.0.0",
            "num-cpus": str(shape.head.num_cpus),
            "metrics-export-port": str(contract.RAY_METRICS_PORT),
        },
        "serviceType": "LoadBalancer" if shape.expose_dashboards else "ClusterIP",
        "template": {
            "metadata": {"labels": dict(PART_OF)},
            "spec": _pod_spec(
                container=container,
                pods=pods,
                volumes=volumes,
                node_selector=node_selector_for(shape.cluster_type, shape.head.instance_type),
                tolerations=[],
                # The autoscaler sidecar talks to the Kubernetes API with the pod's token.
                automount_token=shape.autoscaler.enabled,
                restart_never=shape.autoscaler.enabled,
            ),
        },
    }
    return head


def worker_node_selector(shape: ClusterShape, group: WorkerGroupConfig) -> dict[str, str]:
    """Where a worker group's pods may run: its extra labels, then instance type (+ HyperPod health)."""
    return {
        **group.node_selector,
        # Computed last so the HyperPod health label and the instance type cannot be overridden.
        **node_selector_for(shape.cluster_type, group.instance_type),
    }


def build_worker_group(
    shape: ClusterShape,
    group: WorkerGroupConfig,
    pods: PodContext,
    *,
    serve: bool = False,
    serve_ingress_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One ``workerGroupSpecs`` entry: sized, GPU/EFA devices, tolerations and node selector."""
    volumes, mounts = _volumes(pods)
    shm = group.shm_bytes
    if shm is not None:
        shm_vol, shm_mount = shm_volume(shm)
        volumes.append(shm_vol)
        mounts.append(shm_mount)
    ports = [_port(contract.RAY_METRICS_PORT_NAME, contract.RAY_METRICS_PORT)]
    if serve:
        ports.append(_port("serve", contract.RAY_SERVE_PORT))
    env = ray_env(pods)
    if serve:
        env += serve_env(serve_ingress_env or {})
    devices: dict[str, int | str] = {
        GPU_RESOURCE: group.gpus,
        EFA_RESOURCE: group.efa_devices,
        NEURON_RESOURCE: group.neuron_devices,
    }
    if group.efa_devices:
        devices[HUGEPAGES_RESOURCE] = group.efa_hugepages
        env += [{"name": name, "value": value} for name, value in EFA_ENV.items()]
    container: dict[str, Any] = {
        "name": "ray-worker",
        "image": group_image(shape, group),
        "imagePullPolicy": "IfNotPresent",
        "ports": ports,
        "env": env,
        "resources": _resources(group.cpu, group.memory, devices),
        "securityContext": container_security_context(),
        "lifecycle": _pre_stop(),
    }
    if mounts:
        container["volumeMounts"] = mounts
    node_selector = worker_node_selector(shape, group)
    spec: dict[str, Any] = {
        "groupName": group.name,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": {"metrics-export-port": str(contract.RAY_METRICS_PORT)},
        "template": {
            "metadata": {"labels": dict(PART_OF)},
            "spec": _pod_spec(
                container=container,
                pods=pods,
                volumes=volumes,
                node_selector=node_selector,
                tolerations=_tolerations(group),
                automount_token=False,
                restart_never=shape.autoscaler.enabled,
            ),
        },
    }
    if not shape.autoscaler.enabled:
        # With the autoscaler on, `replicas` belongs to it (KubeRay starts at minReplicas); if Pulumi
        # also set it, every `pulumi up` would reset the autoscaler's decisions.
        spec["replicas"] = group.replicas
    return spec


def build_ray_cluster_spec(
    shape: ClusterShape,
    pods: PodContext,
    *,
    serve: bool = False,
    serve_ingress_env: Mapping[str, str] | None = None,
    gcs_fault_tolerance: bool = True,
    upgrade_strategy: str | None = None,
) -> dict[str, Any]:
    """A RayCluster ``spec`` (also a RayJob's ``rayClusterSpec`` and a RayService's ``rayClusterConfig``)."""
    spec: dict[str, Any] = {
        "rayVersion": RAY_VERSION,
        "headGroupSpec": build_head_group(shape, pods, serve=serve, serve_ingress_env=serve_ingress_env),
        "workerGroupSpecs": [
            build_worker_group(shape, group, pods, serve=serve, serve_ingress_env=serve_ingress_env)
            for group in shape.worker_groups
        ],
    }
    if shape.token_auth:
        # KubeRay generates a random token into a Secret named after the cluster and injects
        # RAY_AUTH_MODE=token / RAY_AUTH_TOKEN into every Ray container (and RayJob submitters).
        spec["authOptions"] = {"mode": "token"}
    if shape.autoscaler.enabled:
        spec["enableInTreeAutoscaling"] = True
        spec["autoscalerOptions"] = {
            "version": "v2",
            "idleTimeoutSeconds": shape.autoscaler.idle_timeout_seconds,
            "upscalingMode": shape.autoscaler.upscaling_mode,
            "imagePullPolicy": "IfNotPresent",
            "resources": {"requests": dict(AUTOSCALER_RESOURCES), "limits": dict(AUTOSCALER_RESOURCES)},
            "securityContext": container_security_context(),
        }
    ft = shape.gcs_fault_tolerance
    if gcs_fault_tolerance and ft.enabled:
        options: dict[str, Any] = {"redisAddress": ft.redis_address}
        if ft.redis_password_secret is not None:
            options["redisPassword"] = {
                "valueFrom": {
                    "secretKeyRef": {
                        "name": ft.redis_password_secret.name,
                        "key": ft.redis_password_secret.key,
                    }
                }
            }
        spec["gcsFaultToleranceOptions"] = options
    if shape.expose_dashboards:
        # Internal NLB only: reachable from the VPC (VPN, bastion), never from the internet.
        spec["headServiceAnnotations"] = {
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
            "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        }
    if upgrade_strategy:
        spec["upgradeStrategy"] = {"type": upgrade_strategy}
    return spec


def build_ray_cluster(
    *, name: str, namespace: str, shape: ClusterShape, pods: PodContext, wait_until_ready: bool = True
) -> dict[str, Any]:
    """The stack's long-lived RayCluster.

    ``upgradeStrategy: Recreate``: when a pod template changes (new workload ConfigMap, image, sizes),
    KubeRay recreates the pods instead of leaving old ones running with stale code.
    """
    annotations: dict[str, str] = {}
    if wait_until_ready:
        annotations.update(WAIT_FOR_READY)
    if shape.autoscaler.enabled:
        annotations.update(PATCH_FORCE)
    if shape.expose_dashboards:
        annotations.update(EXPOSED)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(PART_OF)}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": metadata,
        "spec": build_ray_cluster_spec(shape, pods, upgrade_strategy="Recreate"),
    }


# --------------------------------------------------------------------------------------------------
# Jobs and services
# --------------------------------------------------------------------------------------------------


def run_env(workload: Workload, overrides: Mapping[str, str], storage_path: str | None) -> dict[str, str]:
    """The contract environment of one run: workload defaults, the user's overrides, STORAGE_PATH."""
    env = workload_env(workload, overrides)
    if storage_path and "STORAGE_PATH" not in overrides:
        env["STORAGE_PATH"] = storage_path
    return env


def build_runtime_env_yaml(workload: Workload, env: Mapping[str, str], *, pip: bool = True) -> str:
    """``runtimeEnvYAML``: the contract env and, with ``pip``, the packages the stock image lacks.

    No ``working_dir``: the code is already on every pod (ConfigMap at WORKLOADS_MOUNT_PATH). With a
    workload image (images/) the packages are baked in and ``pip`` is False: nothing installs at start.
    """
    runtime_env: dict[str, Any] = {"env_vars": dict(sorted(env.items()))}
    if pip and workload.pip:
        runtime_env["pip"] = list(workload.pip)
    return yaml.safe_dump(runtime_env, sort_keys=False)


def build_submitter_template(shape: ClusterShape, pods: PodContext) -> dict[str, Any]:
    """``submitterPodTemplate``: the K8s Job pod that runs ``ray job submit`` (KubeRay fills the command).

    It runs the head's image (same Ray version as the cluster) and, on HyperPod, only on
    ``Schedulable`` nodes like every other pod of the stack (any instance type: it is small).
    """
    spec: dict[str, Any] = {
        "serviceAccountName": pods.service_account,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "restartPolicy": "Never",
    }
    selector = node_selector_for(shape.cluster_type, None)
    if selector:
        spec["nodeSelector"] = selector
    return {
        # The submitter label lets it through the Ray namespace's NetworkPolicies to the head's Jobs API.
        "metadata": {"labels": {**PART_OF, SUBMITTER_LABEL: SUBMITTER_VALUE}},
        "spec": {
            **spec,
            "containers": [
                {
                    "name": "ray-job-submitter",
                    "image": head_image(shape),
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {
                        "requests": dict(SUBMITTER_RESOURCES),
                        "limits": dict(SUBMITTER_RESOURCES),
                    },
                    "securityContext": container_security_context(),
                }
            ],
        },
    }


def build_ray_job(
    *,
    job: RayJobConfig,
    workload: Workload,
    namespace: str,
    cluster_name: str,
    shape: ClusterShape,
    pods: PodContext,
    runtime_pip: bool = True,
) -> dict[str, Any]:
    """A RayJob running ``workload`` on the shared cluster or on its own ephemeral cluster.

    ``runtime_pip``: install the workload's pip packages when the job starts (stock image only).
    """
    if workload.kind != "job":
        raise ValueError(f"rayJobs {job.name!r}: workload {workload.name!r} is a {workload.kind}, not a job")
    spec: dict[str, Any] = {
        "entrypoint": workload.entrypoint(),
        "runtimeEnvYAML": build_runtime_env_yaml(
            workload, run_env(workload, job.env, pods.storage_path), pip=runtime_pip
        ),
        "submissionMode": "K8sJobMode",
        "submitterPodTemplate": build_submitter_template(shape, pods),
    }
    if job.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = job.active_deadline_seconds
    if job.cluster == "shared":
        # No backoffLimit: KubeRay v1.7.0 refuses any retry with clusterSelector (ValidateRayJobSpec);
        # config validation already refuses backoffLimit > 0 for shared jobs.
        if job.backoff_limit:
            raise ValueError(f"rayJobs {job.name!r}: backoffLimit needs cluster: ephemeral")
        spec["clusterSelector"] = {contract.RAY_CLUSTER_LABEL: cluster_name}
    else:
        spec["backoffLimit"] = job.backoff_limit
        # GCS fault tolerance is for long-lived clusters; a job's cluster lives as long as the job.
        spec["rayClusterSpec"] = with_secret_env(
            build_ray_cluster_spec(shape, pods, gcs_fault_tolerance=False), job.secret_env
        )
        spec["shutdownAfterJobFinishes"] = True
        spec["ttlSecondsAfterFinished"] = job.ttl_seconds_after_finished
    metadata: dict[str, Any] = {"name": job.name, "namespace": namespace, "labels": dict(PART_OF)}
    if "rayClusterSpec" in spec and shape.expose_dashboards:
        metadata["annotations"] = dict(EXPOSED)
    return {"apiVersion": API_VERSION, "kind": "RayJob", "metadata": metadata, "spec": spec}


def with_secret_env(cluster_spec: dict[str, Any], secret_env: Mapping[str, SecretKeyRef]) -> dict[str, Any]:
    """``cluster_spec`` with ``secret_env`` on the Ray container of the head and of every worker group.

    Each variable is a ``valueFrom.secretKeyRef``: the value stays in the Secret, and the RayJob
    (stored in etcd, shown by ``kubectl get -o yaml``) holds only its name. The driver runs on the
    head and the Ray Train workers on the workers; Ray processes inherit their container's env
    (the runtime_env's ``env_vars`` add to it and never name these variables). The kubelet refuses
    to start a container whose Secret or key is missing (CreateContainerConfigError), so a missing
    token shows on the pod, not as a failure deep inside the job.
    """
    if not secret_env:
        return cluster_spec
    entries = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        for name, ref in sorted(secret_env.items())
    ]
    templates = [cluster_spec["headGroupSpec"]["template"]]
    templates += [group["template"] for group in cluster_spec.get("workerGroupSpecs", [])]
    for template in templates:
        for container in template["spec"]["containers"]:
            if container["name"] in ("ray-head", "ray-worker"):
                container["env"] = [*container.get("env", []), *entries]
    return cluster_spec


def build_ray_service(
    *,
    service: RayServiceConfig,
    workload: Workload,
    namespace: str,
    shape: ClusterShape,
    pods: PodContext,
    serve_config: Mapping[str, Any],
) -> dict[str, Any]:
    """A RayService whose Serve app imports the workload from the ConfigMap-mounted code."""
    if workload.kind != "service":
        raise ValueError(
            f"rayServices {service.name!r}: workload {workload.name!r} is a {workload.kind}, not a service"
        )
    metadata: dict[str, Any] = {"name": service.name, "namespace": namespace, "labels": dict(PART_OF)}
    if shape.expose_dashboards:
        metadata["annotations"] = dict(EXPOSED)
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": metadata,
        "spec": {
            "serveConfigV2": yaml.safe_dump(dict(serve_config), sort_keys=False),
            "upgradeStrategy": {"type": service.upgrade_strategy},
            "rayClusterConfig": build_ray_cluster_spec(
                shape,
                pods,
                serve=True,
                # Catalog apps are pure inference: HAProxy may replay a request a dying replica dropped.
                serve_ingress_env=ray_service_env(
                    high_throughput=service.high_throughput_ingress, idempotent=service.code is None
                ),
            ),
        },
    }


def pre_pull_name(cluster_name: str, group_name: str) -> str:
    """Name of a worker group's pre-pull DaemonSet (a DNS label of at most 63 characters)."""
    return f"{cluster_name}-{group_name}-image-pull"[:63].rstrip("-")


def pre_pull_groups(groups: Iterable[WorkerGroupConfig], setting: str) -> list[WorkerGroupConfig]:
    """Worker groups whose nodes get the image pulled ahead: ``gpu`` (GPU groups), ``all`` or ``none``."""
    if setting == "none":
        return []
    return [group for group in groups if setting == "all" or group.gpus > 0]


def build_pre_pull(
    *, shape: ClusterShape, group: WorkerGroupConfig, cluster_name: str, namespace: str
) -> dict[str, Any]:
    """The pre-pull DaemonSet of one worker group: same image, node selector and tolerations as its pods.

    A new node then starts pulling the multi-GB image as soon as it joins (and every static HyperPod
    node keeps it), instead of when the first Ray pod lands on it. README "Image pull time" says why a
    DaemonSet rather than SOCI.
    """
    return build_pre_pull_daemon_set(
        name=pre_pull_name(cluster_name, group.name),
        namespace=namespace,
        image=group_image(shape, group),
        node_selector=worker_node_selector(shape, group),
        tolerations=_tolerations(group),
        security_context=container_security_context(),
        pod_security_context=pod_security_context(),
        labels=PART_OF,
    )


def head_service_name(cluster_name: str) -> str:
    """The head Service KubeRay creates for a RayCluster."""
    return f"{cluster_name}-head-svc"


def port_forward_command(namespace: str, cluster_name: str) -> str:
    return (
        f"kubectl port-forward -n {namespace} svc/{head_service_name(cluster_name)} "
        f"{contract.RAY_DASHBOARD_PORT}:{contract.RAY_DASHBOARD_PORT}"
    )


def serve_service_name(service_name: str) -> str:
    """The Serve Service KubeRay creates for a RayService (``GenerateServeServiceName`` in KubeRay
    v1.7.0 ``ray-operator/controllers/ray/utils/util.go``: ``<name>-serve-svc``, port 8000)."""
    return f"{service_name}-serve-svc"


def ray_service_endpoint(namespace: str, service_name: str) -> dict[str, Any]:
    """How to reach one RayService's Serve HTTP port: the ``rayServices`` stack output entry."""
    serve_service = serve_service_name(service_name)
    port = contract.RAY_SERVE_PORT
    return {
        "namespace": namespace,
        "serveService": serve_service,
        "port": port,
        "portForwardCommand": f"kubectl port-forward -n {namespace} svc/{serve_service} {port}:{port}",
    }


def stuck_pod_cleanup_script(namespace: str) -> str:
    """Shell for the HyperPod CronJob: delete Ray pods the kubelet rejected at admission.

    After HyperPod replaces a faulty node, pods bound to it can end up ``Failed`` with reason
    ``UnexpectedAdmissionError`` (device plugin not ready yet); KubeRay does not replace them.
    Only Ray pods (``ray.io/node-type`` label) in ``namespace`` are listed; the API server filters
    on the phase, awk on the reason. POSIX sh (busybox in the image, dash in the tests): the listing
    runs on its own so that ``set -e`` stops the script when kubectl fails.
    """
    selector = contract.RAY_NODE_TYPE_LABEL
    return (
        "set -eu\n"
        f"pods=$(kubectl get pods -n {namespace} -l {selector} --field-selector=status.phase=Failed "
        "-o custom-columns=NAME:.metadata.name,REASON:.status.reason --no-headers)\n"
        "printf '%s\\n' \"$pods\" | awk '$2 == \"UnexpectedAdmissionError\" {print $1}' "
        f"| xargs -r kubectl delete pod -n {namespace} --wait=false\n"
    )


def build_stuck_pod_cleanup_spec(*, namespace: str, service_account: str) -> dict[str, Any]:
    """CronJob ``spec`` running :func:`stuck_pod_cleanup_script` every 5 minutes as ``nobody``.

    Only built on HyperPod, where its pods too run only on ``Schedulable`` nodes.
    """
    container_context = {
        **container_security_context(),
        "runAsUser": NOBODY,
        "runAsGroup": NOBODY,
        "readOnlyRootFilesystem": True,
    }
    return {
        "schedule": CLEANUP_SCHEDULE,
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": dict(PART_OF)},
                    "spec": {
                        "serviceAccountName": service_account,
                        "restartPolicy": "Never",
                        "nodeSelector": node_selector_for("hyperpod", None),
                        "securityContext": {
                            **pod_security_context(),
                            "runAsUser": NOBODY,
                            "runAsGroup": NOBODY,
                            "fsGroup": NOBODY,
                        },
                        "containers": [
                            {
                                "name": "cleanup",
                                "image": KUBECTL_IMAGE,
                                "command": ["/bin/sh", "-c", stuck_pod_cleanup_script(namespace)],
                                # kubectl writes its discovery cache under $HOME; the root fs is read-only.
                                "env": [{"name": "HOME", "value": "/tmp"}],
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                                "resources": {
                                    "requests": dict(CLEANUP_RESOURCES),
                                    "limits": dict(CLEANUP_RESOURCES),
                                },
                                "securityContext": container_context,
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                    },
                },
            }
        },
    }

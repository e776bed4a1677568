"""RayClusterStack: the Ray namespace, the RayCluster and the RayJobs / RayServices that run on it.

What it creates (all children named ``f"{name}-<role>"``, parented to the component):

* the Ray namespace (Pod Security Admission ``baseline`` enforced, ``restricted`` warned/audited:
  our pods meet restricted, containers KubeRay injects are only guaranteed to meet baseline);
* the namespace's NetworkPolicies (unless ``network_policies`` is off): default-deny ingress and the
  few allowed paths, see components/builders/network_policy.py;
* the ``ray-workloads`` service account (IRSA / Pod Identity bind AWS access to it) and one
  PersistentVolumeClaim per shared volume, named ``f"{volume.name}-claim"``, carrying the await its
  storage component sized (``pulumi up`` waits until it is Bound, before the RayCluster);
* one ConfigMap with every ``workloads/`` file the configured jobs and services import, named
  ``f"{cluster}-workloads-<sha256[:10] of the contents>"``. The pod templates reference it by name, so
  a script change changes the RayCluster's pod template and KubeRay (``upgradeStrategy: Recreate``)
  replaces the pods; RayServices roll to a new cluster; RayJobs created afterwards see the new code;
* the RayCluster (``pulumi up`` waits until KubeRay reports it ``ready``), the RayJobs (which depend
  on it) and the RayServices;
* per GPU worker group (``pre_pull_images``), a DaemonSet that pulls the group's image onto each node
  it can use as soon as the node joins (not awaited);
* on HyperPod, a CronJob that deletes Ray pods stuck in ``UnexpectedAdmissionError`` after node
  replacement, with a service account whose Role can only get/list/delete pods in the Ray namespace.

Images: every Ray pod runs the workload image of its flavour from ``images`` (digest-pinned; see
WorkloadImages) or else the stock pinned image. Jobs and services pip-install the catalog's packages at
start only while a pod runs the stock image (or ``runtime_pip`` forces it); then one warning names the cost.

Outputs: ``namespace``, ``ray_cluster_name``, ``head_service_name``, ``dashboard_port_forward_command``
and ``ray_auth_token_secret_name`` (``None`` without token auth; the Secret's key is ``auth_token``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import contract
from components.builders.images import runtime_pip, stack_flavours, uses_stock_image
from components.builders.network_policy import build_network_policies
from components.builders.ray import (
    API_VERSION,
    ClaimMount,
    ClusterShape,
    PodContext,
    add_own_code,
    build_pre_pull,
    build_ray_cluster,
    build_ray_job,
    build_ray_service,
    build_stuck_pod_cleanup_spec,
    build_workloads_config_map_data,
    check_config_map_size,
    content_hash,
    head_service_name,
    job_workload,
    port_forward_command,
    pre_pull_groups,
    ray_service_endpoint,
    read_own_code,
    read_workload_files,
    run_env,
    service_workload,
    workload_files,
)
from components.config import (
    AutoscalerConfig,
    GcsFaultToleranceConfig,
    HeadConfig,
    RayJobConfig,
    RayServiceConfig,
    WorkerGroupConfig,
)
from components.versions import RAY_IMAGE_REPOSITORY
from workloads.serve.config import CLASSIFIER, build_serve_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def _untyped(value: Any) -> Any:
    """Builder dicts go to the SDK untyped: mypy cannot check (and runs out of memory inferring)
    deeply nested literals against the SDK's TypedDict unions; the CRD/schema tests check them."""
    return value


@dataclass(frozen=True, kw_only=True)
class SharedVolume:
    """Shared storage mounted in the head and every worker.

    ``name`` ("fsx" | "s3") names the volume in the pod and the claim: RayClusterStack creates the
    PersistentVolumeClaim ``f"{name}-claim"`` in the Ray namespace from ``claim_spec``.
    """

    name: str  # "fsx" | "s3": the PVC is f"{name}-claim"
    mount_path: str  # contract.FSX_MOUNT_PATH / S3_MOUNT_PATH
    # PersistentVolumeClaim .spec built by the storage component.
    claim_spec: pulumi.Input[Mapping[str, Any]]
    # The claim's await annotations (pulumi.com/waitFor + timeoutSeconds), sized by the storage
    # component to how long its volume takes to bind (builders.storage.claim_await_annotations); or
    # pulumi.com/skipAwait for a StorageClass whose binding mode the program cannot know
    # (KubernetesTarget).
    claim_annotations: Mapping[str, str] = field(default_factory=dict)
    read_only: bool = False


@dataclass(frozen=True)
class _Documents:
    """The RayCluster, RayJob and RayService documents of one stack."""

    cluster: dict[str, Any]
    jobs: list[dict[str, Any]]
    services: list[dict[str, Any]]


def _item(kind: str, index: int, key: str) -> Callable[[_Documents], Any]:
    """Selector of ``key`` of the ``index``-th job or service document."""
    return lambda docs: getattr(docs, kind)[index][key]


def claim_name(volume_name: str) -> str:
    """Name of the PersistentVolumeClaim RayClusterStack creates for a :class:`SharedVolume`."""
    return f"{volume_name}-claim"


@dataclass(frozen=True, kw_only=True)
class RayClusterStackArgs:
    """The Ray section of the config plus hooks filled from other components in ``__main__.py``."""

    cluster_type: str
    namespace: str
    ray_cluster_name: str
    head: HeadConfig
    worker_groups: Sequence[WorkerGroupConfig]
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    gcs_fault_tolerance: GcsFaultToleranceConfig = field(default_factory=GcsFaultToleranceConfig)
    token_auth: bool = True
    ray_image_repository: str = RAY_IMAGE_REPOSITORY
    # Workload image per flavour ("cpu", "gpu"), digest-pinned (WorkloadImages.images: config or the
    # `pulumi up` build's outputs). A flavour without one runs the stock image from ray_image_repository.
    images: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # runtimePip: None = install the catalog's pip packages at job start only while a pod runs the stock
    # image; True/False force it.
    runtime_pip: bool | None = None
    # prePullImages: "gpu", "all" or "none" -- worker groups whose nodes get a pre-pull DaemonSet.
    pre_pull_images: str = "gpu"
    expose_dashboards: bool = False
    ray_jobs: Sequence[RayJobConfig] = ()
    ray_services: Sequence[RayServiceConfig] = ()
    # The KubeRay operator (__main__ passes its Helm release, which waits for the CRDs): every Ray
    # custom resource depends on it.
    # A component's own depends_on does not reach its children, hence this explicit hook.
    kuberay: pulumi.Resource | None = None
    # The capacity Ray pods run on when the stack created the cluster (ClusterTarget.node_pools): the
    # namespace and every Ray resource depend on it, so `pulumi destroy` deletes Ray pods before the
    # NodePools (whose deletion terminates their nodes) and the cluster.
    capacity: Sequence[pulumi.Resource] = ()
    # Keep the namespace and claims on `pulumi destroy` (the data behind the claims survives).
    retain_data: bool = True
    # RayClusterStack creates the PVCs in its namespace and mounts them in head + workers.
    volumes: Sequence[SharedVolume] = ()
    # STORAGE_PATH for workloads (e.g. "/fsx/ray-results" or "s3://bucket/ray-results");
    # None -> local path, single-node only.
    storage_path: pulumi.Input[str | None] | None = None
    # Head container only, e.g. RAY_GRAFANA_HOST, RAY_PROMETHEUS_HOST from Monitoring.
    head_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # On the ray-workloads service account, e.g. the IRSA role-arn annotation.
    # (An Output of the whole mapping works too, e.g. S3Mountpoint.ray_service_account_annotations.)
    service_account_annotations: pulumi.Input[Mapping[str, pulumi.Input[str]]] = field(default_factory=dict)
    # NetworkPolicies in the namespace (components/builders/network_policy.py): deny ingress except Ray
    # pods, RayJob submitters, the operator in ``kuberay_namespace`` and Prometheus in
    # ``monitoring_namespace`` (None: no monitoring stack, no Prometheus rule).
    network_policies: bool = True
    kuberay_namespace: str = "kuberay-system"
    monitoring_namespace: str | None = None


class RayClusterStack(pulumi.ComponentResource):
    """The Ray namespace, RayCluster, RayJobs and RayServices of one stack."""

    def __init__(
        self, name: str, args: RayClusterStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-on-eks:k8s:RayClusterStack", name, None, opts)
        # ---- validate and build every document before creating anything ----------------------
        names = [v.name for v in args.volumes]
        if len(set(names)) != len(names):
            raise ValueError(f"RayClusterStackArgs.volumes: volume names must be unique, got {names}")
        jobs = [(job, job_workload(job)) for job in args.ray_jobs]
        services = [(svc, service_workload(svc)) for svc in args.ray_services]
        files = read_workload_files(workload_files([w for _, w in [*jobs, *services]]), REPO_ROOT)
        data, items = build_workloads_config_map_data(files)
        owners: list[tuple[str, str | None]] = [(j.name, j.code) for j in args.ray_jobs]
        owners += [(svc.name, svc.code) for svc in args.ray_services]
        for owner, code in owners:
            if code is not None:
                own = read_own_code(code, REPO_ROOT)
                add_own_code(data, items, job_name=owner, code_dir=code, files=own)
        check_config_map_size(data, what="the workloads ConfigMap (catalog workloads + own code)")
        config_map_name = f"{args.ray_cluster_name}-workloads-{content_hash(data)}" if data else None

        shape = ClusterShape(
            cluster_type=args.cluster_type,
            head=args.head,
            worker_groups=tuple(args.worker_groups),
            autoscaler=args.autoscaler,
            gcs_fault_tolerance=args.gcs_fault_tolerance,
            token_auth=args.token_auth,
            image_repository=args.ray_image_repository,
            expose_dashboards=args.expose_dashboards,
        )
        pods = PodContext(
            service_account=contract.RAY_SERVICE_ACCOUNT,
            workloads_config_map=config_map_name,
            workloads_items=tuple((item["key"], item["path"]) for item in items),
            claims=tuple(
                ClaimMount(
                    volume_name=v.name,
                    claim_name=claim_name(v.name),
                    mount_path=v.mount_path,
                    read_only=v.read_only,
                )
                for v in args.volumes
            ),
            head_env=dict(args.head_env),
        )
        if args.pre_pull_images not in ("gpu", "all", "none"):
            raise ValueError(
                f"RayClusterStackArgs.pre_pull_images: {args.pre_pull_images!r} is not gpu, all or none"
            )
        unknown_flavours = sorted(set(args.images) - {"cpu", "gpu"})
        if unknown_flavours:
            raise ValueError(f"RayClusterStackArgs.images: unknown flavours {unknown_flavours}; use cpu, gpu")
        flavours = stack_flavours(group.gpus for group in args.worker_groups)
        stock = uses_stock_image(flavours, args.images)
        pip_at_start = runtime_pip(args.runtime_pip, stock_image_in_use=stock)
        with_pip = sorted({w.name for _, w in [*jobs, *services] if w.pip})
        if pip_at_start and stock and with_pip:
            packages = sorted({p for _, w in [*jobs, *services] for p in w.pip})
            # One warning per stack, at preview: the cost is paid by every job start on every new node.
            pulumi.log.warn(
                f"workloads {', '.join(with_pip)} run on the stock {args.ray_image_repository} image, so every "
                f"job start installs {', '.join(packages)} with pip on each new Ray node: GBs of downloads "
                "(minutes before the first task; CUDA wheels on GPU nodes) and jobs fail without a route "
                "to PyPI. Bake them in once: set rayImages to the images CI built from images/, or "
                "buildImages: true (README 'Workload images')",
                resource=self,
            )
        ns = args.namespace
        for group in args.worker_groups:
            if group.efa_devices and group.image is None:
                pulumi.log.warn(
                    f"worker group {group.name!r} requests EFA devices but runs the stock Ray image, which has "
                    "no libfabric / aws-ofi-nccl: NCCL will fall back to TCP sockets. Set its image to a Ray "
                    "build with the EFA software",
                    resource=self,
                )
        needs_storage = sorted({w.name for _, w in [*jobs, *services] if w.needs_storage})

        def documents(storage_path: str | None, images: Mapping[str, str]) -> _Documents:
            """Every Ray document for one STORAGE_PATH and image set (plain dicts; no resources here)."""
            with_images = replace(shape, images=dict(images))
            if needs_storage and not storage_path:
                pulumi.log.warn(
                    f"workloads {', '.join(needs_storage)} need shared storage but neither FSx nor S3 is "
                    "enabled: STORAGE_PATH is unset and checkpoints stay on one pod's local disk",
                    resource=self,
                )
            with_storage = replace(pods, storage_path=storage_path)
            return _Documents(
                cluster=build_ray_cluster(
                    name=args.ray_cluster_name, namespace=ns, shape=with_images, pods=with_storage
                ),
                jobs=[
                    build_ray_job(
                        job=job,
                        workload=workload,
                        namespace=ns,
                        cluster_name=args.ray_cluster_name,
                        shape=with_images,
                        pods=with_storage,
                        runtime_pip=pip_at_start,
                    )
                    for job, workload in jobs
                ],
                services=[
                    build_ray_service(
                        service=svc,
                        workload=workload,
                        namespace=ns,
                        shape=with_images,
                        pods=with_storage,
                        serve_config=build_serve_config(
                            env=run_env(workload, svc.env, storage_path),
                            app=workload.serve_app or CLASSIFIER,
                            num_replicas=svc.num_replicas,
                            pip=workload.pip if pip_at_start else (),
                            import_path=svc.import_path,
                        ),
                    )
                    for svc, workload in services
                ],
            )

        # STORAGE_PATH may only be known after deployment (an S3 bucket's generated name); then the
        # documents are built once it resolves. A plain value builds them right away (and validates).
        # Likewise the images: config gives plain digest references, a `pulumi up` build gives Outputs.
        storage_path = args.storage_path
        flavour_names = sorted(args.images)
        docs: _Documents | pulumi.Output[_Documents]
        if (storage_path is None or isinstance(storage_path, str)) and all(
            isinstance(args.images[f], str) for f in flavour_names
        ):
            docs = documents(storage_path, {f: str(args.images[f]) for f in flavour_names})
        else:
            docs = pulumi.Output.all(_untyped(storage_path), *[args.images[f] for f in flavour_names]).apply(
                lambda values: documents(values[0], dict(zip(flavour_names, values[1:], strict=True)))
            )

        def pick(select: Callable[[_Documents], Any]) -> Any:
            return select(docs) if isinstance(docs, _Documents) else docs.apply(select)

        # ---- resources -----------------------------------------------------------------------
        # With retainData the namespace and the claims outlive `pulumi destroy`: deleting the namespace
        # would delete the claims and, under a Delete reclaim policy, the data behind them. A later
        # `pulumi up` adopts them again: their names are fixed and everything they name (StorageClass,
        # PersistentVolume, bucket) is deterministic too, and the cluster's provider upserts objects
        # that already exist (ClusterTarget: upsertExistingObjects).
        keep = pulumi.ResourceOptions(
            parent=self, retain_on_delete=args.retain_data, depends_on=list(args.capacity)
        )
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": ns,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "app.kubernetes.io/part-of": "ray-on-eks",
                },
            },
            opts=keep,
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])

        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata={
                "name": contract.RAY_SERVICE_ACCOUNT,
                "namespace": ns,
                "annotations": args.service_account_annotations,
            },
            # Only the head pod mounts a token, and only for the autoscaler (pod-level override).
            automount_service_account_token=False,
            opts=in_ns,
        )
        claims = [
            k8s.core.v1.PersistentVolumeClaim(
                f"{name}-{volume.name}-claim",
                metadata={
                    "name": claim_name(volume.name),
                    "namespace": ns,
                    **({"annotations": dict(volume.claim_annotations)} if volume.claim_annotations else {}),
                },
                spec=_untyped(volume.claim_spec),
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[namespace], retain_on_delete=args.retain_data
                ),
            )
            for volume in args.volumes
        ]
        pod_inputs: list[pulumi.Resource] = [namespace, service_account, *claims, *args.capacity]
        if args.network_policies:
            # Created before any Ray pod: no window in which a pod runs without them. No finalizers;
            # deleted with the stack (the kept namespace, with retainData, is left open, not broken).
            pod_inputs += [
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-{policy['metadata']['name']}",
                    metadata=policy["metadata"],
                    spec=_untyped(policy["spec"]),
                    opts=in_ns,
                )
                for policy in build_network_policies(
                    namespace=ns,
                    kuberay_namespace=args.kuberay_namespace,
                    monitoring_namespace=args.monitoring_namespace,
                    expose_dashboards=args.expose_dashboards,
                )
            ]
        if args.kuberay is not None:
            pod_inputs.append(args.kuberay)
        if config_map_name:
            pod_inputs.append(
                k8s.core.v1.ConfigMap(
                    f"{name}-workloads",
                    metadata={
                        "name": config_map_name,
                        "namespace": ns,
                        "labels": {"app.kubernetes.io/part-of": "ray-on-eks"},
                    },
                    data=data,
                    immutable=True,
                    opts=in_ns,
                )
            )

        self.ray_cluster = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version=API_VERSION,
            kind="RayCluster",
            metadata=pick(lambda d: d.cluster["metadata"]),
            spec=pick(lambda d: d.cluster["spec"]),
            opts=pulumi.ResourceOptions(parent=self, depends_on=pod_inputs),
        )
        self.ray_jobs = [
            k8s.apiextensions.CustomResource(
                f"{name}-job-{job.name}",
                api_version=API_VERSION,
                kind="RayJob",
                metadata=pick(_item("jobs", index, "metadata")),
                spec=pick(_item("jobs", index, "spec")),
                # Submitted only once the shared cluster is ready (its waitFor annotation).
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*pod_inputs, self.ray_cluster]),
            )
            for index, (job, _) in enumerate(jobs)
        ]
        self.ray_services = [
            k8s.apiextensions.CustomResource(
                f"{name}-service-{svc.name}",
                api_version=API_VERSION,
                kind="RayService",
                metadata=pick(_item("services", index, "metadata")),
                spec=pick(_item("services", index, "spec")),
                opts=pulumi.ResourceOptions(parent=self, depends_on=pod_inputs),
            )
            for index, (svc, _) in enumerate(services)
        ]
        # Pre-pull: the Ray image lands on a new (GPU) node as soon as it joins. skipAwait: the
        # provider's DaemonSet await (pulumi-kubernetes provider/pkg/await/daemonset.go) would hold
        # `pulumi up` until every matching node finished a multi-GB pull; nothing depends on it, and
        # with no matching node yet (scale from zero) there is nothing to wait for anyway.
        image_inputs = replace(shape, images=dict(args.images))
        self.pre_pull_daemon_sets = []
        for group in pre_pull_groups(args.worker_groups, args.pre_pull_images):
            doc = build_pre_pull(
                shape=image_inputs, group=group, cluster_name=args.ray_cluster_name, namespace=ns
            )
            self.pre_pull_daemon_sets.append(
                k8s.apps.v1.DaemonSet(
                    f"{name}-pre-pull-{group.name}",
                    metadata={**doc["metadata"], "annotations": {"pulumi.com/skipAwait": "true"}},
                    spec=_untyped(doc["spec"]),
                    opts=in_ns,
                )
            )
        if args.cluster_type == "hyperpod":
            self._stuck_pod_cleanup(name, ns, in_ns)

        self.namespace: pulumi.Output[str] = namespace.metadata["name"]
        self.ray_cluster_name: pulumi.Output[str] = pulumi.Output.all(
            _untyped(self.ray_cluster).metadata, args.ray_cluster_name
        ).apply(lambda v: (v[0] or {}).get("name") or v[1])
        self.head_service_name: pulumi.Output[str] = self.ray_cluster_name.apply(head_service_name)
        self.dashboard_port_forward_command: pulumi.Output[str] = pulumi.Output.all(
            self.namespace, self.ray_cluster_name
        ).apply(lambda v: port_forward_command(v[0], v[1]))
        # One entry per RayService: its Serve Service and the exact port-forward (`serve-url` reads it).
        self.ray_service_endpoints: dict[str, dict[str, Any]] = {
            svc.name: ray_service_endpoint(ns, svc.name) for svc, _ in services
        }
        # KubeRay generates the token Secret named after the RayCluster (key "auth_token").
        self.ray_auth_token_secret_name: pulumi.Output[str] | None = (
            self.ray_cluster_name if args.token_auth else None
        )
        self.register_outputs(
            {
                "namespace": self.namespace,
                "rayClusterName": self.ray_cluster_name,
                "headServiceName": self.head_service_name,
                "dashboardPortForwardCommand": self.dashboard_port_forward_command,
                "rayAuthTokenSecretName": self.ray_auth_token_secret_name,
                "rayServices": self.ray_service_endpoints,
            }
        )

    def _stuck_pod_cleanup(self, name: str, namespace: str, opts: pulumi.ResourceOptions) -> None:
        """HyperPod: CronJob deleting Ray pods left in UnexpectedAdmissionError after node replacement."""
        sa_name = "ray-stuck-pod-cleanup"
        account = k8s.core.v1.ServiceAccount(
            f"{name}-cleanup-service-account",
            metadata={"name": sa_name, "namespace": namespace},
            opts=opts,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-cleanup-role",
            metadata={"name": sa_name, "namespace": namespace},
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=["pods"], verbs=["get", "list", "delete"]
                )
            ],
            opts=opts,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-cleanup-role-binding",
            metadata={"name": sa_name, "namespace": namespace},
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=sa_name
            ),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=sa_name, namespace=namespace)],
            opts=opts,
        )
        k8s.batch.v1.CronJob(
            f"{name}-stuck-pod-cleanup",
            metadata={"name": sa_name, "namespace": namespace},
            spec=_untyped(build_stuck_pod_cleanup_spec(namespace=namespace, service_account=sa_name)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, role, binding]),
        )

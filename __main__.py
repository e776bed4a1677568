"""ray-on-eks: load the stack config, build the components, export a few documented outputs.

This file only wires components together; each one lives in ``components/`` and never reads config.
"""

import pulumi

from components.builders.images import repository_name_for, stack_flavours
from components.builders.storage import storage_path_for
from components.cluster import ClusterTarget, ClusterTargetArgs
from components.config import load_stack_config
from components.fsx_lustre import FsxLustreStorage, FsxLustreStorageArgs
from components.hyperpod import HyperPodTarget, lookup_hyperpod
from components.kuberay_operator import KubeRayOperator, KubeRayOperatorArgs
from components.kubernetes_target import KubernetesTarget, KubernetesTargetArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.ray_cluster import RayClusterStack, RayClusterStackArgs, SharedVolume
from components.s3_mountpoint import S3Mountpoint, S3MountpointArgs
from components.workload_identity import ClusterIdentity
from components.workload_images import WorkloadImages, WorkloadImagesArgs

config = load_stack_config()
# Every namespace with Ray pods: watched by the operator, scraped by Prometheus.
ray_namespaces = tuple(dict.fromkeys([config.namespace, *config.kuberay.watch_namespaces]))

# --- The cluster -------------------------------------------------------------------------------------
# EKS / HyperPod (AWS lookups, optionally a new EKS cluster), or any cluster a kubeconfig context points
# at (clusterType kubernetes: no AWS call at all). Either way one explicit Kubernetes provider.
# HyperPod: read the cluster (orchestrator EKS cluster, subnets, security groups, instance groups) and
# check that every Ray pod fits on its instance groups. Plain invokes: a problem is a one-line config
# error before the first resource below is registered.
hyperpod: HyperPodTarget | None = lookup_hyperpod(config) if config.hyperpod is not None else None
target: ClusterTarget | KubernetesTarget
aws_target: ClusterTarget | None = None
if config.cluster_type == "kubernetes":
    target = KubernetesTarget(
        "cluster", KubernetesTargetArgs(kubernetes=config.kubernetes, storage=config.storage)
    )
    pulumi.export("kubeContext", target.kube_context)
else:
    cluster_name = hyperpod.cluster.eks_cluster_name if hyperpod is not None else config.cluster_name
    assert cluster_name is not None  # config validation requires clusterName on eks stacks
    target = aws_target = ClusterTarget(
        "cluster",
        ClusterTargetArgs(
            cluster_type=config.cluster_type,
            cluster_name=cluster_name,
            region=config.region,
            create_cluster=config.create_cluster,
            new_cluster=config.new_cluster,
            hyperpod=config.hyperpod,
            network_policies=config.network_policies,
        ),
    )
    pulumi.export("region", config.region)
    pulumi.export("kubeconfig", aws_target.kubeconfig)

pulumi.export("clusterType", config.cluster_type)
pulumi.export("clusterName", target.cluster_name)
pulumi.export("namespace", config.namespace)
if hyperpod is not None:
    pulumi.export("hyperpodClusterName", hyperpod.cluster.name)

# --- Shared storage --------------------------------------------------------------------------------
# The storage components own the drivers, IAM, network rules, StorageClass / PersistentVolumes; the
# PVCs are created by RayClusterStack in the Ray namespace from their `claim_spec` + `mount_path`
# (SharedVolume(name="fsx", mount_path=fsx.mount_path, claim_spec=fsx.claim_spec), same for "s3").
# Their Kubernetes children use the cluster's provider; their AWS children the default aws provider.
# (clusterType kubernetes refuses fsx and s3 in config validation: aws_target is None only there.)
identity: ClusterIdentity | None = None
if aws_target is not None:
    identity = ClusterIdentity(
        iam_mode=config.iam_mode,
        cluster_name=aws_target.cluster_name,
        account_id=aws_target.account_id,
        partition=aws_target.partition,
        oidc_provider_arn=aws_target.oidc_provider_arn,
        oidc_issuer_url=aws_target.oidc_issuer_url,
        kubernetes_version=aws_target.kubernetes_version,
    )
# Exactly one storage component installs the Pod Identity agent add-on when asked to.
install_agent = config.manage_pod_identity_agent

fsx: FsxLustreStorage | None = None
if config.fsx.enabled and aws_target is not None and identity is not None:
    # fsx.* overrides win; on HyperPod the nodes' own subnet and security groups (hyperpod.* overrides,
    # else the described cluster's VpcConfig), not the EKS cluster's.
    fsx_groups: list[pulumi.Input[str]] = list(
        config.fsx.security_group_ids or (hyperpod.fsx_security_group_ids if hyperpod else ())
    ) or [aws_target.cluster_security_group_id]
    fsx = FsxLustreStorage(
        "fsx",
        FsxLustreStorageArgs(
            config=config.fsx,
            identity=identity,
            region=config.region,
            # fsx.subnetId, else HyperPod's subnet, else FsxLustreStorage picks a private cluster subnet.
            subnet_id=config.fsx.subnet_id or (hyperpod.fsx_subnet_id if hyperpod else None),
            cluster_subnet_ids=aws_target.subnet_ids,
            security_group_ids=fsx_groups,
            retain_data=config.retain_data,
            manage_pod_identity_agent=install_agent,
            pod_identity_agent_version=config.pod_identity_agent_version,
        ),
        opts=pulumi.ResourceOptions(provider=target.provider),
    )
    install_agent = False

s3: S3Mountpoint | None = None
if config.s3.enabled and identity is not None:
    s3 = S3Mountpoint(
        "s3",
        S3MountpointArgs(
            config=config.s3,
            identity=identity,
            region=config.region,
            ray_namespace=config.namespace,
            retain_data=config.retain_data,
            manage_pod_identity_agent=install_agent,
            pod_identity_agent_version=config.pod_identity_agent_version,
        ),
        opts=pulumi.ResourceOptions(provider=target.provider),
    )
    install_agent = False
    pulumi.export("bucketName", s3.bucket_name)

# STORAGE_PATH for Ray Train: /fsx/ray-results, else s3://<bucket>/ray-results, else None. A plain
# string whenever it is known before deployment, so `pulumi preview` shows the Ray specs in full; only
# a generated bucket name makes it an Output.
storage_path: str | pulumi.Output[str | None] | None
if isinstance(target, KubernetesTarget):
    storage_path = target.storage_path  # /shared/ray-results on storage.storageClass, else None
elif s3 is not None and not config.fsx.enabled and config.s3.bucket_name is None:
    storage_path = s3.bucket_name.apply(lambda bucket: storage_path_for(False, bucket))
else:
    storage_path = storage_path_for(config.fsx.enabled, config.s3.bucket_name if s3 is not None else None)
pulumi.export("storagePath", storage_path)

# --- Monitoring (optional) ---------------------------------------------------------------------------
# Prometheus + Grafana with Ray scraping, alerts and Ray's own dashboards. Its ray_head_env tells the
# Ray dashboard where Grafana and Prometheus are.
monitoring: Monitoring | None = None
if config.monitoring.enabled:
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            namespace=config.monitoring.namespace,
            ray_namespaces=ray_namespaces,
            prometheus_retention=config.monitoring.prometheus_retention,
            prometheus_storage_gib=config.monitoring.prometheus_storage_gib,
            storage_class=config.monitoring.storage_class,
            retain_data=config.retain_data,
            expose_dashboards=config.expose_dashboards,
            scrape_autoscaler=config.autoscaler.enabled,
            alertmanager=config.monitoring.alertmanager,
            scrape_kube_proxy=config.monitoring.scrape_kube_proxy,
        ),
        # On a new cluster Prometheus' claim (no storageClassName) binds through the default gp3
        # StorageClass ClusterTarget creates; a claim created before it gets it assigned later
        # (retroactive default StorageClass assignment, GA in Kubernetes 1.28), so no ordering is needed.
        opts=pulumi.ResourceOptions(provider=target.provider),
    )
    pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    pulumi.export("grafanaPortForwardCommand", monitoring.grafana_port_forward_command)
    pulumi.export("monitoringNamespace", monitoring.namespace)

# --- Workload images ----------------------------------------------------------------------------------
# The Ray images with the workloads' dependencies baked in (images/): digests from config (CI-built), or
# built during `pulumi up` into the stack's ECR repository. Without them the stock image + runtime pip.
images = WorkloadImages(
    "images",
    WorkloadImagesArgs(
        configured=config.ray_images.as_mapping(),
        repository_name=(
            repository_name_for(pulumi.get_stack(), config.ecr_repository.name)
            if config.ecr_repository.enabled
            else None
        ),
        keep_images=config.ecr_repository.keep_images,
        retain_data=config.retain_data,
        build_flavours=(
            stack_flavours(group.gpus for group in config.worker_groups) if config.build_images else ()
        ),
    ),
)
if images.repository_url is not None:
    pulumi.export("workloadImageRepositoryUrl", images.repository_url)
    pulumi.export("workloadImagePushPolicy", images.push_policy)

# --- KubeRay operator and the Ray cluster, jobs and services -----------------------------------------
# The operator's ServiceMonitor needs the monitoring chart's CRDs, so it (and only it) waits for that
# chart; the operator release and the Ray resources do not (bench/RESULTS.md, deploy critical path).
operator = KubeRayOperator(
    "kuberay",
    KubeRayOperatorArgs(
        config=config.kuberay,
        watch_namespaces=ray_namespaces,
        service_monitor=monitoring is not None and monitoring.kuberay_service_monitor,
        service_monitor_depends_on=[monitoring.release] if monitoring is not None else [],
    ),
    opts=pulumi.ResourceOptions(provider=target.provider),
)
# The storage components own drivers, IAM and StorageClass / PersistentVolumes; RayClusterStack owns
# the namespace and creates the claims in it from their claim specs.
volumes = [
    SharedVolume(
        name=volume_name,
        mount_path=storage.mount_path,
        claim_spec=storage.claim_spec,
        claim_annotations=storage.claim_annotations,
    )
    for volume_name, storage in (("fsx", fsx), ("s3", s3))
    if storage is not None
]
if isinstance(target, KubernetesTarget) and target.shared_volume is not None:
    volumes.append(target.shared_volume)
ray = RayClusterStack(
    "ray",
    RayClusterStackArgs(
        cluster_type=config.cluster_type,
        namespace=config.namespace,
        ray_cluster_name=config.ray_cluster_name,
        head=config.head,
        worker_groups=config.worker_groups,
        autoscaler=config.autoscaler,
        gcs_fault_tolerance=config.gcs_fault_tolerance,
        token_auth=config.token_auth,
        ray_image_repository=config.ray_image_repository,
        images=images.images,
        runtime_pip=config.runtime_pip,
        pre_pull_images=config.pre_pull_images,
        expose_dashboards=config.expose_dashboards,
        ray_jobs=config.ray_jobs,
        ray_services=config.ray_services,
        retain_data=config.retain_data,
        # The operator release (it waits for the CRDs): not the whole component, whose ServiceMonitor
        # waits for the monitoring chart and would put it back on Ray's critical path.
        kuberay=operator.release,
        capacity=aws_target.node_pools if aws_target is not None else [],
        volumes=volumes,
        storage_path=storage_path,
        head_env=monitoring.ray_head_env if monitoring is not None else {},
        service_account_annotations=s3.ray_service_account_annotations if s3 is not None else {},
        network_policies=config.network_policies,
        kuberay_namespace=config.kuberay.namespace,
        monitoring_namespace=config.monitoring.namespace if monitoring is not None else None,
    ),
    opts=pulumi.ResourceOptions(provider=target.provider, depends_on=[operator.release]),
)
pulumi.export("rayClusterName", ray.ray_cluster_name)
pulumi.export("headServiceName", ray.head_service_name)
pulumi.export("dashboardPortForwardCommand", ray.dashboard_port_forward_command)
if ray.ray_service_endpoints:
    pulumi.export("rayServices", ray.ray_service_endpoints)
if ray.ray_auth_token_secret_name is not None:
    pulumi.export("rayAuthTokenSecretName", ray.ray_auth_token_secret_name)

"""ray-on-eks: load the stack config, build the components, export a few documented outputs.

This file only wires components together; each one lives in ``components/`` and never reads config.
"""

import pulumi

from components.cluster import ClusterTarget, ClusterTargetArgs
from components.config import load_stack_config
from components.kuberay_operator import KubeRayOperator, KubeRayOperatorArgs
from components.ray_cluster import RayClusterStack, RayClusterStackArgs

config = load_stack_config()

target = ClusterTarget(
    "cluster",
    ClusterTargetArgs(
        cluster_type=config.cluster_type,
        cluster_name=config.cluster_name,
        region=config.region,
        create_cluster=config.create_cluster,
        new_cluster=config.new_cluster,
        hyperpod=config.hyperpod,
    ),
)

pulumi.export("clusterType", config.cluster_type)
pulumi.export("clusterName", target.cluster_name)
pulumi.export("region", config.region)
pulumi.export("kubeconfig", target.kubeconfig)
pulumi.export("namespace", config.namespace)
if config.hyperpod is not None:
    pulumi.export("hyperpodClusterName", config.hyperpod.cluster_name)

# ---- KubeRay operator and the Ray cluster, jobs and services ----------------------------------------
operator = KubeRayOperator(
    "kuberay",
    KubeRayOperatorArgs(
        config=config.kuberay,
        watch_namespaces=[config.namespace],
        service_monitor=config.monitoring.enabled,
    ),
    opts=pulumi.ResourceOptions(provider=target.provider),
)
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
        expose_dashboards=config.expose_dashboards,
        ray_jobs=config.ray_jobs,
        ray_services=config.ray_services,
        retain_data=config.retain_data,
        kuberay=operator,
    ),
    opts=pulumi.ResourceOptions(provider=target.provider, depends_on=[operator]),
)
pulumi.export("rayClusterName", ray.ray_cluster_name)
pulumi.export("headServiceName", ray.head_service_name)
pulumi.export("dashboardPortForwardCommand", ray.dashboard_port_forward_command)
if ray.ray_auth_token_secret_name is not None:
    pulumi.export("rayAuthTokenSecretName", ray.ray_auth_token_secret_name)

"""ray-on-eks: load the stack config, build the components, export a few documented outputs.

This file only wires components together; each one lives in ``components/`` and never reads config.
"""

import pulumi

from components.cluster import ClusterTarget, ClusterTargetArgs
from components.config import load_stack_config
from components.monitoring import Monitoring, MonitoringArgs

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

# Monitoring (optional): Prometheus + Grafana with Ray scraping, alerts and Ray's dashboards.
# monitoring.ray_head_env goes to the Ray head (RAY_GRAFANA_HOST, ...) and
# monitoring.kuberay_service_monitor to the KubeRay operator chart (metrics.serviceMonitor.enabled),
# whose release must then depend on monitoring.release (it installs the ServiceMonitor CRD).
monitoring: Monitoring | None = None
if config.monitoring.enabled:
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            namespace=config.monitoring.namespace,
            ray_namespaces=tuple(dict.fromkeys([config.namespace, *config.kuberay.watch_namespaces])),
            prometheus_retention=config.monitoring.prometheus_retention,
            prometheus_storage_gib=config.monitoring.prometheus_storage_gib,
            storage_class=config.monitoring.storage_class,
            retain_data=config.retain_data,
            expose_dashboards=config.expose_dashboards,
            scrape_autoscaler=config.autoscaler.enabled,
        ),
        opts=pulumi.ResourceOptions(provider=target.provider),
    )
    pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    pulumi.export("grafanaPortForwardCommand", monitoring.grafana_port_forward_command)
    pulumi.export("monitoringNamespace", monitoring.namespace)

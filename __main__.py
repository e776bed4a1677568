"""ray-on-eks: load the stack config, build the components, export a few documented outputs.

This file only wires components together; each one lives in ``components/`` and never reads config.
"""

import pulumi

from components.cluster import ClusterTarget, ClusterTargetArgs
from components.config import load_stack_config

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

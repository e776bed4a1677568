"""Names shared across components and with the workloads: mount paths, ports, the Ray service account.

These are constants, not configuration: workloads, storage, monitoring and the Ray cluster agree on
them, so changing one here changes it everywhere at once.
"""

from __future__ import annotations

# Shared storage mount points in every Ray pod (head and workers).
FSX_MOUNT_PATH = "/fsx"
S3_MOUNT_PATH = "/s3"
# clusterType kubernetes: the claim from storage.storageClass.
SHARED_MOUNT_PATH = "/shared"
# Sub-directory of the shared storage where Ray Train writes runs and checkpoints (STORAGE_PATH).
STORAGE_SUBDIR = "ray-results"

# Service account of every Ray pod (head, workers, RayJob submitters). AWS access for the pods is
# bound to exactly this namespace/name through EKS Pod Identity or IRSA.
RAY_SERVICE_ACCOUNT = "ray-workloads"

# Ray metrics: KubeRay pods expose Prometheus metrics on this named container port.
RAY_METRICS_PORT = 8080
RAY_METRICS_PORT_NAME = "metrics"
RAY_DASHBOARD_PORT = 8265
RAY_CLIENT_PORT = 10001
RAY_SERVE_PORT = 8000
RAY_GCS_PORT = 6379

# The label KubeRay puts on every Ray pod, and its values.
RAY_NODE_TYPE_LABEL = "ray.io/node-type"
RAY_CLUSTER_LABEL = "ray.io/cluster"

# Declares on data-bearing resources (buckets, FSx StorageClasses, PersistentVolumes) whether
# `pulumi destroy` keeps their data ("true") or deletes it ("false", from retainData: false).
# The policy pack reads it because CrossGuard cannot see the retainOnDelete resource option.
RETAIN_DATA_LABEL = "ray-on-eks/retain-data"

# Declares that a resource exposes a dashboard (Ray dashboard/client, Grafana) on purpose: the program
# sets it exactly when the stack config has exposeDashboards: true, and the policy pack's
# dashboards-not-exposed policy accepts a LoadBalancer/NodePort only on resources that carry it.
EXPOSE_DASHBOARDS_ANNOTATION = "ray-on-eks/expose-dashboards"

"""Shared storage on any Kubernetes cluster (``clusterType: kubernetes``): the claim spec, STORAGE_PATH
and the honest warning for ReadWriteOnce storage.

Pure: config in, plain values out; ``KubernetesTarget`` turns them into a ``SharedVolume`` that
``RayClusterStack`` claims and mounts like the FSx and S3 volumes.

Why ReadWriteOnce gets a warning and not an error: an access mode is per *node*, not per pod
(Kubernetes "Persistent Volumes", access modes). On a single-node cluster (kind's default, minikube)
the head, the workers and the RayJob submitter all mount one ReadWriteOnce volume and Ray Train's
STORAGE_PATH really is shared. On several nodes it is not: a node-local volume (local-path, kind's
``standard`` class) pins every pod that mounts it to its node (pods that do not fit stay Pending), and
a network block disk cannot attach to a second node (Multi-Attach error, pod stuck in
ContainerCreating). Either way multi-node Ray Train cannot checkpoint there; it needs ReadWriteMany.
"""

from __future__ import annotations

from typing import Any

from components.config import StorageConfig
from components.contract import SHARED_MOUNT_PATH, STORAGE_SUBDIR

SHARED_VOLUME_NAME = "shared"


def build_shared_claim_spec(storage: StorageConfig) -> dict[str, Any]:
    """PersistentVolumeClaim ``.spec`` for ``storage`` (dynamic provisioning from its StorageClass)."""
    if storage.storage_class is None:
        raise ValueError("StorageConfig.storage_class is not set: there is no shared claim to build")
    return {
        "storageClassName": storage.storage_class,
        "accessModes": [storage.access_mode],
        "resources": {"requests": {"storage": f"{storage.size_gib}Gi"}},
    }


def shared_storage_path(storage: StorageConfig) -> str | None:
    """STORAGE_PATH on the shared claim (``/shared/ray-results``), or None without a StorageClass."""
    if storage.storage_class is None:
        return None
    return f"{SHARED_MOUNT_PATH}/{STORAGE_SUBDIR}"


def shared_storage_warning(storage: StorageConfig) -> str | None:
    """What ``pulumi up`` should warn about the configured storage, or None when there is nothing to say."""
    # Without a StorageClass there is no STORAGE_PATH; RayClusterStack already warns when a configured
    # workload needs one.
    if storage.storage_class is not None and storage.access_mode == "ReadWriteOnce":
        return (
            f"storage.accessMode is ReadWriteOnce: StorageClass {storage.storage_class!r} gives a volume one "
            f"node can mount, so STORAGE_PATH ({shared_storage_path(storage)}) is shared only while every "
            "Ray pod runs on that node (single-node clusters such as kind). On several nodes, pods that "
            "mount it stay Pending or fail to attach; use a ReadWriteMany StorageClass for multi-node "
            "Ray Train"
        )
    return None

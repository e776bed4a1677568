"""KubernetesTarget: any cluster a kubeconfig context points at (``clusterType: kubernetes``), no AWS.

kind, minikube, an on-premises cluster or another cloud's: the program registers one explicit
``kubernetes.Provider`` and nothing else here, and makes no AWS call at all (no ``aws:`` invoke,
no AWS resource; ``tests/test_kubernetes_target.py`` runs the kind stack under mocks and checks it).

The provider reads the kubeconfig the way kubectl does (pulumi-kubernetes
``provider/pkg/provider/provider.go`` and ``util.go``): ``kubernetes.kubeconfig`` is a file *path*
(``~`` expanded by the provider; contents are refused by config validation because the stack
config is plain text), unset means ``$KUBECONFIG`` (the SDK's default) or ``~/.kube/config``;
``kubernetes.context`` overrides the current context. Only the path and context name are stored in
the state, never credentials. Changing either replaces the provider, and with it every resource.

Shared storage comes from an existing StorageClass (``storage.storageClass``): one claim, created
by ``RayClusterStack`` like the FSx and S3 claims, mounted at ``/shared`` in every Ray pod, and
STORAGE_PATH ``/shared/ray-results``. See ``components/builders/kubernetes.py`` for what
ReadWriteOnce storage means for multi-node Ray Train.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.builders.kubernetes import (
    SHARED_VOLUME_NAME,
    build_shared_claim_spec,
    shared_storage_path,
    shared_storage_warning,
)
from components.config import KubernetesConfig, StorageConfig
from components.contract import SHARED_MOUNT_PATH
from components.ray_cluster import SharedVolume

# The claim's StorageClass is the user's, so its volumeBindingMode is unknown here. pulumi-kubernetes
# awaits a new claim until Pending (WaitForFirstConsumer) or Bound (Immediate), and only on *create*
# (provider/pkg/await/awaiters.go, untilCoreV1PersistentVolumeClaimReady). With retainData the claim
# outlives `pulumi destroy` already Bound; the next `pulumi up` creates (adopts) it again and, on a
# WaitForFirstConsumer class (kind's `standard`, most clouds' defaults), would wait 5 minutes for a
# Pending that never comes and fail. The RayCluster's own await (ready, 30 minutes) already waits for
# the pods that mount the claim, so the claim itself is not awaited.
SHARED_CLAIM_ANNOTATIONS = {"pulumi.com/skipAwait": "true"}


@dataclass(frozen=True, kw_only=True)
class KubernetesTargetArgs:
    """Which kubeconfig/context to deploy with, and the storage section of the config."""

    kubernetes: KubernetesConfig | None = None
    storage: StorageConfig = field(default_factory=StorageConfig)


class KubernetesTarget(pulumi.ComponentResource):
    """The cluster of a kubeconfig context, with the explicit provider every other component uses.

    Outputs (plain values): ``provider``, ``cluster_name`` (the context, or ``current-context``),
    ``kube_context`` (``None`` = the current context), ``shared_volume`` (``None`` without
    ``storage.storageClass``) and ``storage_path``.
    """

    def __init__(
        self, name: str, args: KubernetesTargetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-on-eks:k8s:KubernetesTarget", name, None, opts)
        settings = args.kubernetes or KubernetesConfig()
        self.kube_context: str | None = settings.context
        self.cluster_name: str = settings.context or "current-context"

        self.shared_volume: SharedVolume | None = None
        if args.storage.storage_class is not None:
            self.shared_volume = SharedVolume(
                name=SHARED_VOLUME_NAME,
                mount_path=SHARED_MOUNT_PATH,
                claim_spec=build_shared_claim_spec(args.storage),
                claim_annotations=SHARED_CLAIM_ANNOTATIONS,
            )
        self.storage_path: str | None = shared_storage_path(args.storage)
        warning = shared_storage_warning(args.storage)
        if warning is not None:
            pulumi.log.warn(warning, resource=self)

        # kubeconfig None: the SDK fills in $KUBECONFIG when set; otherwise the provider loads
        # ~/.kube/config with client-go's default loading rules.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=settings.kubeconfig,
            context=settings.context,
            enable_server_side_apply=True,
            # As on EKS (components/cluster.py): with retainData the Ray namespace and the shared claim
            # outlive `pulumi destroy`; since pulumi-kubernetes 4.29 the next `up` would fail on them
            # with AlreadyExists unless the create may adopt (server-side apply) an existing object.
            upsert_existing_objects=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"clusterName": self.cluster_name, "storagePath": self.storage_path})

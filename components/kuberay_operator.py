"""KubeRayOperator: the KubeRay CRDs and the ``kuberay-operator`` Helm release.

* The CRDs are vendored in ``components/crds/kuberay-<version>/`` (copied from the KubeRay release
  tag) and applied as Pulumi-managed ``CustomResourceDefinition`` resources with server-side apply.
  Helm installs a chart's ``crds/`` once and never upgrades them, so the chart is installed with
  ``skip_crds``: bumping ``KUBERAY_VERSION`` plus a new CRD folder upgrades CRDs and operator
  together on ``pulumi up``.
* Each CRD is its own resource with ``retain_on_delete``: deleting a CRD deletes every RayCluster,
  RayJob and RayService in the cluster, including ones this stack does not own. They used to be the
  children of one ``yaml/v2`` ConfigGroup (cheaper to evaluate: the files went to the provider as
  text), but ``retain_on_delete`` on a ConfigGroup is not known to reach its children: the provider
  registers them with only ``Parent`` (pulumi/pulumi-kubernetes
  ``provider/pkg/provider/yaml/v2/configgroup.go``) and issue pulumi-kubernetes#3065 was closed
  won't-fix. Set on the CRD resource itself, the engine records it in the state of that resource.
* Upgrading a stack deployed with the ConfigGroup: each CRD carries an alias to its old URN (the
  ConfigGroup named its children ``<group>-<crd name>``, yaml/v2 ``yaml.go`` ``parseUnstructured``),
  so the engine updates the same resource in place instead of creating a new one and deleting the
  old one — a delete that, without retention in the old state, would have removed the CRD and
  every Ray object with it. The emptied ConfigGroup is then deleted; it is a component, so its
  deletion only removes it from the state and touches nothing in the cluster.
* The operator is a real Helm release (``helm.v3.Release``): ``helm history`` / ``helm rollback``
  work, and values come from :func:`components.builders.kuberay.build_kuberay_values`.

Outputs: ``namespace``, ``release_name``, ``crds`` (the CRD resources; everything that creates Ray
custom resources must depend on them, which depending on this component does).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.builders.kuberay import build_kuberay_values, build_operator_service_monitor
from components.config import KubeRayConfig
from components.versions import KUBERAY_CHART, KUBERAY_CHART_REPO, KUBERAY_VERSION

CRD_ROOT = Path(__file__).resolve().parent / "crds"
CRD_KINDS = ("rayclusters", "rayjobs", "rayservices")


def crd_dir(version: str = KUBERAY_VERSION) -> Path:
    """Folder of the vendored CRDs for ``version``."""
    return CRD_ROOT / f"kuberay-{version}"


def crd_texts(version: str = KUBERAY_VERSION) -> list[str]:
    """The vendored CRD files of KubeRay ``version``, in ``CRD_KINDS`` order, as text.

    They are compact JSON converted from the release's ``ray.io_<kind>.yaml`` (same content; the
    tests check it against the upstream files' recorded digests): ``json.loads`` reads the 1 MB in
    a few milliseconds where a YAML parser of the 3 MB originals would take seconds.
    """
    folder = crd_dir(version)
    texts: list[str] = []
    for kind in CRD_KINDS:
        path = folder / f"ray.io_{kind}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: convert the CRDs of KubeRay {version} "
                f"(ray-operator/config/crd/bases/ray.io_{kind}.yaml) to JSON into {folder} "
                "(python -m components.kuberay_operator --vendor-crds <dir with the YAML files>)"
            )
        texts.append(path.read_text())
    return texts


@functools.cache
def load_crds(version: str = KUBERAY_VERSION) -> list[dict[str, Any]]:
    """The CRD documents of KubeRay ``version`` (one per kind), parsed (for checks and tests)."""
    return [json.loads(text) for text in crd_texts(version)]


# The ConfigGroup that held the CRDs up to this version (see the module docstring).
PREVIOUS_CRD_GROUP_TYPE = "kubernetes:yaml/v2:ConfigGroup"
CRD_TYPE = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def crd_resource_name(component: str, kind: str) -> str:
    """Pulumi name of the CRD resource for ``kind`` (``kuberay-crd-rayclusters``)."""
    return f"{component}-crd-{kind}"


def previous_crd_alias(component: str, parent: pulumi.Resource, crd_name: str) -> pulumi.Alias:
    """The URN the CRD ``crd_name`` had as a child of the ``<component>-crds`` ConfigGroup.

    yaml/v2 named each object ``<group name>-<metadata.name>`` (cluster-scoped, no resourcePrefix)
    and parented it to the group, itself a child of this component.
    """
    group = pulumi.create_urn(f"{component}-crds", PREVIOUS_CRD_GROUP_TYPE, parent=parent)
    return pulumi.Alias(name=f"{component}-crds-{crd_name}", type_=CRD_TYPE, parent=group)


def vendor_crds(source: Path, version: str = KUBERAY_VERSION) -> None:
    """Write the JSON form of the release's ``ray.io_<kind>.yaml`` files from ``source``."""
    folder = crd_dir(version)
    folder.mkdir(parents=True, exist_ok=True)
    for kind in CRD_KINDS:
        text = (source / f"ray.io_{kind}.yaml").read_text()
        # libyaml's safe loader when PyYAML has it (the PyPI wheels do): same documents, 5x faster.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        (document,) = [d for d in yaml.load_all(text, Loader=loader) if d]
        (folder / f"ray.io_{kind}.json").write_text(json.dumps(document, separators=(",", ":")) + "\n")


@dataclass(frozen=True, kw_only=True)
class KubeRayOperatorArgs:
    """The operator's config section plus what other components decide."""

    config: KubeRayConfig
    # Namespaces whose RayClusters/RayJobs/RayServices the operator reconciles (the Ray namespace).
    watch_namespaces: Sequence[str] = ()
    # Create a ServiceMonitor for the operator's metrics (when monitoring is enabled).
    service_monitor: bool = False
    service_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # Resources the Helm release must wait for, e.g. the Monitoring component when service_monitor is
    # on: the chart's ServiceMonitor needs the monitoring.coreos.com CRDs kube-prometheus-stack installs.
    # (A component's own depends_on does not reach its children, hence this explicit hook.)
    release_depends_on: Sequence[pulumi.Resource] = ()
    # What the operator's ServiceMonitor (created when service_monitor is on) waits for: the Monitoring
    # component's release, which installs the monitoring.coreos.com CRDs. Only that object waits;
    # the operator release, and the Ray resources behind it, do not.
    service_monitor_depends_on: Sequence[pulumi.Resource] = ()


class KubeRayOperator(pulumi.ComponentResource):
    """KubeRay CRDs (Pulumi-managed, retained on destroy) and the operator Helm release."""

    def __init__(
        self, name: str, args: KubeRayOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-on-eks:k8s:KubeRayOperator", name, None, opts)
        cfg = args.config
        # Build (and so validate: unknown feature gates raise) before creating anything.
        values = build_kuberay_values(
            cpu=cfg.cpu,
            memory=cfg.memory,
            feature_gates=cfg.feature_gates,
            batch_scheduler=cfg.batch_scheduler,
            watch_namespaces=[*cfg.watch_namespaces, *args.watch_namespaces],
            # The chart's ServiceMonitor would make the release wait for monitoring; it is created
            # below, outside the chart (build_operator_service_monitor says why).
            service_monitor=False,
            node_selector=args.node_selector,
        )
        self.crds = [
            k8s.apiextensions.v1.CustomResourceDefinition(
                crd_resource_name(name, kind),
                metadata=doc["metadata"],
                spec=doc["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # Deleting a CRD deletes every custom resource of that kind in the cluster.
                    retain_on_delete=True,
                    aliases=[previous_crd_alias(name, self, doc["metadata"]["name"])],
                ),
            )
            for kind, doc in zip(CRD_KINDS, load_crds(), strict=True)
        ]

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": cfg.namespace,
                "labels": {
                    # The operator pod meets the restricted profile (chart securityContext + ours).
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "app.kubernetes.io/part-of": "ray-on-eks",
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="kuberay-operator",
            chart=KUBERAY_CHART,
            version=KUBERAY_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBERAY_CHART_REPO),
            namespace=namespace.metadata["name"],
            values=values,
            skip_crds=True,
            atomic=True,
            cleanup_on_fail=True,
            timeout=600,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*self.crds, namespace, *args.release_depends_on]
            ),
        )

        self.service_monitor: k8s.apiextensions.CustomResource | None = None
        if args.service_monitor:
            monitor = build_operator_service_monitor(
                namespace=cfg.namespace, chart_name=KUBERAY_CHART, labels=args.service_monitor_labels
            )
            self.service_monitor = k8s.apiextensions.CustomResource(
                f"{name}-service-monitor",
                api_version=monitor["apiVersion"],
                kind=monitor["kind"],
                metadata=monitor["metadata"],
                spec=monitor["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[namespace, *args.service_monitor_depends_on]
                ),
            )

        self.namespace: pulumi.Output[str] = namespace.metadata["name"]
        self.release_name: pulumi.Output[str] = self.release.status.name
        self.register_outputs(
            {
                "namespace": self.namespace,
                "releaseName": self.release_name,
            }
        )


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--vendor-crds":
        raise SystemExit(
            "usage: python -m components.kuberay_operator --vendor-crds <dir with ray.io_*.yaml>"
        )
    vendor_crds(Path(sys.argv[2]))

"""Monitoring: kube-prometheus-stack with Ray scraping, Ray alerts and Ray's own Grafana dashboards.

What ``pulumi up`` leaves behind, with nothing to import by hand:

* the kube-prometheus-stack chart in its own namespace, set up for a managed control plane (no
  controller-manager / scheduler / etcd / kube-proxy targets or alerts that EKS can never satisfy),
  with requests and limits on every container and Alertmanager off unless asked for; Prometheus
  selects PodMonitors,
  ServiceMonitors and PrometheusRules from every namespace (so the KubeRay operator's ServiceMonitor
  is picked up); Grafana is ClusterIP only, anonymous access off, embeddable in the Ray dashboard;
* a generated Grafana admin password, kept in a Secret the chart references (never in values);
* PodMonitors for Ray head and worker pods in every Ray namespace, on the named ``metrics`` port;
* a PrometheusRule with Ray alerts written against metric names the pinned Ray exports;
* Ray's dashboards (default, serve, data, train, ...) generated from the installed ``ray`` package
  at program run and loaded by Grafana's dashboard sidecar from labelled ConfigMaps.

``ray_head_env`` is what the Ray head needs (``RAY_GRAFANA_HOST``, ``RAY_PROMETHEUS_HOST``, ...) for
its Metrics tab; ``__main__.py`` passes it to the Ray cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.builders import monitoring as builders
from components.versions import (
    KUBE_PROMETHEUS_STACK_CHART,
    KUBE_PROMETHEUS_STACK_REPO,
    KUBE_PROMETHEUS_STACK_VERSION,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_LOCAL_URL = re.compile(r"^https?://[^/\s]+$")


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """Where the stack goes, what it scrapes and how users reach Grafana."""

    namespace: str
    """Namespace created for the monitoring stack."""
    ray_namespaces: Sequence[str]
    """Every namespace whose Ray pods are scraped (the stack's Ray namespace and any watched ones)."""
    prometheus_retention: str = "15d"
    prometheus_storage_gib: int | None = None
    """Persistent volume for Prometheus; None keeps data in an emptyDir (lost on restart)."""
    storage_class: str | None = None
    retain_data: bool = True
    """With persistent storage, keep the namespace (and so Prometheus' volume claim) on destroy."""
    expose_dashboards: bool = False
    """Only then may Grafana get an (internal) LoadBalancer; otherwise ClusterIP + port-forward."""
    scrape_autoscaler: bool = False
    """Also scrape the in-tree autoscaler's metrics on the head (set when the autoscaler is on)."""
    alertmanager: bool = False
    """Run Alertmanager (receivers come from AlertmanagerConfig resources); off: alerts go nowhere."""
    scrape_kube_proxy: bool = False
    """Scrape kube-proxy (only where it serves metrics on the node's address)."""
    grafana_local_port: int = 3000
    """Local port of ``kubectl port-forward`` to Grafana."""
    grafana_iframe_host: str | None = None
    """Browser-side Grafana URL for the Ray dashboard's iframes; default http://127.0.0.1:<local port>."""


class Monitoring(pulumi.ComponentResource):
    """kube-prometheus-stack, Ray PodMonitors, Ray alerts and Ray's Grafana dashboards."""

    grafana_admin_password: pulumi.Output[str]
    """The generated Grafana ``admin`` password (secret)."""
    ray_head_env: Mapping[str, pulumi.Output[str]]
    """Environment for the Ray head: RAY_GRAFANA_HOST, RAY_PROMETHEUS_HOST, RAY_GRAFANA_IFRAME_HOST,
    RAY_PROMETHEUS_NAME."""
    grafana_port_forward_command: pulumi.Output[str]
    namespace: pulumi.Output[str]
    kuberay_service_monitor: bool
    """True: the KubeRay operator chart should create its ServiceMonitor (this Prometheus selects it)."""
    release: k8s.helm.v3.Release
    """The chart; anything creating monitoring.coreos.com resources (the KubeRay operator's
    ServiceMonitor) must depend on it, since it installs those CRDs."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _validate(args)
        super().__init__("ray-on-eks:k8s:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Deleting the namespace deletes Prometheus' PersistentVolumeClaim with it; keep it unless
        # the stack says data may go (retainData: false).
        keep = args.retain_data and args.prometheus_storage_gib is not None
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=keep),
        )
        ns = namespace.metadata.name

        password = random.RandomPassword(
            f"{name}-grafana-admin-password",
            length=32,
            special=False,  # reaches Grafana as an env var; 32 alphanumerics are ~190 bits
            opts=child,
        )
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="grafana-admin", namespace=ns),
            type="Opaque",
            string_data={
                builders.GRAFANA_ADMIN_USER_KEY: "admin",
                builders.GRAFANA_ADMIN_PASSWORD_KEY: password.result,
            },
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stringData", "data"]),
        )

        values = builders.build_prometheus_stack_values(
            retention=args.prometheus_retention,
            storage_gib=args.prometheus_storage_gib,
            storage_class=args.storage_class,
            grafana_admin_secret=admin_secret.metadata.name,
            expose_dashboards=args.expose_dashboards,
            alertmanager=args.alertmanager,
            scrape_kube_proxy=args.scrape_kube_proxy,
        )
        release = k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack",
            k8s.helm.v3.ReleaseArgs(
                name=builders.RELEASE_NAME,
                chart=KUBE_PROMETHEUS_STACK_CHART,
                version=KUBE_PROMETHEUS_STACK_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_PROMETHEUS_STACK_REPO),
                namespace=ns,
                values=values,
                timeout=900,
            ),
            opts=child,
        )
        # PodMonitor and PrometheusRule are CRDs the chart installs: create them after it.
        after_chart = pulumi.ResourceOptions(parent=self, depends_on=[release])

        for monitor in builders.build_ray_pod_monitors(
            namespace=args.namespace,
            ray_namespaces=args.ray_namespaces,
            scrape_autoscaler=args.scrape_autoscaler,
        ):
            self._custom_resource(f"{name}-{monitor['metadata']['name']}", monitor, ns, after_chart)
        rule = builders.build_ray_prometheus_rule(name="ray", namespace=args.namespace)
        self._custom_resource(f"{name}-ray-alerts", rule, ns, after_chart)

        # Generated at program run from the installed ray package, so the dashboards always match
        # the pinned Ray; the sidecar loads them whether or not the chart is ready yet.
        for key, content in builders.generate_ray_dashboard_json().items():
            dashboard = builders.build_ray_dashboard(
                content, datasource_name=builders.DATASOURCE_NAME, datasource_uid=builders.DATASOURCE_UID
            )
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{key.replace('_', '-')}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"ray-dashboard-{key.replace('_', '-')}",
                    namespace=ns,
                    labels={builders.DASHBOARD_LABEL: builders.DASHBOARD_LABEL_VALUE},
                ),
                data=builders.build_dashboard_configmap_data(key, dashboard),
                opts=child,
            )

        iframe_host = args.grafana_iframe_host or f"http://127.0.0.1:{args.grafana_local_port}"
        self.namespace = ns
        self.grafana_admin_password = pulumi.Output.secret(password.result)
        self.ray_head_env = {
            # Plain strings on purpose: the Ray head need not wait for the chart; it checks Grafana
            # and Prometheus when the Metrics tab is opened.
            "RAY_GRAFANA_HOST": pulumi.Output.from_input(builders.grafana_url(args.namespace)),
            "RAY_PROMETHEUS_HOST": pulumi.Output.from_input(builders.prometheus_url(args.namespace)),
            "RAY_GRAFANA_IFRAME_HOST": pulumi.Output.from_input(iframe_host),
            "RAY_PROMETHEUS_NAME": pulumi.Output.from_input(builders.DATASOURCE_NAME),
        }
        self.grafana_port_forward_command = ns.apply(
            lambda n: builders.grafana_port_forward_command(n, args.grafana_local_port)
        )
        self.kuberay_service_monitor = True
        self.release = release
        self.register_outputs(
            {
                "namespace": self.namespace,
                "grafanaAdminPassword": self.grafana_admin_password,
                "rayHeadEnv": self.ray_head_env,
                "grafanaPortForwardCommand": self.grafana_port_forward_command,
            }
        )

    def _custom_resource(
        self, name: str, manifest: dict[str, Any], namespace: pulumi.Output[str], opts: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        metadata = dict(manifest["metadata"], namespace=namespace)
        return k8s.apiextensions.CustomResource(
            name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=metadata,
            spec=manifest["spec"],
            opts=opts,
        )


def _validate(args: MonitoringArgs) -> None:
    """Reject bad arguments before anything is created, saying what to change."""
    problems: list[str] = []
    if not _DNS_LABEL.match(args.namespace):
        problems.append(f"namespace {args.namespace!r} is not a DNS label (lowercase letters, digits, '-')")
    if isinstance(args.ray_namespaces, str) or not args.ray_namespaces:
        problems.append(
            f"ray_namespaces {args.ray_namespaces!r} must be a non-empty list of namespaces, e.g. ['ray']"
        )
    else:
        bad = [n for n in args.ray_namespaces if not _DNS_LABEL.match(n)]
        if bad:
            problems.append(f"ray_namespaces has invalid namespace names {bad}; use DNS labels such as 'ray'")
    if not _DURATION.match(args.prometheus_retention):
        problems.append(
            f"prometheus_retention {args.prometheus_retention!r} is not a Prometheus duration such as 15d or 12h"
        )
    if args.prometheus_storage_gib is not None and args.prometheus_storage_gib <= 0:
        problems.append(
            f"prometheus_storage_gib {args.prometheus_storage_gib} must be a positive size in GiB, or None"
        )
    if args.storage_class is not None and args.prometheus_storage_gib is None:
        problems.append(
            f"storage_class {args.storage_class!r} is set but prometheus_storage_gib is not; set a size or drop it"
        )
    if not 1 <= args.grafana_local_port <= 65535:
        problems.append(f"grafana_local_port {args.grafana_local_port} must be a TCP port (1-65535)")
    if args.grafana_iframe_host is not None and not _LOCAL_URL.match(args.grafana_iframe_host):
        problems.append(
            f"grafana_iframe_host {args.grafana_iframe_host!r} must be a URL without a path, e.g. http://127.0.0.1:3000"
        )
    if problems:
        raise ValueError("Monitoring: " + "; ".join(problems))

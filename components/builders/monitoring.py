"""Pure builders for the monitoring stack: Helm values, PodMonitors, alert rules and Ray's dashboards.

Plain data in, plain data out, no Pulumi: ``components/monitoring.py`` turns these into resources and
``tests/components/builders/test_monitoring.py`` checks them against the chart's values and CRDs.

Names are deterministic on purpose: the release name and ``fullnameOverride`` fix the Service names
(``<fullname>-prometheus``, ``<release>-grafana``) that the Ray head is told about through
``RAY_PROMETHEUS_HOST`` / ``RAY_GRAFANA_HOST``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

from components.contract import (
    EXPOSE_DASHBOARDS_ANNOTATION,
    RAY_CLUSTER_LABEL,
    RAY_METRICS_PORT_NAME,
    RAY_NODE_TYPE_LABEL,
)

# Helm release name and chart fullname. Both are fixed so Service names never depend on Helm's
# "does the release name contain the chart name" rule.
RELEASE_NAME = "kube-prometheus-stack"
FULLNAME = "kube-prometheus-stack"
# The Grafana subchart names its objects "<release>-grafana" (its values have no fullnameOverride).
GRAFANA_SERVICE = f"{RELEASE_NAME}-grafana"
GRAFANA_SERVICE_PORT = 80
PROMETHEUS_SERVICE = f"{FULLNAME}-prometheus"
PROMETHEUS_SERVICE_PORT = 9090

# The Grafana datasource the chart provisions for its Prometheus (grafana.sidecar.datasources).
DATASOURCE_NAME = "Prometheus"
DATASOURCE_UID = "prometheus"

# ConfigMaps carrying this label (in any namespace) are loaded by Grafana's dashboard sidecar.
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"
# The Kubernetes API refuses ConfigMaps whose data exceeds 1 MiB.
CONFIGMAP_MAX_BYTES = 1024 * 1024

GRAFANA_ADMIN_USER_KEY = "admin-user"
GRAFANA_ADMIN_PASSWORD_KEY = "admin-password"

# Ports the Ray head serves besides the node metrics port (ray/autoscaler/_private/constants.py
# AUTOSCALER_METRIC_PORT and ray/dashboard/consts.py DASHBOARD_METRIC_PORT).
RAY_AUTOSCALER_METRICS_PORT = 44217
RAY_DASHBOARD_METRICS_PORT = 44227

# Scrape job names (the ``job`` label) of the Ray targets; alerts select on them.
JOB_HEAD = "ray-head"
JOB_WORKERS = "ray-workers"
JOB_AUTOSCALER = "ray-autoscaler"
JOB_DASHBOARD = "ray-dashboard"


def _k8s_label_to_prom(label: str) -> str:
    """``ray.io/cluster`` -> ``ray_io_cluster``, the way Prometheus' Kubernetes SD sanitizes labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


RAY_CLUSTER_PROM_LABEL = _k8s_label_to_prom(RAY_CLUSTER_LABEL)


# --------------------------------------------------------------------------------------------------
# URLs the Ray head needs
# --------------------------------------------------------------------------------------------------


def grafana_url(namespace: str) -> str:
    """In-cluster Grafana URL (``RAY_GRAFANA_HOST``): the head's dashboard proxies health checks to it."""
    return f"http://{GRAFANA_SERVICE}.{namespace}.svc:{GRAFANA_SERVICE_PORT}"


def prometheus_url(namespace: str) -> str:
    """In-cluster Prometheus URL (``RAY_PROMETHEUS_HOST``) the Ray dashboard queries."""
    return f"http://{PROMETHEUS_SERVICE}.{namespace}.svc:{PROMETHEUS_SERVICE_PORT}"


def grafana_port_forward_command(namespace: str, local_port: int) -> str:
    return f"kubectl -n {namespace} port-forward svc/{GRAFANA_SERVICE} {local_port}:{GRAFANA_SERVICE_PORT}"


# --------------------------------------------------------------------------------------------------
# kube-prometheus-stack values
# --------------------------------------------------------------------------------------------------

# Control-plane components EKS (and HyperPod's EKS) runs for the customer and never exposes to
# in-cluster scraping: the chart's defaults would create a Service + ServiceMonitor for each and
# alert forever (KubeControllerManagerDown, KubeSchedulerDown, etcd; prometheus-community/helm-charts
# issues 4106 and 3368). The chart's values key for each.
MANAGED_CONTROL_PLANE = ("kubeControllerManager", "kubeScheduler", "kubeEtcd")
# defaultRules.rules groups that only make sense with those targets (or with kube-proxy metrics).
# The chart already skips a group whose component is disabled; setting both is explicit and survives
# a chart version that changes that coupling.
CONTROL_PLANE_RULE_GROUPS = (
    "kubeControllerManager",
    "kubeSchedulerAlerting",
    "kubeSchedulerRecording",
    "etcd",
)
KUBE_PROXY_RULE_GROUPS = ("kubeProxy",)
# Alertmanager's own rules (AlertmanagerDown, ...) are meaningless without Alertmanager.
ALERTMANAGER_RULE_GROUPS = ("alertmanager",)


def _resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


# Requests and limits of every container the chart runs with this stack's values, by values path.
# Sized for one Ray cluster's metrics (a few hundred targets' worth of series at most); Prometheus'
# memory grows with series, so raise its limit for large clusters. Memory limits stop one
# component's leak from evicting Ray pods on the same node.
MONITORING_RESOURCES: dict[tuple[str, ...], dict[str, Any]] = {
    ("prometheus", "prometheusSpec"): _resources("200m", "1Gi", "2", "4Gi"),
    # The config-reloader sidecar in the Prometheus (and Alertmanager) pods.
    ("prometheusOperator", "prometheusConfigReloader"): _resources("10m", "32Mi", "100m", "64Mi"),
    ("prometheusOperator",): _resources("50m", "128Mi", "500m", "256Mi"),
    # The admission webhook's certificate jobs (create + patch) run once per install/upgrade.
    ("prometheusOperator", "admissionWebhooks", "patch"): _resources("10m", "32Mi", "100m", "128Mi"),
    ("grafana",): _resources("100m", "256Mi", "500m", "512Mi"),
    # Grafana's dashboard and datasource sidecars share this.
    ("grafana", "sidecar"): _resources("20m", "64Mi", "200m", "256Mi"),
    # Subcharts: both read a top-level `resources` (their own values.yaml).
    ("kube-state-metrics",): _resources("20m", "64Mi", "200m", "256Mi"),
    ("prometheus-node-exporter",): _resources("20m", "32Mi", "200m", "64Mi"),
    ("alertmanager", "alertmanagerSpec"): _resources("20m", "64Mi", "200m", "256Mi"),
}


def build_prometheus_stack_values(
    *,
    retention: str,
    storage_gib: int | None,
    storage_class: str | None,
    grafana_admin_secret: Any,
    expose_dashboards: bool = False,
    alertmanager: bool = False,
    scrape_kube_proxy: bool = False,
) -> dict[str, Any]:
    """Values for the kube-prometheus-stack chart, for a managed (EKS) control plane.

    ``grafana_admin_secret`` is the name of a Secret holding ``admin-user`` / ``admin-password``; it
    may be a Pulumi Output (the values are otherwise plain). The password itself never appears here.

    * Controller manager, scheduler and etcd are neither scraped nor alerted on (EKS hides them).
    * kube-proxy is scraped only with ``scrape_kube_proxy``: the EKS kube-proxy add-on serves its
      metrics on 127.0.0.1:10249 (and reverts edits to its config, aws/containers-roadmap#657), and
      kube-proxy-less clusters (EKS Auto Mode, Cilium) have none, so by default KubeProxyDown would
      fire forever.
    * ``alertmanager`` off (default): alerts are evaluated by Prometheus and shown in its UI and in
      Grafana, but sent nowhere, since this stack configures no receivers. On: Alertmanager runs and
      picks up receivers from ``AlertmanagerConfig`` resources in the monitoring namespace.
    * Every container gets requests and limits (:data:`MONITORING_RESOURCES`).
    """
    prometheus_spec: dict[str, Any] = {
        "retention": retention,
        # Select every PodMonitor/ServiceMonitor/PrometheusRule in every namespace, not only those
        # carrying this release's label: Ray's PodMonitors and the KubeRay operator's ServiceMonitor
        # are created outside the chart.
        "podMonitorSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "ruleSelectorNilUsesHelmValues": False,
        "probeSelectorNilUsesHelmValues": False,
        "scrapeConfigSelectorNilUsesHelmValues": False,
    }
    if storage_gib is not None:
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{storage_gib}Gi"}},
        }
        if storage_class:
            claim_spec["storageClassName"] = storage_class
        prometheus_spec["storageSpec"] = {"volumeClaimTemplate": {"spec": claim_spec}}

    grafana_service: dict[str, Any] = {"type": "ClusterIP"}
    if expose_dashboards:
        # Opt-in only: an internal NLB, reachable inside the VPC, never an internet-facing one.
        grafana_service = {
            "type": "LoadBalancer",
            "annotations": {
                "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
                # Declares the exposure to the policy pack (dashboards-not-exposed).
                EXPOSE_DASHBOARDS_ANNOTATION: "true",
            },
        }

    disabled_rules = [*CONTROL_PLANE_RULE_GROUPS]
    if not scrape_kube_proxy:
        disabled_rules += KUBE_PROXY_RULE_GROUPS
    if not alertmanager:
        disabled_rules += ALERTMANAGER_RULE_GROUPS
    values: dict[str, Any] = {
        "fullnameOverride": FULLNAME,
        **{component: {"enabled": False} for component in MANAGED_CONTROL_PLANE},
        "kubeProxy": {"enabled": scrape_kube_proxy},
        "defaultRules": {"rules": dict.fromkeys(disabled_rules, False)},
        "alertmanager": {"enabled": alertmanager},
        "prometheus": {"prometheusSpec": prometheus_spec},
        "grafana": {
            "admin": {
                "existingSecret": grafana_admin_secret,
                "userKey": GRAFANA_ADMIN_USER_KEY,
                "passwordKey": GRAFANA_ADMIN_PASSWORD_KEY,
            },
            "service": grafana_service,
            "grafana.ini": {
                # The Ray dashboard's Metrics tab embeds Grafana panels in iframes (Ray's KubeRay
                # guide sets allow_embedding). Anonymous access stays off: log in to Grafana once in
                # the same browser and the embedded panels use that session.
                "security": {"allow_embedding": True},
                "auth.anonymous": {"enabled": False},
            },
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": "ALL",
                },
                "datasources": {
                    "enabled": True,
                    "defaultDatasourceEnabled": True,
                    "isDefaultDatasource": True,
                    "name": DATASOURCE_NAME,
                    "uid": DATASOURCE_UID,
                },
            },
        },
    }
    for path, resources in MONITORING_RESOURCES.items():
        node = values
        for key in path:
            node = node.setdefault(key, {})
        node["resources"] = copy.deepcopy(resources)
    return values


# --------------------------------------------------------------------------------------------------
# Scraping Ray
# --------------------------------------------------------------------------------------------------


def _ray_relabelings(job: str) -> list[dict[str, Any]]:
    """Keep the RayCluster name as ``ray_io_cluster`` (Ray's dashboards filter on it) and name the job."""
    return [
        {
            "sourceLabels": [f"__meta_kubernetes_pod_label_{RAY_CLUSTER_PROM_LABEL}"],
            "targetLabel": RAY_CLUSTER_PROM_LABEL,
        },
        {"targetLabel": "job", "replacement": job},
    ]


def _extra_head_port(job: str, port: int) -> dict[str, Any]:
    """An endpoint for a head port that the pod does not declare.

    Prometheus only discovers declared container ports, so this selects the declared ``metrics``
    port (one target per head pod) and rewrites the address to the pod IP and ``port``.
    """
    return {
        "port": RAY_METRICS_PORT_NAME,
        "relabelings": [
            *_ray_relabelings(job),
            {
                "sourceLabels": ["__meta_kubernetes_pod_ip"],
                "regex": "(.+)",
                "targetLabel": "__address__",
                "replacement": f"$1:{port}",
            },
        ],
    }


def build_ray_pod_monitors(
    *,
    namespace: str,
    ray_namespaces: Sequence[str],
    scrape_autoscaler: bool,
    scrape_dashboard: bool = True,
) -> list[dict[str, Any]]:
    """PodMonitors (in the monitoring namespace) for Ray head and worker pods in ``ray_namespaces``.

    Pods are told apart by KubeRay's ``ray.io/node-type`` label and scraped on the named container
    port ``metrics``. The head additionally serves the dashboard's metrics and, with the in-tree
    autoscaler sidecar, the autoscaler's.
    """
    selector_namespaces = {"matchNames": list(dict.fromkeys(ray_namespaces))}
    head_endpoints: list[dict[str, Any]] = [
        {"port": RAY_METRICS_PORT_NAME, "relabelings": _ray_relabelings(JOB_HEAD)}
    ]
    if scrape_dashboard:
        head_endpoints.append(_extra_head_port(JOB_DASHBOARD, RAY_DASHBOARD_METRICS_PORT))
    if scrape_autoscaler:
        head_endpoints.append(_extra_head_port(JOB_AUTOSCALER, RAY_AUTOSCALER_METRICS_PORT))

    def monitor(name: str, node_type: str, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "namespaceSelector": selector_namespaces,
                "selector": {"matchLabels": {RAY_NODE_TYPE_LABEL: node_type}},
                "podMetricsEndpoints": endpoints,
            },
        }

    return [
        monitor("ray-head", "head", head_endpoints),
        monitor(
            "ray-workers",
            "worker",
            [{"port": RAY_METRICS_PORT_NAME, "relabelings": _ray_relabelings(JOB_WORKERS)}],
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------------

_BY = f"namespace, {RAY_CLUSTER_PROM_LABEL}"
ALIVE_NODES_RECORD = "ray_cluster:alive_nodes:count"

RAY_RECORDING_RULES: tuple[dict[str, str], ...] = (
    # Every live Ray node (head and workers) reports its CPU count once, so the count of those
    # series is the number of alive nodes per RayCluster.
    {"record": ALIVE_NODES_RECORD, "expr": f"count by ({_BY}) (ray_node_cpu_count)"},
)

RAY_ALERT_RULES: tuple[dict[str, Any], ...] = (
    {
        "alert": "RayHeadDown",
        # The head runs the GCS; if its metrics endpoint stops answering the cluster is unusable.
        "expr": f'up{{job="{JOB_HEAD}"}} == 0',
        "for": "5m",
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "Ray head {{ $labels.namespace }}/{{ $labels.ray_io_cluster }} is down",
            "description": "The Ray head pod (GCS) {{ $labels.pod }} has not answered scrapes for 5 minutes.",
        },
    },
    {
        "alert": "RayWorkerDown",
        "expr": f'up{{job="{JOB_WORKERS}"}} == 0',
        "for": "10m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Ray worker {{ $labels.pod }} is not answering",
            "description": "Worker pod {{ $labels.pod }} of {{ $labels.namespace }}/{{ $labels.ray_io_cluster }} "
            "is running but its Ray metrics endpoint has been down for 10 minutes.",
        },
    },
    {
        "alert": "RayNodesLost",
        # A fixed-size cluster (no autoscaler metrics) should never lose nodes; autoscaled clusters
        # are covered by RayAutoscalerFailedNodes, so scale-downs do not page.
        "expr": f"({ALIVE_NODES_RECORD} < {ALIVE_NODES_RECORD} offset 15m)"
        f" unless on ({_BY}) count by ({_BY}) (autoscaler_active_nodes)",
        "for": "5m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Ray cluster {{ $labels.namespace }}/{{ $labels.ray_io_cluster }} lost nodes",
            "description": "Alive Ray nodes dropped to {{ $value }} compared with 15 minutes ago.",
        },
    },
    {
        "alert": "RayAutoscalerFailedNodes",
        "expr": f"sum by ({_BY}) (autoscaler_recently_failed_nodes) > 0",
        "for": "5m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Ray autoscaler reports failed nodes in {{ $labels.namespace }}/{{ $labels.ray_io_cluster }}",
            "description": "{{ $value }} nodes failed recently according to the Ray autoscaler.",
        },
    },
    {
        "alert": "RayTasksFailing",
        "expr": f'sum by ({_BY}) (delta(ray_tasks{{State="FAILED"}}[15m])) > 0',
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Ray tasks are failing in {{ $labels.namespace }}/{{ $labels.ray_io_cluster }}",
            "description": "{{ $value }} more Ray tasks reached FAILED in the last 15 minutes.",
        },
    },
    {
        "alert": "RayWorkerProcessesDying",
        "expr": f"sum by ({_BY}) (increase(ray_node_manager_unexpected_worker_failure_total[15m])) > 0",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Ray worker processes crash in {{ $labels.namespace }}/{{ $labels.ray_io_cluster }}",
            "description": "{{ $value }} Ray worker processes exited unexpectedly in the last 15 minutes.",
        },
    },
    {
        "alert": "RayOutOfMemoryKills",
        "expr": f"sum by ({_BY}) (increase(ray_memory_manager_worker_eviction_total[15m])) > 0",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Ray's memory monitor is killing workers in {{ $labels.namespace }}/{{ $labels.ray_io_cluster }}",
            "description": "{{ $value }} workers were killed by Ray's OOM protection in 15 minutes; "
            "give tasks more memory or use fewer concurrent tasks.",
        },
    },
    {
        "alert": "RayObjectStoreNearlyFull",
        "expr": f'sum by ({_BY}, instance) (ray_object_store_memory{{Location!="SPILLED"}})'
        f' / sum by ({_BY}, instance) (ray_resources{{Name="object_store_memory"}}) > 0.9',
        "for": "10m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Ray object store above 90% on {{ $labels.instance }}",
            "description": "Objects will spill to disk and tasks slow down; free references or add memory.",
        },
    },
    {
        "alert": "RayGpuMetricsAbsent",
        # A node that offers GPUs to Ray but reports no GPU utilization: the NVIDIA driver or NVML is
        # not visible in the container, so GPU panels and GPU alerts are blind.
        "expr": f'sum by ({_BY}, instance) (ray_resources{{Name="GPU"}}) > 0'
        f" unless on ({_BY}, instance) count by ({_BY}, instance) (ray_node_gpus_utilization)",
        "for": "15m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "No GPU utilization metrics from {{ $labels.instance }}",
            "description": "The node has Ray GPU resources but exports no ray_node_gpus_utilization.",
        },
    },
)


def build_ray_prometheus_rule(*, name: str, namespace: str) -> dict[str, Any]:
    """The PrometheusRule with Ray's recording rules and alerts."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "groups": [
                {"name": "ray.records", "rules": [dict(rule) for rule in RAY_RECORDING_RULES]},
                {"name": "ray.alerts", "rules": copy.deepcopy(list(RAY_ALERT_RULES))},
            ]
        },
    }


# PromQL words that are not metric names.
_PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "inf",
        "nan",
        "atan2",
        # aggregation operators, which may be followed by "by (...)" instead of "("
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_DURATION = re.compile(r"\b\d+(ms|s|m|h|d|w|y)\b")
_NUMBER = re.compile(r"(?<![\w:])\d+(\.\d*)?([eE][+-]?\d+)?")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (a small tokenizer, enough for rules and panels).

    Strings, label matchers, ranges, grouping clauses and durations are removed; an identifier
    followed by ``(`` is a function; keywords are dropped; what remains are metric names.
    """
    text = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(r"\1 ", text)
    text = _DURATION.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_KEYWORDS:
            continue
        if match.start() > 0 and text[match.start() - 1] in "$.":  # $Variables, 1.5e3
            continue
        names.add(word)
    return names


# --------------------------------------------------------------------------------------------------
# Ray's own Grafana dashboards, generated from the installed ray package
# --------------------------------------------------------------------------------------------------

# Dashboard key (as the Ray dashboard names it) -> generator in
# ray.dashboard.modules.metrics.grafana_dashboard_factory (the list MetricsHead writes at startup).
RAY_DASHBOARD_GENERATORS: dict[str, str] = {
    "default": "generate_default_grafana_dashboard",
    "serve": "generate_serve_grafana_dashboard",
    "serve_deployment": "generate_serve_deployment_grafana_dashboard",
    "serve_llm": "generate_serve_llm_grafana_dashboard",
    "serve_llm_sglang": "generate_serve_llm_sglang_grafana_dashboard",
    "data": "generate_data_grafana_dashboard",
    "data_llm": "generate_data_llm_grafana_dashboard",
    "train": "generate_train_grafana_dashboard",
}
_FACTORY = "ray.dashboard.modules.metrics.grafana_dashboard_factory"


class RayDashboardFactoryError(RuntimeError):
    """The installed Ray's (private) dashboard factory no longer has the shape this module expects."""


def _is_ray_module(name: str) -> bool:
    return name == "ray" or name.startswith("ray.")


@contextlib.contextmanager
def _light_ray_package() -> Iterator[None]:
    """Make ``ray.dashboard...`` importable without running ``ray/__init__.py``.

    Importing ``ray`` loads its C extension and most of the library (~0.3 s) although the dashboard
    factory only needs ``ray.__version__`` and ``ray.util.annotations`` (plain Python). Stand-in
    package modules point at the installed package's directories, so the real factory and panel
    files are executed; afterwards every ``ray*`` entry is restored, leaving a later real
    ``import ray`` unaffected.
    """
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the ray package is not installed")
    locations = list(spec.submodule_search_locations)
    saved = {name: module for name, module in sys.modules.items() if _is_ray_module(name)}
    for name in saved:
        del sys.modules[name]
    ray_stub = types.ModuleType("ray")
    ray_stub.__path__ = locations
    ray_stub.__version__ = importlib.metadata.version("ray")  # type: ignore[attr-defined]
    util_stub = types.ModuleType("ray.util")
    util_stub.__path__ = [f"{location}/util" for location in locations]
    ray_stub.util = util_stub  # type: ignore[attr-defined]
    sys.modules["ray"] = ray_stub
    sys.modules["ray.util"] = util_stub
    try:
        yield
    finally:
        for name in [name for name in sys.modules if _is_ray_module(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


@contextlib.contextmanager
def _without_dashboard_overrides() -> Iterator[None]:
    """Hide the deployer's ``RAY_GRAFANA_<NAME>_DASHBOARD_UID`` / ``..._GLOBAL_FILTERS`` /
    ``..._LOG_LINK_URL`` variables from the factory.

    Those variables configure the Ray head (which reads its own pod env to find dashboards by uid);
    picked up from a laptop's shell they would make the provisioned dashboards differ per machine.
    """
    pattern = re.compile(r"^RAY_GRAFANA_[A-Z_]+_(DASHBOARD_UID|DASHBOARD_GLOBAL_FILTERS|LOG_LINK_URL)$")
    hidden = {name: value for name, value in os.environ.items() if pattern.match(name)}
    for name in hidden:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(hidden)


def _generate_all() -> dict[str, str]:
    try:
        factory = importlib.import_module(_FACTORY)
        with _without_dashboard_overrides():
            return {key: getattr(factory, fn)()[0] for key, fn in RAY_DASHBOARD_GENERATORS.items()}
    except (ImportError, AttributeError, TypeError, IndexError, KeyError, OSError) as exc:
        raise RayDashboardFactoryError(
            f"cannot generate Ray's Grafana dashboards with {_FACTORY} ({type(exc).__name__}: {exc}); "
            "this private Ray API changed: update RAY_DASHBOARD_GENERATORS in components/builders/monitoring.py "
            "for the pinned Ray version"
        ) from exc


# Generated dashboards by (installed Ray version, generator table): the factory's output depends on
# nothing else (the deployer's overrides are hidden), and generating them costs ~0.25 s each time —
# once per `pulumi up`, but once per mocked program run in the tests.
_GENERATED: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, str]] = {}


def generate_ray_dashboard_json(*, light_import: bool = True) -> dict[str, str]:
    """Ray's dashboards as the pinned Ray writes them into its session dir: key -> JSON text.

    With ``light_import`` (and Ray not imported yet) the factory is loaded without importing all of
    Ray; if that ever fails the ordinary import is used, which is slower but always right. Results
    are cached per installed Ray version and generator table; callers get their own dict.
    """
    key = (importlib.metadata.version("ray"), tuple(sorted(RAY_DASHBOARD_GENERATORS.items())))
    if key not in _GENERATED:
        _GENERATED[key] = _generate(light_import=light_import)
    return dict(_GENERATED[key])


def _generate(*, light_import: bool) -> dict[str, str]:
    if light_import and "ray" not in sys.modules:
        try:
            with _light_ray_package():
                return _generate_all()
        except (RayDashboardFactoryError, ImportError):
            pass
    return _generate_all()


def build_ray_dashboard(content: str, *, datasource_name: str, datasource_uid: str) -> dict[str, Any]:
    """One generated dashboard, its ``datasource`` variable preset to the stack's Prometheus."""
    dashboard: dict[str, Any] = json.loads(content)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "datasource" and variable.get("name") == "datasource":
            variable["current"] = {"selected": True, "text": datasource_name, "value": datasource_uid}
    # Provisioned dashboards are re-read from the ConfigMap; ids belong to Grafana's database.
    dashboard.pop("id", None)
    return dashboard


def build_dashboard_configmap_data(key: str, dashboard: dict[str, Any]) -> dict[str, str]:
    """ConfigMap ``data`` for one dashboard (compact JSON) under ``ray-<key>.json``."""
    text = json.dumps(dashboard, separators=(",", ":"), sort_keys=True)
    size = len(text.encode())
    if size > CONFIGMAP_MAX_BYTES:
        raise ValueError(
            f"Ray dashboard {key!r} is {size} bytes, over the {CONFIGMAP_MAX_BYTES}-byte ConfigMap limit; "
            "drop it from RAY_DASHBOARD_GENERATORS or split it"
        )
    return {f"ray-{key.replace('_', '-')}.json": text}

"""Pure monitoring builders: Helm values exist in the pinned chart, custom resources validate against
the chart's CRDs, every alert reads metrics the pinned Ray exports, and Ray's dashboards are generated."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components import contract
from components.builders import monitoring as m
from components.config import memory_bytes
from components.versions import KUBE_PROMETHEUS_STACK_VERSION, RAY_VERSION

CHART_DIR = f"kube-prometheus-stack-{KUBE_PROMETHEUS_STACK_VERSION}"
GRAFANA_VALUES = "grafana-12.11.1-values.yaml"

# Maps whose content is free-form by design (Kubernetes objects or INI sections), below which keys
# are not in the chart's defaults. Everything else must exist in values.yaml / the grafana subchart.
FREE_FORM = {
    ("grafana", "grafana.ini"),
    ("grafana", "service", "annotations"),
    ("prometheus", "prometheusSpec", "storageSpec"),
}
# Keys read by a subchart, documented in that subchart's own values.yaml (not vendored): both
# prometheus-community/helm-charts charts/kube-state-metrics and charts/prometheus-node-exporter
# have a top-level ``resources: {}``.
SUBCHART_KEYS = {
    ("kube-state-metrics", "resources"),
    ("prometheus-node-exporter", "resources"),
}


def _values(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "retention": "15d",
        "storage_gib": 50,
        "storage_class": "gp3",
        "grafana_admin_secret": "grafana-admin",
        "expose_dashboards": False,
    }
    args.update(overrides)
    return m.build_prometheus_stack_values(**args)


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    # A `resources` value is a Kubernetes ResourceRequirements (`{}` in the chart's defaults).
    free_form = prefix in FREE_FORM or prefix in SUBCHART_KEYS or prefix[-1:] == ("resources",)
    if isinstance(node, dict) and node and not free_form:
        for key, value in node.items():
            yield from _leaf_paths(value, (*prefix, key))
    else:
        yield prefix


def _exists(defaults: Any, keys: tuple[str, ...]) -> bool:
    node = defaults
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _unknown_keys(values: dict[str, Any], chart: dict[str, Any], grafana: dict[str, Any]) -> list[str]:
    """Value paths Helm would silently ignore.

    Keys under ``grafana:`` go to the grafana subchart, except those kube-prometheus-stack itself
    reads there (its datasource ConfigMap uses ``grafana.sidecar.datasources.name``/``uid``...), so
    they must exist in the subchart's defaults or in the parent chart's ``grafana:`` section.
    """
    unknown = []
    for path in _leaf_paths(values):
        if path in SUBCHART_KEYS:
            continue
        if path[0] == "grafana" and len(path) > 1:
            known = _exists(grafana, path[1:]) or _exists(chart, path)
        else:
            known = _exists(chart, path)
        if not known:
            unknown.append(".".join(path))
    return unknown


@pytest.fixture(scope="module")
def chart_defaults(schemas: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = schemas / CHART_DIR
    return (
        yaml.safe_load((folder / "values.yaml").read_text()),
        yaml.safe_load((folder / GRAFANA_VALUES).read_text()),
    )


def _crd_validator(schemas: Path, plural: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((schemas / CHART_DIR / f"crd-{plural}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


def _assert_valid(validator: jsonschema.Draft7Validator, manifest: dict[str, Any]) -> None:
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


# --------------------------------------------------------------------------------------------------
# Helm values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expose", [False, True])
@pytest.mark.parametrize(("gib", "storage_class"), [(None, None), (50, None), (100, "gp3")])
@pytest.mark.parametrize("optional_parts", [False, True], ids=["lean", "alertmanager+kube-proxy"])
def test_every_value_key_exists_in_the_pinned_chart(
    chart_defaults: tuple[dict[str, Any], dict[str, Any]],
    expose: bool,
    gib: int | None,
    storage_class: str | None,
    optional_parts: bool,
) -> None:
    values = _values(
        expose_dashboards=expose,
        storage_gib=gib,
        storage_class=storage_class,
        alertmanager=optional_parts,
        scrape_kube_proxy=optional_parts,
    )
    assert _unknown_keys(values, *chart_defaults) == []


# What EKS never lets a pod scrape: the chart's values key and every default rule group about it.
HIDDEN_BY_EKS = {
    "kubeControllerManager": ("kubeControllerManager",),
    "kubeScheduler": ("kubeSchedulerAlerting", "kubeSchedulerRecording"),
    "kubeEtcd": ("etcd",),
}


def test_a_managed_control_plane_is_neither_scraped_nor_alerted_on(
    chart_defaults: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Fails on the old main: chart defaults scrape these and KubeControllerManagerDown & co. fire forever."""
    chart, _ = chart_defaults
    for scrape_kube_proxy in (False, True):
        values = _values(scrape_kube_proxy=scrape_kube_proxy)
        for component, groups in HIDDEN_BY_EKS.items():
            assert chart[component]["enabled"] is True, "the chart default this guards against changed"
            assert values[component]["enabled"] is False, component
            for group in groups:
                assert group in chart["defaultRules"]["rules"], f"{group} is not a rule group of the chart"
                assert values["defaultRules"]["rules"][group] is False, group
        # No other default group names a control-plane component either.
        enabled = {
            group
            for group, default in chart["defaultRules"]["rules"].items()
            if values["defaultRules"]["rules"].get(group, default)
        }
        assert not [g for g in enabled if g.startswith(("kubeController", "kubeScheduler", "etcd"))], enabled
        assert values["kubeProxy"]["enabled"] is scrape_kube_proxy
        assert ("kubeProxy" in enabled) is scrape_kube_proxy


def test_alertmanager_is_off_unless_asked_for(chart_defaults: tuple[dict[str, Any], dict[str, Any]]) -> None:
    chart, _ = chart_defaults
    assert chart["alertmanager"]["enabled"] is True, "the chart default this guards against changed"
    off = _values()
    assert off["alertmanager"]["enabled"] is False
    assert off["defaultRules"]["rules"]["alertmanager"] is False  # AlertmanagerDown would fire
    on = _values(alertmanager=True)
    assert on["alertmanager"]["enabled"] is True
    assert "alertmanager" not in on["defaultRules"]["rules"]


# Every container the chart runs with these values, by the values path of its `resources`.
CONTAINERS = (
    ("prometheus", "prometheusSpec"),
    ("prometheusOperator", "prometheusConfigReloader"),
    ("prometheusOperator",),
    ("prometheusOperator", "admissionWebhooks", "patch"),
    ("grafana",),
    ("grafana", "sidecar"),
    ("kube-state-metrics",),
    ("prometheus-node-exporter",),
    ("alertmanager", "alertmanagerSpec"),
)


@pytest.mark.parametrize("path", CONTAINERS, ids=".".join)
def test_every_monitoring_container_has_requests_and_limits(path: tuple[str, ...]) -> None:
    """Fails on the old main: no monitoring component had requests or limits."""
    node: Any = _values(alertmanager=True)
    for key in path:
        node = node[key]
    resources = node["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, (path, kind)
    assert memory_bytes(resources["requests"]["memory"]) <= memory_bytes(resources["limits"]["memory"])


def test_the_key_check_catches_a_misspelt_key(chart_defaults: tuple[dict[str, Any], dict[str, Any]]) -> None:
    values = _values()
    values["prometheus"]["prometheusSpec"]["podMonitorSelectorNilUsesHelmValue"] = False
    values["grafana"]["sidecar"]["dashboard"] = {"enabled": True}
    assert _unknown_keys(values, *chart_defaults) == [
        "prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValue",
        "grafana.sidecar.dashboard.enabled",
    ]


def test_prometheus_selects_monitors_and_rules_from_every_namespace_and_release() -> None:
    spec = _values()["prometheus"]["prometheusSpec"]
    for kind in ("podMonitor", "serviceMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
        # No selector of our own either: an empty selector would still select everything, a
        # non-empty one would drop the KubeRay operator's ServiceMonitor.
        assert f"{kind}Selector" not in spec and f"{kind}NamespaceSelector" not in spec


def test_retention_and_persistent_storage_come_from_the_arguments() -> None:
    spec = _values(retention="30d", storage_gib=80, storage_class="gp3")["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "30d"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "80Gi"
    assert claim["storageClassName"] == "gp3"
    assert (
        "storageClassName"
        not in _values(storage_class=None)["prometheus"]["prometheusSpec"]["storageSpec"][
            "volumeClaimTemplate"
        ]["spec"]
    )
    assert "storageSpec" not in _values(storage_gib=None, storage_class=None)["prometheus"]["prometheusSpec"]


def test_grafana_is_cluster_internal_embeddable_and_has_no_anonymous_access() -> None:
    grafana = _values()["grafana"]
    assert grafana["service"] == {"type": "ClusterIP"}
    assert grafana["grafana.ini"]["security"]["allow_embedding"] is True
    assert grafana["grafana.ini"]["auth.anonymous"]["enabled"] is False
    assert "ingress" not in grafana or grafana["ingress"].get("enabled") is False


def test_grafana_load_balancer_only_when_exposed_and_only_internal() -> None:
    service = _values(expose_dashboards=True)["grafana"]["service"]
    assert service["type"] == "LoadBalancer"
    assert service["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    # Declared to the policy pack (issue 11, defect 8); absent when not exposed.
    assert service["annotations"][contract.EXPOSE_DASHBOARDS_ANNOTATION] == "true"
    assert "annotations" not in _values(expose_dashboards=False)["grafana"]["service"]


def test_admin_credentials_come_only_from_the_existing_secret() -> None:
    grafana = _values(grafana_admin_secret="my-secret")["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "my-secret",
        "userKey": m.GRAFANA_ADMIN_USER_KEY,
        "passwordKey": m.GRAFANA_ADMIN_PASSWORD_KEY,
    }
    assert "adminPassword" not in grafana
    assert "prom-operator" not in json.dumps(_values())


def test_dashboard_sidecar_and_datasource_match_what_the_dashboards_use() -> None:
    sidecar = _values()["grafana"]["sidecar"]
    assert sidecar["dashboards"]["enabled"] is True
    assert (sidecar["dashboards"]["label"], sidecar["dashboards"]["labelValue"]) == (
        m.DASHBOARD_LABEL,
        m.DASHBOARD_LABEL_VALUE,
    )
    assert sidecar["dashboards"]["searchNamespace"] == "ALL"
    assert (sidecar["datasources"]["name"], sidecar["datasources"]["uid"]) == (
        m.DATASOURCE_NAME,
        m.DATASOURCE_UID,
    )


def test_service_urls_follow_the_chart_naming() -> None:
    values = _values()
    # kube-prometheus-stack names Prometheus' Service "<fullname>-prometheus"; the grafana subchart
    # names its Service "<release>-grafana" (release name without "grafana" in it).
    assert f"{values['fullnameOverride']}-prometheus" == m.PROMETHEUS_SERVICE
    assert f"{m.RELEASE_NAME}-grafana" == m.GRAFANA_SERVICE and "grafana" not in m.RELEASE_NAME
    assert m.prometheus_url("mon") == "http://kube-prometheus-stack-prometheus.mon.svc:9090"
    assert m.grafana_url("mon") == "http://kube-prometheus-stack-grafana.mon.svc:80"
    assert (
        m.grafana_port_forward_command("mon", 3000)
        == "kubectl -n mon port-forward svc/kube-prometheus-stack-grafana 3000:80"
    )


def test_grafana_service_port_matches_the_subchart(
    chart_defaults: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, grafana = chart_defaults
    assert grafana["service"]["port"] == m.GRAFANA_SERVICE_PORT


# --------------------------------------------------------------------------------------------------
# PodMonitors
# --------------------------------------------------------------------------------------------------


def _monitors(**overrides: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {
        "namespace": "monitoring",
        "ray_namespaces": ["ray", "team-a"],
        "scrape_autoscaler": True,
    }
    args.update(overrides)
    return {pm["metadata"]["name"]: pm for pm in m.build_ray_pod_monitors(**args)}


@pytest.mark.parametrize("autoscaler", [False, True])
def test_pod_monitors_validate_against_the_crd(schemas: Path, autoscaler: bool) -> None:
    validator = _crd_validator(schemas, "podmonitors")
    for monitor in _monitors(scrape_autoscaler=autoscaler).values():
        _assert_valid(validator, monitor)


def test_a_broken_pod_monitor_is_rejected(schemas: Path) -> None:
    validator = _crd_validator(schemas, "podmonitors")
    broken = copy.deepcopy(_monitors()["ray-head"])
    broken["spec"]["podMetricsEndpoints"][0]["portNumber"] = "metrics"  # must be an integer
    del broken["spec"]["selector"]  # required
    assert len(list(validator.iter_errors(broken))) == 2


def test_head_and_workers_are_selected_by_node_type_on_the_metrics_port() -> None:
    monitors = _monitors()
    assert set(monitors) == {"ray-head", "ray-workers"}
    for name, node_type in (("ray-head", "head"), ("ray-workers", "worker")):
        spec = monitors[name]["spec"]
        assert spec["selector"] == {"matchLabels": {contract.RAY_NODE_TYPE_LABEL: node_type}}
        assert spec["namespaceSelector"] == {"matchNames": ["ray", "team-a"]}
        assert {ep["port"] for ep in spec["podMetricsEndpoints"]} == {contract.RAY_METRICS_PORT_NAME}
        assert monitors[name]["metadata"]["namespace"] == "monitoring"


def test_every_target_keeps_the_ray_cluster_label() -> None:
    for monitor in _monitors().values():
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert {
                "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                "targetLabel": "ray_io_cluster",
            } in endpoint["relabelings"]


def _head_ports(monitors: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    ports: dict[str, str | None] = {}
    for endpoint in monitors["ray-head"]["spec"]["podMetricsEndpoints"]:
        job = next(r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "job")
        address = [r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "__address__"]
        ports[job] = address[0] if address else None
    return ports


def test_head_also_serves_dashboard_and_autoscaler_metrics_on_rays_ports() -> None:
    assert _head_ports(_monitors(scrape_autoscaler=True)) == {
        m.JOB_HEAD: None,
        m.JOB_DASHBOARD: "$1:44227",
        m.JOB_AUTOSCALER: "$1:44217",
    }
    assert m.JOB_AUTOSCALER not in _head_ports(_monitors(scrape_autoscaler=False))


def test_extra_head_ports_are_the_ones_ray_really_uses() -> None:
    # Read from the installed Ray's source without importing ray (see the dashboard tests below).
    import importlib.util

    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    assert (
        f'"AUTOSCALER_METRIC_PORT", {m.RAY_AUTOSCALER_METRICS_PORT})'
        in (root / "autoscaler/_private/constants.py").read_text()
    )
    assert (
        f'"DASHBOARD_METRIC_PORT", {m.RAY_DASHBOARD_METRICS_PORT})'
        in (root / "dashboard/consts.py").read_text()
    )


# --------------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------------


def test_prometheus_rule_validates_against_the_crd(schemas: Path) -> None:
    _assert_valid(
        _crd_validator(schemas, "prometheusrules"),
        m.build_ray_prometheus_rule(name="ray", namespace="mon"),
    )


def test_a_broken_prometheus_rule_is_rejected(schemas: Path) -> None:
    validator = _crd_validator(schemas, "prometheusrules")
    rule = m.build_ray_prometheus_rule(name="ray", namespace="mon")
    rule["spec"]["groups"][1]["rules"][0]["for"] = "five minutes"  # not a duration
    assert list(validator.iter_errors(rule))


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum(rate(ray_tasks{State="FAILED",x=~"a|b"}[5m])) by (State)', {"ray_tasks"}),
        ("up == 0", {"up"}),
        ("a_total / on (instance) group_left(job) b offset 5m", {"a_total", "b"}),
        ("count by (namespace, ray_io_cluster) (ray_node_cpu_count)", {"ray_node_cpu_count"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(x_bucket{instance=~"$Instance"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("max_over_time(ns:rec:count[30m:1m]) > 1e3", {"ns:rec:count"}),
        ('label_replace(y, "a", "b", "", "") or vector(0)', {"y"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert m.promql_metric_names(expr) == names


@pytest.fixture(scope="module")
def ray_dashboards() -> dict[str, str]:
    return m.generate_ray_dashboard_json()


def _panel_exprs(panels: list[dict[str, Any]]) -> Iterator[str]:
    for panel in panels:
        yield from (t["expr"] for t in panel.get("targets", []) if t.get("expr"))
        yield from _panel_exprs(panel.get("panels", []))


@pytest.fixture(scope="module")
def ray_metric_names(ray_dashboards: dict[str, str]) -> set[str]:
    """Every metric name the installed Ray's own dashboards query."""
    names: set[str] = set()
    for content in ray_dashboards.values():
        for expr in _panel_exprs(json.loads(content)["panels"]):
            names |= m.promql_metric_names(expr)
    return names


def test_ray_metric_set_is_real(ray_metric_names: set[str]) -> None:
    # The set the alerts are checked against must itself be meaningful (and not e.g. empty).
    assert {
        "ray_tasks",
        "ray_node_cpu_count",
        "ray_object_store_memory",
        "autoscaler_active_nodes",
    } <= ray_metric_names
    assert len(ray_metric_names) > 100
    assert "ray_no_such_metric" not in ray_metric_names


def test_every_rule_reads_only_metrics_ray_exports(ray_metric_names: set[str]) -> None:
    recorded = {rule["record"] for rule in m.RAY_RECORDING_RULES}
    allowed = ray_metric_names | recorded | {"up"}
    for rule in (*m.RAY_RECORDING_RULES, *m.RAY_ALERT_RULES):
        names = m.promql_metric_names(rule["expr"])
        assert names, rule
        assert names <= allowed, (
            f"{rule.get('alert') or rule.get('record')}: unknown metrics {names - allowed}"
        )


def test_up_alerts_use_the_jobs_the_pod_monitors_set() -> None:
    jobs = set(_head_ports(_monitors())) | {m.JOB_WORKERS}
    exprs = " ".join(rule["expr"] for rule in m.RAY_ALERT_RULES)
    assert f'up{{job="{m.JOB_HEAD}"}} == 0' in exprs
    for job in (m.JOB_HEAD, m.JOB_WORKERS):
        assert job in jobs


def test_alerts_cover_head_nodes_tasks_object_store_and_gpus() -> None:
    alerts = {rule["alert"]: rule for rule in m.RAY_ALERT_RULES}
    assert {
        "RayHeadDown",
        "RayNodesLost",
        "RayTasksFailing",
        "RayObjectStoreNearlyFull",
        "RayGpuMetricsAbsent",
    } <= set(alerts)
    for rule in alerts.values():
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]


# --------------------------------------------------------------------------------------------------
# Ray's Grafana dashboards
# --------------------------------------------------------------------------------------------------


def test_one_dashboard_per_ray_dashboard_with_rays_uids(ray_dashboards: dict[str, str]) -> None:
    assert set(ray_dashboards) == set(m.RAY_DASHBOARD_GENERATORS)
    uids = {key: json.loads(content)["uid"] for key, content in ray_dashboards.items()}
    # The Ray dashboard's Metrics tab embeds panels by these uids.
    assert uids["default"] == "rayDefaultDashboard"
    assert uids["data"] == "rayDataDashboard"
    assert uids["train"] == "rayTrainDashboard"
    assert len(set(uids.values())) == len(uids)


@pytest.mark.parametrize("key", sorted(m.RAY_DASHBOARD_GENERATORS))
def test_dashboard_configmap_is_valid_json_with_panels_and_our_datasource(
    ray_dashboards: dict[str, str], key: str
) -> None:
    dashboard = m.build_ray_dashboard(
        ray_dashboards[key], datasource_name="Prometheus", datasource_uid="prometheus"
    )
    (filename, text), *_ = m.build_dashboard_configmap_data(key, dashboard).items()
    assert filename.endswith(".json")
    assert len(text.encode()) < m.CONFIGMAP_MAX_BYTES
    parsed = json.loads(text)
    assert parsed["panels"]
    assert f"rayVersion:{RAY_VERSION}" in parsed["tags"]
    (variable,) = [v for v in parsed["templating"]["list"] if v["name"] == "datasource"]
    assert variable["current"]["value"] == "prometheus"
    assert variable["current"]["text"] == "Prometheus"
    assert all(p.get("datasource") == "${datasource}" for p in parsed["panels"] if p.get("type") != "row")


def test_an_oversized_dashboard_is_refused() -> None:
    with pytest.raises(ValueError, match="1048576-byte ConfigMap limit"):
        m.build_dashboard_configmap_data("huge", {"panels": ["x" * m.CONFIGMAP_MAX_BYTES]})


def test_light_import_generates_exactly_what_ray_generates_and_leaves_ray_untouched() -> None:
    before = sys.modules.get("ray")
    with m._light_ray_package():
        light = m._generate_all()
        assert not hasattr(sys.modules["ray"], "init"), "the light path must not run ray/__init__.py"
    assert sys.modules.get("ray") is before
    real = m._generate_all()  # the ordinary import of ray (uncached)
    assert light == real


def test_generated_dashboards_are_cached_per_generator_table_and_handed_out_as_copies(
    monkeypatch: pytest.MonkeyPatch, ray_dashboards: dict[str, str]
) -> None:
    first = m.generate_ray_dashboard_json()
    first["default"] = "changed by a caller"
    generated: list[bool] = []

    def generate(*, light_import: bool) -> dict[str, str]:
        generated.append(light_import)
        return {"default": "{}"}

    monkeypatch.setattr(m, "_generate", generate)
    assert m.generate_ray_dashboard_json() == ray_dashboards  # the cache, not the caller's change
    assert generated == []
    monkeypatch.setitem(m.RAY_DASHBOARD_GENERATORS, "default", "generate_other_dashboard")
    assert m.generate_ray_dashboard_json() == {"default": "{}"}  # another table: generated anew
    assert generated == [True]


def test_a_changed_factory_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(m.RAY_DASHBOARD_GENERATORS, "default", "generate_no_such_dashboard")
    with pytest.raises(m.RayDashboardFactoryError, match="RAY_DASHBOARD_GENERATORS"):
        m.generate_ray_dashboard_json()


def test_the_deployers_shell_does_not_change_the_dashboards(
    monkeypatch: pytest.MonkeyPatch, ray_dashboards: dict[str, str]
) -> None:
    monkeypatch.setenv("RAY_GRAFANA_DEFAULT_DASHBOARD_UID", "my-laptop")
    monkeypatch.setenv("RAY_GRAFANA_DEFAULT_DASHBOARD_GLOBAL_FILTERS", 'SessionName="x"')
    assert m._generate(light_import=True) == ray_dashboards  # generated again, not the cache
    assert json.loads(ray_dashboards["default"])["uid"] == "rayDefaultDashboard"
    import os

    assert os.environ["RAY_GRAFANA_DEFAULT_DASHBOARD_UID"] == "my-laptop"  # restored


@pytest.mark.parametrize(
    "rule", [*m.RAY_RECORDING_RULES, *m.RAY_ALERT_RULES], ids=lambda r: r.get("alert") or r["record"]
)
def test_rule_expressions_are_balanced(rule: dict[str, Any]) -> None:
    # No PromQL parser is installed; catch the typical slip of a hand-written expression.
    expr = m._STRING.sub('""', rule["expr"])
    for opening, closing in ("()", "{}", "[]"):
        depth = 0
        for char in expr:
            depth += (char == opening) - (char == closing)
            assert depth >= 0, rule["expr"]
        assert depth == 0, rule["expr"]
    assert "{{" not in expr

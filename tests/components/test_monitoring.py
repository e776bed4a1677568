"""Monitoring under mocks: what ``pulumi up`` registers for Prometheus, Grafana, Ray scraping,
alerts and dashboards — and that the Grafana password only ever travels as a secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components import contract
from components.builders import monitoring as builders
from components.monitoring import MonitoringArgs, _validate
from components.versions import (
    KUBE_PROMETHEUS_STACK_CHART,
    KUBE_PROMETHEUS_STACK_REPO,
    KUBE_PROMETHEUS_STACK_VERSION,
)
from tests.pulumi_harness import (
    SECRET_SIG,
    SECRET_VALUE,
    ProgramRun,
    Registered,
    load_stack_config,
    run_ok,
    run_program,
    run_shared,
    stack_files,
    stack_name,
)

COMPONENT = "ray-on-eks:k8s:Monitoring"
RELEASE = "kubernetes:helm.sh/v3:Release"
CHART_DIR = f"kube-prometheus-stack-{KUBE_PROMETHEUS_STACK_VERSION}"


def _component(run: ProgramRun) -> Registered:
    return run.one(COMPONENT)


def _children(run: ProgramRun) -> list[Registered]:
    component = _component(run)
    return [r for r in run.resources if component in list(run.ancestors(r))]


def _release(run: ProgramRun) -> Registered:
    (release,) = [r for r in _children(run) if r.type == RELEASE]
    return release


def _dashboard_configmaps(run: ProgramRun) -> list[Registered]:
    return [
        r
        for r in run.of_type("kubernetes:core/v1:ConfigMap")
        if (r.inputs["metadata"].get("labels") or {}).get(builders.DASHBOARD_LABEL)
        == builders.DASHBOARD_LABEL_VALUE
    ]


def _manifest(resource: Registered) -> dict[str, Any]:
    return {key: resource.inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}


MONITORED_STACKS = [
    stack_name(path)
    for path in stack_files()
    if json.loads(load_stack_config(stack_name(path)).get("ray-on-eks:monitoring", "{}")).get("enabled", True)
]


@pytest.fixture(params=MONITORED_STACKS)
def stack_run(request: pytest.FixtureRequest, stack_runs: dict[str, ProgramRun]) -> ProgramRun:
    """conftest's ``stack_run`` narrowed to the stack files that turn monitoring on (not kind)."""
    return stack_runs[request.param]


def test_stacks_without_monitoring_register_none(stack_runs: dict[str, ProgramRun]) -> None:
    unmonitored = set(stack_runs) - set(MONITORED_STACKS)
    assert MONITORED_STACKS and unmonitored  # both kinds exist: the narrowing above is not vacuous
    for stack in unmonitored:
        run = stack_runs[stack]
        assert run.of_type(COMPONENT) == [] and "grafanaAdminPassword" not in run.exports


@pytest.fixture(scope="module")
def ml_run() -> ProgramRun:
    """dev with the Ray namespace renamed and a second namespace the operator watches."""
    return run_ok("dev", {"namespace": "ml", "kuberay": {"watchNamespaces": ["ml", "team-a"]}})


def test_chart_is_pinned_in_its_own_namespace(stack_run: ProgramRun) -> None:
    release = _release(stack_run)
    namespace = json.loads(stack_run.config["ray-on-eks:monitoring"]).get("namespace", "monitoring")
    assert release.inputs["chart"] == KUBE_PROMETHEUS_STACK_CHART
    assert release.inputs["version"] == KUBE_PROMETHEUS_STACK_VERSION
    assert release.inputs["repositoryOpts"]["repo"] == KUBE_PROMETHEUS_STACK_REPO
    assert release.inputs["name"] == builders.RELEASE_NAME
    assert release.inputs["namespace"] == namespace
    (ns,) = [r for r in _children(stack_run) if r.type == "kubernetes:core/v1:Namespace"]
    assert ns.inputs["metadata"]["name"] == namespace


def test_release_values_follow_the_stack_config(stack_run: ProgramRun) -> None:
    monitoring = json.loads(stack_run.config["ray-on-eks:monitoring"])
    spec = _release(stack_run).inputs["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == monitoring["prometheusRetention"]
    if "prometheusStorageGib" in monitoring:
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["resources"]["requests"]["storage"] == f"{monitoring['prometheusStorageGib']}Gi"
    else:
        assert "storageSpec" not in spec
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    values = _release(stack_run).inputs["values"]
    assert values["alertmanager"]["enabled"] is monitoring.get("alertmanager", False)
    assert values["kubeProxy"]["enabled"] is monitoring.get("scrapeKubeProxy", False)
    assert values["kubeControllerManager"]["enabled"] is False


def test_alertmanager_and_kube_proxy_keys_reach_the_chart() -> None:
    run = run_ok("dev", {"monitoring": {"alertmanager": True, "scrapeKubeProxy": True}})
    values = _release(run).inputs["values"]
    assert values["alertmanager"]["enabled"] is True
    assert values["kubeProxy"]["enabled"] is True


def test_grafana_admin_comes_from_the_secret_the_program_creates(stack_run: ProgramRun) -> None:
    grafana = _release(stack_run).inputs["values"]["grafana"]
    (secret,) = [r for r in _children(stack_run) if r.type == "kubernetes:core/v1:Secret"]
    assert grafana["admin"]["existingSecret"] == secret.inputs["metadata"]["name"]
    assert set(secret.inputs["stringData"]) == {grafana["admin"]["userKey"], grafana["admin"]["passwordKey"]}
    assert secret.inputs["metadata"]["namespace"] == _release(stack_run).inputs["namespace"]
    assert secret.has_secret_at("stringData", builders.GRAFANA_ADMIN_PASSWORD_KEY)
    assert grafana["service"]["type"] == "ClusterIP"


def _plaintext_paths(node: Any, needle: str, path: str = "") -> list[str]:
    """Where ``needle`` occurs in wire inputs outside a secret-wrapped value."""
    if isinstance(node, dict):
        if node.get(SECRET_SIG) == SECRET_VALUE:
            return []
        return [p for key, value in node.items() for p in _plaintext_paths(value, needle, f"{path}.{key}")]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _plaintext_paths(value, needle, f"{path}[{i}]")]
    return [path] if isinstance(node, str) and needle in node else []


def test_password_is_never_in_plain_text(stack_run: ProgramRun) -> None:
    password = stack_run.exports["grafanaAdminPassword"]
    assert isinstance(password, str) and len(password) >= 32
    assert "grafanaAdminPassword" in stack_run.secret_exports
    carriers = []
    for resource in stack_run.resources:
        if resource.type == "random:index/randomPassword:RandomPassword":
            continue
        assert _plaintext_paths(resource.wire_inputs, password) == [], resource.name
        if password in json.dumps(resource.wire_inputs):
            carriers.append(resource.type)
    # The check above did see the password (wrapped) where it is meant to be.
    assert carriers == ["kubernetes:core/v1:Secret"]
    assert "prom-operator" not in json.dumps(_release(stack_run).wire_inputs)


def test_the_plaintext_scan_can_fail() -> None:
    wire = {"a": {SECRET_SIG: SECRET_VALUE, "value": "pw"}, "b": ["x-pw-y"]}
    assert _plaintext_paths(wire, "pw") == [".b[0]"]


@pytest.fixture(scope="module")
def crd_validators(schemas: Path) -> dict[str, jsonschema.Draft7Validator]:
    validators = {}
    for kind, plural in (("PodMonitor", "podmonitors"), ("PrometheusRule", "prometheusrules")):
        crd = yaml.safe_load((schemas / CHART_DIR / f"crd-{plural}.yaml").read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        validators[kind] = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])
    return validators


def test_custom_resources_validate_and_wait_for_the_chart(
    stack_run: ProgramRun, crd_validators: dict[str, jsonschema.Draft7Validator]
) -> None:
    release = _release(stack_run)
    checked = 0
    for kind, validator in crd_validators.items():
        for resource in stack_run.custom_resources(kind):
            errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(_manifest(resource))]
            assert errors == [], resource.name
            assert release.urn in resource.dependencies, f"{resource.name} must wait for the CRDs"
            checked += 1
    assert checked == 3


def test_a_broken_recorded_resource_is_rejected(
    stack_run: ProgramRun, crd_validators: dict[str, jsonschema.Draft7Validator]
) -> None:
    manifest = _manifest(stack_run.custom_resources("PodMonitor")[0])
    manifest["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rewrite"  # not an action
    assert list(crd_validators["PodMonitor"].iter_errors(manifest))


def _pod_monitors(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in run.custom_resources("PodMonitor")}


def test_pod_monitors_cover_every_ray_namespace(ml_run: ProgramRun) -> None:
    monitors = _pod_monitors(ml_run)
    assert set(monitors) == {"ray-head", "ray-workers"}
    for spec in monitors.values():
        assert spec["namespaceSelector"] == {"matchNames": ["ml", "team-a"]}
        assert spec["podMetricsEndpoints"][0]["port"] == contract.RAY_METRICS_PORT_NAME
    assert monitors["ray-head"]["selector"]["matchLabels"] == {contract.RAY_NODE_TYPE_LABEL: "head"}
    assert monitors["ray-workers"]["selector"]["matchLabels"] == {contract.RAY_NODE_TYPE_LABEL: "worker"}


def test_pod_monitors_follow_the_stack_namespace(stack_run: ProgramRun) -> None:
    for spec in _pod_monitors(stack_run).values():
        assert spec["namespaceSelector"]["matchNames"] == [stack_run.exports["namespace"]]


def test_autoscaler_metrics_are_scraped_only_with_the_autoscaler() -> None:
    def head_jobs(run: ProgramRun) -> set[str]:
        endpoints = _pod_monitors(run)["ray-head"]["podMetricsEndpoints"]
        return {
            r["replacement"] for ep in endpoints for r in ep["relabelings"] if r.get("targetLabel") == "job"
        }

    with_autoscaler = run_program("dev", {"autoscaler": {"enabled": True}})
    assert with_autoscaler.error is None, with_autoscaler.error
    assert builders.JOB_AUTOSCALER in head_jobs(with_autoscaler)
    without = run_program("dev", {"autoscaler": {"enabled": False}})
    assert builders.JOB_AUTOSCALER not in head_jobs(without)


def test_one_dashboard_configmap_per_ray_dashboard(stack_run: ProgramRun) -> None:
    configmaps = _dashboard_configmaps(stack_run)
    assert len(configmaps) == len(builders.RAY_DASHBOARD_GENERATORS)
    namespace = _release(stack_run).inputs["namespace"]
    uids = set()
    for configmap in configmaps:
        assert _component(stack_run) in list(stack_run.ancestors(configmap))
        assert configmap.inputs["metadata"]["namespace"] == namespace
        ((filename, text),) = configmap.inputs["data"].items()
        assert filename.endswith(".json") and len(text.encode()) < builders.CONFIGMAP_MAX_BYTES
        dashboard = json.loads(text)
        assert dashboard["panels"], filename
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
        assert variable["current"]["value"] == builders.DATASOURCE_UID
        uids.add(dashboard["uid"])
    assert {"rayDefaultDashboard", "rayServeDashboard", "rayDataDashboard", "rayTrainDashboard"} <= uids


def test_children_use_the_cluster_provider(stack_run: ProgramRun) -> None:
    provider = stack_run.one("pulumi:providers:kubernetes")
    for child in _children(stack_run):
        if child.type.startswith("kubernetes:"):
            assert child.provider.startswith(provider.urn), child.name


def test_outputs_for_users_and_the_ray_head(stack_run: ProgramRun) -> None:
    namespace = _release(stack_run).inputs["namespace"]
    assert stack_run.exports["grafanaPortForwardCommand"] == (
        f"kubectl -n {namespace} port-forward svc/{builders.GRAFANA_SERVICE} 3000:80"
    )
    outputs = [
        value
        for value in _component_outputs(stack_run).values()
        if isinstance(value, dict) and "RAY_GRAFANA_HOST" in value
    ]
    assert outputs == [
        {
            "RAY_GRAFANA_HOST": builders.grafana_url(namespace),
            "RAY_PROMETHEUS_HOST": builders.prometheus_url(namespace),
            "RAY_GRAFANA_IFRAME_HOST": "http://127.0.0.1:3000",
            "RAY_PROMETHEUS_NAME": builders.DATASOURCE_NAME,
        }
    ]


def _component_outputs(run: ProgramRun) -> dict[str, Any]:
    # register_outputs of the component, as the recording monitor kept them.
    return run.component_outputs[_component(run).urn]


def test_monitoring_disabled_creates_nothing() -> None:
    run = run_ok("dev", {"monitoring": {"enabled": False}})
    assert run.of_type(COMPONENT) == []
    charts = [r.inputs.get("chart") for r in run.of_type(RELEASE)]
    assert "kube-prometheus-stack" not in charts
    # The KubeRay operator then has no ServiceMonitor (its CRD would not exist).
    kuberay_values = next(r for r in run.of_type(RELEASE) if r.inputs.get("chart") == "kuberay-operator")
    assert not kuberay_values.inputs["values"].get("metrics", {}).get("serviceMonitor", {}).get("enabled")
    assert run.custom_resources("PodMonitor") == run.custom_resources("PrometheusRule") == []
    assert _dashboard_configmaps(run) == []
    assert run.of_type("random:index/randomPassword:RandomPassword") == []
    assert not {"grafanaAdminPassword", "grafanaPortForwardCommand"} & set(run.exports)


def test_expose_dashboards_gives_grafana_an_internal_load_balancer() -> None:
    run = run_ok("dev", {"exposeDashboards": True})
    service = _release(run).inputs["values"]["grafana"]["service"]
    assert service["type"] == "LoadBalancer"
    assert service["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"


GOOD = MonitoringArgs(namespace="monitoring", ray_namespaces=("ray",))
BAD_ARGS = [
    ("namespace", {"namespace": "Monitoring"}, "namespace 'Monitoring'"),
    ("no ray namespaces", {"ray_namespaces": ()}, "ray_namespaces () must be a non-empty list"),
    ("a string, not a list", {"ray_namespaces": "ray"}, "ray_namespaces 'ray' must be a non-empty list"),
    ("bad ray namespace", {"ray_namespaces": ("ray", "Team_A")}, "['Team_A']"),
    ("retention", {"prometheus_retention": "2 weeks"}, "prometheus_retention '2 weeks'"),
    ("storage size", {"prometheus_storage_gib": 0}, "prometheus_storage_gib 0"),
    ("class without size", {"storage_class": "gp3"}, "set a size"),
    ("local port", {"grafana_local_port": 70000}, "grafana_local_port 70000"),
    ("iframe host with a path", {"grafana_iframe_host": "http://h:3000/grafana"}, "without a path"),
]


@pytest.mark.parametrize(("overrides", "fragment"), [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_are_rejected_with_the_fix(overrides: dict[str, Any], fragment: str) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="Monitoring: ") as info:
        _validate(replace(GOOD, **overrides))
    assert fragment in str(info.value)


def test_good_arguments_pass() -> None:
    _validate(GOOD)


def _namespace(run: ProgramRun) -> Registered:
    (ns,) = [r for r in _children(run) if r.type == "kubernetes:core/v1:Namespace"]
    return ns


def test_prometheus_volume_survives_destroy_unless_data_may_go() -> None:
    # dev has prometheusStorageGib: deleting the namespace would delete the volume claim.
    assert _namespace(run_shared("dev")).retain_on_delete is True
    assert _namespace(run_shared("dev", {"retainData": False})).retain_on_delete is False
    no_volume = run_program("dev", {"monitoring": {"enabled": True}})
    assert no_volume.error is None, no_volume.error
    assert _namespace(no_volume).retain_on_delete is False  # nothing to keep in an emptyDir

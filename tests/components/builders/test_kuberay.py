"""kuberay-operator Helm values: every key we set exists in the chart's default values.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.builders.kuberay import (
    COMMENTED_KEYS,
    FREE_FORM_KEYS,
    build_feature_gates,
    build_kuberay_values,
)
from components.versions import KUBERAY_FEATURE_GATES, KUBERAY_VERSION


def _values(**changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "cpu": "100m",
        "memory": "512Mi",
        "feature_gates": {},
        "batch_scheduler": None,
        "watch_namespaces": ["ray"],
        "service_monitor": True,
    }
    args.update(changes)
    return build_kuberay_values(**args)


def _everything() -> dict[str, Any]:
    """Values with every optional branch switched on."""
    return _values(
        feature_gates={"RayCronJob": True},
        batch_scheduler="volcano",
        watch_namespaces=["ray", "team-a"],
        service_monitor_labels={"release": "prometheus"},
        node_selector={"ray-on-eks/node-role": "system"},
    )


def unknown_key_paths(values: dict[str, Any], defaults: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths in ``values`` that the chart's defaults do not have (free-form maps excepted)."""
    missing: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in FREE_FORM_KEYS:
            continue
        if key not in defaults:
            if path not in COMMENTED_KEYS:
                missing.append(path)
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            missing += unknown_key_paths(value, defaults[key], f"{path}.")
    return missing


@pytest.fixture(scope="module")
def chart_values(schemas: Path) -> dict[str, Any]:
    folder = schemas / f"kuberay-v{KUBERAY_VERSION}"
    assert f"version: {KUBERAY_VERSION}" in (folder / "Chart-version.txt").read_text()
    return yaml.safe_load((folder / "kuberay-operator-values.yaml").read_text())


@pytest.mark.schemas
def test_every_value_key_exists_in_the_chart(chart_values: dict[str, Any]) -> None:
    assert unknown_key_paths(_everything(), chart_values) == []


@pytest.mark.schemas
def test_the_key_walk_catches_a_misspelt_key(chart_values: dict[str, Any]) -> None:
    broken = {**_everything(), "metrics": {"serviceMonitor": {"enable": True}}, "featureGate": []}
    assert sorted(unknown_key_paths(broken, chart_values)) == ["featureGate", "metrics.serviceMonitor.enable"]


@pytest.mark.schemas
def test_commented_keys_are_documented_in_the_chart(schemas: Path) -> None:
    # watchNamespace appears only as a comment in values.yaml; make sure it is still documented there.
    text = (schemas / f"kuberay-v{KUBERAY_VERSION}" / "kuberay-operator-values.yaml").read_text()
    for key in COMMENTED_KEYS:
        assert f"# {key}:" in text


@pytest.mark.schemas
def test_pinned_feature_gates_are_the_charts_defaults(chart_values: dict[str, Any]) -> None:
    chart = {gate["name"]: gate["enabled"] for gate in chart_values["featureGates"]}
    assert chart == dict(KUBERAY_FEATURE_GATES)


@pytest.mark.schemas
def test_operator_container_is_non_root_by_chart_default(chart_values: dict[str, Any]) -> None:
    # We rely on the chart's container securityContext and add the pod-level one.
    context = chart_values["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "securityContext" not in _values()  # not overridden (a partial override would drop fields)
    assert _values()["podSecurityContext"]["runAsNonRoot"] is True


def test_feature_gates_keep_every_default_and_apply_overrides() -> None:
    gates = {
        g["name"]: g["enabled"]
        for g in build_feature_gates({"RayCronJob": True, "RayJobDeletionPolicy": False})
    }
    assert set(gates) == set(KUBERAY_FEATURE_GATES)
    assert gates["RayCronJob"] is True
    assert gates["RayJobDeletionPolicy"] is False
    assert gates["RayClusterStatusConditions"] is True


def test_unknown_feature_gate_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown KubeRay feature gate"):
        build_feature_gates({"RayTeleport": True})


def test_operator_sizing_is_guaranteed_qos() -> None:
    resources = _values(cpu="200m", memory="1Gi")["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "200m", "memory": "1Gi"}


def test_watch_namespaces_with_cluster_scoped_rbac() -> None:
    values = _values(watch_namespaces=["ray", "team-a", "ray"])
    assert values["watchNamespace"] == ["ray", "team-a"]
    assert values["singleNamespaceInstall"] is False
    assert "watchNamespace" not in _values(watch_namespaces=[])


def test_service_monitor_follows_monitoring() -> None:
    assert _values(service_monitor=True)["metrics"]["serviceMonitor"]["enabled"] is True
    assert _values(service_monitor=False)["metrics"]["serviceMonitor"]["enabled"] is False
    assert _values()["metrics"]["enabled"] is True


def test_batch_scheduler_uses_the_name_option() -> None:
    assert "batchScheduler" not in _values()
    assert _values(batch_scheduler="yunikorn")["batchScheduler"] == {"enabled": False, "name": "yunikorn"}

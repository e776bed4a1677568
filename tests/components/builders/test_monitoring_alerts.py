"""Ray's alerts provably fire: ``promtool`` checks the rendered PrometheusRule groups, and
``promtool test rules`` feeds every alert synthetic series.

For each alert there is a failure scenario (the failure it names) and a healthy one. On the failure the
alert must be silent one evaluation before its ``for:`` window has elapsed and firing, with its labels
and rendered annotations, just after; on the healthy series it must stay silent. promtool is Debian's
``prometheus`` package (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.builders import monitoring as m

CLUSTER = {"namespace": "ray", "ray_io_cluster": "ray"}
RULES_FILE = "ray-rules.yaml"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: apt-get install prometheus (.ci/run does)")
    return found


def _rule_groups() -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rule file."""
    rule = m.build_ray_prometheus_rule(name="ray", namespace="monitoring")
    return {"groups": rule["spec"]["groups"]}


ALERTS = {rule["alert"]: rule for rule in m.RAY_ALERT_RULES}


def _minutes(duration: str | None) -> int:
    if duration is None:
        return 0
    match = re.fullmatch(r"(\d+)([mh])", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "h" else 1)


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def _format_value(value: float) -> str:
    """``{{ $value }}`` as Go's text/template prints a float64 (shortest form, no trailing .0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _render(template: str, labels: dict[str, str], value: float) -> str:
    def substitute(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if expression == "$value":
            return _format_value(value)
        assert expression.startswith("$labels."), expression
        return labels.get(expression.removeprefix("$labels."), "")

    return re.sub(r"\{\{(.*?)\}\}", substitute, template)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Synthetic series (one sample a minute from t=0) for one alert.

    ``broken_at``: the minute from which the alert's expression is true on ``failing``; ``labels`` and
    ``value``: the firing alert's own labels (besides alertname/severity) and ``$value``.
    """

    alert: str
    failing: list[dict[str, str]]
    healthy: list[dict[str, str]]
    broken_at: int
    labels: dict[str, str]
    value: float
    extra_quiet: list[list[dict[str, str]]] = field(default_factory=list)


HEAD = {**CLUSTER, "job": m.JOB_HEAD, "pod": "ray-head-abcde", "instance": "10.0.0.10:8080"}
WORKER = {**CLUSTER, "job": m.JOB_WORKERS, "pod": "ray-cpu-workers-xyz", "instance": "10.0.0.11:8080"}


def _nodes(values: list[str], **extra: str) -> list[dict[str, str]]:
    return [
        _series("ray_node_cpu_count", {**CLUSTER, "instance": f"10.0.0.{i}:8080", **extra}, v)
        for i, v in enumerate(values)
    ]


SCENARIOS = [
    Scenario(
        alert="RayHeadDown",
        failing=[_series("up", HEAD, "1 1 0x40")],
        healthy=[_series("up", HEAD, "1x40")],
        broken_at=2,
        labels=HEAD,
        value=0,
    ),
    Scenario(
        alert="RayWorkerDown",
        failing=[_series("up", WORKER, "1 1 0x40")],
        healthy=[_series("up", WORKER, "1x40")],
        broken_at=2,
        labels=WORKER,
        value=0,
    ),
    Scenario(
        alert="RayNodesLost",
        # Three nodes for 20 minutes, then one is gone (a stale marker ends its series at once).
        failing=_nodes(["4x40", "4x40", "4x19 stale"]),
        healthy=_nodes(["4x40", "4x40", "4x40"]),
        broken_at=20,
        labels=dict(CLUSTER),
        value=2,
        # An autoscaled cluster shrinking is not a loss (RayAutoscalerFailedNodes covers failures).
        extra_quiet=[
            [
                *_nodes(["4x40", "4x40", "4x19 stale"]),
                _series("autoscaler_active_nodes", {**CLUSTER, "NodeType": "cpu"}, "2x40"),
            ]
        ],
    ),
    Scenario(
        alert="RayAutoscalerFailedNodes",
        failing=[_series("autoscaler_recently_failed_nodes", {**CLUSTER, "NodeType": "gpu"}, "0 0 2x40")],
        healthy=[_series("autoscaler_recently_failed_nodes", {**CLUSTER, "NodeType": "gpu"}, "0x40")],
        broken_at=2,
        labels=dict(CLUSTER),
        value=2,
    ),
    Scenario(
        alert="RayTasksFailing",
        failing=[
            _series("ray_tasks", {**CLUSTER, "State": "FAILED", "Name": "train"}, "0x20 3x20"),
            _series("ray_tasks", {**CLUSTER, "State": "FINISHED", "Name": "train"}, "0+5x40"),
        ],
        healthy=[
            _series("ray_tasks", {**CLUSTER, "State": "FAILED", "Name": "train"}, "1x40"),
            _series("ray_tasks", {**CLUSTER, "State": "FINISHED", "Name": "train"}, "0+5x40"),
        ],
        broken_at=21,
        labels=dict(CLUSTER),
        value=3,
    ),
    Scenario(
        alert="RayWorkerProcessesDying",
        failing=[
            _series(
                "ray_node_manager_unexpected_worker_failure_total", {**CLUSTER, "instance": "n1"}, "0x20 1x20"
            )
        ],
        healthy=[
            _series("ray_node_manager_unexpected_worker_failure_total", {**CLUSTER, "instance": "n1"}, "0x40")
        ],
        broken_at=21,
        labels=dict(CLUSTER),
        value=1,
    ),
    Scenario(
        alert="RayOutOfMemoryKills",
        failing=[
            _series("ray_memory_manager_worker_eviction_total", {**CLUSTER, "instance": "n1"}, "0x20 2x20")
        ],
        healthy=[_series("ray_memory_manager_worker_eviction_total", {**CLUSTER, "instance": "n1"}, "0x40")],
        broken_at=21,
        labels=dict(CLUSTER),
        value=2,
    ),
    Scenario(
        alert="RayObjectStoreNearlyFull",
        failing=[
            _series(
                "ray_object_store_memory",
                {**CLUSTER, "instance": "n1", "Location": "MMAP_SHM"},
                "500x4 950x40",
            ),
            _series("ray_resources", {**CLUSTER, "instance": "n1", "Name": "object_store_memory"}, "1000x45"),
        ],
        # Spilled bytes are on disk, not in the store: a store at 50% with lots spilled is healthy.
        healthy=[
            _series(
                "ray_object_store_memory", {**CLUSTER, "instance": "n1", "Location": "MMAP_SHM"}, "500x45"
            ),
            _series(
                "ray_object_store_memory", {**CLUSTER, "instance": "n1", "Location": "SPILLED"}, "5000x45"
            ),
            _series("ray_resources", {**CLUSTER, "instance": "n1", "Name": "object_store_memory"}, "1000x45"),
        ],
        broken_at=5,
        labels={**CLUSTER, "instance": "n1"},
        value=0.95,
    ),
    Scenario(
        alert="RayGpuMetricsAbsent",
        failing=[_series("ray_resources", {**CLUSTER, "instance": "g1", "Name": "GPU"}, "1x45")],
        healthy=[
            _series("ray_resources", {**CLUSTER, "instance": "g1", "Name": "GPU"}, "1x45"),
            _series("ray_node_gpus_utilization", {**CLUSTER, "instance": "g1", "GpuIndex": "0"}, "50x45"),
        ],
        broken_at=0,
        labels={**CLUSTER, "instance": "g1"},
        value=1,
    ),
]


def _expected_alert(scenario: Scenario) -> dict[str, Any]:
    rule = ALERTS[scenario.alert]
    labels = {**scenario.labels, **rule["labels"]}
    return {
        "exp_labels": labels,
        "exp_annotations": {
            key: _render(text, labels, scenario.value) for key, text in rule["annotations"].items()
        },
    }


def _quiet_test(alert: str, series: list[dict[str, str]], at: int) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": f"{at}m", "alertname": alert, "exp_alerts": []}],
    }


def _unit_tests(scenario: Scenario) -> list[dict[str, Any]]:
    """Failure: silent one minute before ``broken_at + for``, firing one minute after; healthy: silent."""
    window = _minutes(ALERTS[scenario.alert].get("for"))
    fires_at = scenario.broken_at + window
    checks: list[dict[str, Any]] = [
        {
            "eval_time": f"{fires_at + 1}m",
            "alertname": scenario.alert,
            "exp_alerts": [_expected_alert(scenario)],
        }
    ]
    if fires_at >= 1:
        checks.insert(0, {"eval_time": f"{fires_at - 1}m", "alertname": scenario.alert, "exp_alerts": []})
    tests = [
        {"interval": "1m", "input_series": scenario.failing, "alert_rule_test": checks},
        _quiet_test(scenario.alert, scenario.healthy, fires_at + 1),
        _quiet_test(scenario.alert, scenario.healthy, fires_at + 10),
    ]
    tests += [_quiet_test(scenario.alert, series, fires_at + 1) for series in scenario.extra_quiet]
    return tests


@pytest.fixture(scope="module")
def rule_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("promtool")
    (directory / RULES_FILE).write_text(yaml.safe_dump(_rule_groups(), sort_keys=False))
    return directory


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rendered_rule_groups(rule_dir: Path) -> None:
    result = _run(["check", "rules", RULES_FILE], rule_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in _rule_groups()["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


def test_every_alert_has_a_scenario() -> None:
    assert sorted(s.alert for s in SCENARIOS) == sorted(ALERTS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.alert for s in SCENARIOS])
def test_alert_fires_on_its_failure_and_stays_quiet_when_healthy(rule_dir: Path, scenario: Scenario) -> None:
    test_file = rule_dir / f"test-{scenario.alert}.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": _unit_tests(scenario)},
            sort_keys=False,
        )
    )
    result = _run(["test", "rules", test_file.name], rule_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_expectation_is_caught(rule_dir: Path) -> None:
    """The harness itself: expecting RayHeadDown on a healthy head makes promtool fail."""
    scenario = SCENARIOS[0]
    broken = {
        "interval": "1m",
        "input_series": scenario.healthy,
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": scenario.alert, "exp_alerts": [_expected_alert(scenario)]}
        ],
    }
    test_file = rule_dir / "test-broken.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": [broken]})
    )
    assert _run(["test", "rules", test_file.name], rule_dir).returncode != 0

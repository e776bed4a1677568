"""Smoke test of the benchmark scripts: each runs with its smallest settings and writes its JSON.

Only the SHAPE of the result files is checked (fields, one row per variant, a verdict per target),
never the numbers: timings on a shared machine are not assertions. Every test here runs a whole
benchmark script end to end (a fresh process, most of them many program runs or a local Ray head),
so all are marked ``integration``: ``python -m pytest`` (the README's and CI's command) runs them,
``-m "not integration"`` leaves them out. The verdict arithmetic of each benchmark is unit-tested
in ``test_bench_verdicts.py`` and ``test_serving_verdict.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._common import COMMON_FIELDS, REPO
from tests.conftest import GC_THRESHOLDS


def run_benchmark(name: str, output_dir: Path, *extra: str, as_file: bool = False) -> dict[str, Any]:
    """Run ``python -m bench.<name> --repeat 1 --quick`` (or ``python bench/<name>.py``); return its JSON."""
    target = [str(REPO / "bench" / f"{name}.py")] if as_file else ["-m", f"bench.{name}"]
    done = subprocess.run(
        [sys.executable, *target, "--repeat", "1", "--quick", "--output-dir", str(output_dir), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"bench.{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    document: dict[str, Any] = json.loads((output_dir / f"{name}.json").read_text())
    return document


def check_common(document: dict[str, Any], name: str) -> None:
    missing = [key for key in COMMON_FIELDS if key not in document]
    assert not missing, f"{name}.json lacks {missing}"
    assert document["benchmark"] == name
    assert document["settings"]["repeat"] == 1
    assert document["settings"]["quick"] is True
    assert f"bench.{name}" in document["command"]
    for key in ("nproc", "memory_gib", "cpu_model"):
        assert document["machine"][key], key
    for key in ("python", "pulumi", "ray"):
        assert document["versions"][key], key
    columns, rows = document["table"]["columns"], document["table"]["rows"]
    assert rows, "the table has no rows"
    assert all(len(row) == len(columns) for row in rows)
    for target in document["targets"]:
        assert set(target) >= {"name", "value", "limit", "met", "verdict"}
        assert target["met"] is None or target["met"] == (target["value"] <= target["limit"])


def check_summary(summary: dict[str, Any]) -> None:
    assert set(summary) >= {"n", "median", "min", "max", "samples"}
    assert summary["n"] == len(summary["samples"]) >= 1
    assert summary["min"] <= summary["median"] <= summary["max"]


@pytest.mark.integration
def test_program_eval(tmp_path):
    document = run_benchmark("program_eval", tmp_path, "--profile")
    check_common(document, "program_eval")
    results = document["results"]
    check_summary(results["baseline"]["wall_s"])
    check_summary(results["baseline_with_submodules"]["wall_s"])
    assert any(name.startswith("pulumi_aws.") for name in results["baseline_with_submodules"]["modules"])
    assert results["stacks"], "no stack was measured"
    for stack, result in results["stacks"].items():
        check_summary(result["wall_s"])
        check_summary(result["program_s"])
        check_summary(result["maxrss_kib"])
        assert isinstance(result["resources"], int) and result["resources"] > 0, stack
        assert result["ratio_vs_baseline"] > 0
        assert result["ratio_vs_baseline_with_submodules"] > 0
        stand_in = result["stand_in_crd_schemas"]
        check_summary(stand_in["wall_s"])
        assert stand_in["schemas_s"] == pytest.approx(
            result["wall_s"]["median"] - stand_in["wall_s"]["median"]
        )
        assert stand_in["ratio_without"] > 0
    (attribution,) = [note for note in document["notes"] if "The schemas account for" in note]
    for stack in results["stacks"]:
        assert f"{stack}: " in attribution and "not measured" not in attribution, attribution
        check_summary(result["cpu_s"])
        assert result["cpu_ratio_vs_baseline"] > 0
    crds = results["kuberay_crds_cpu_s"]
    check_summary(crds["resources"])
    check_summary(crds["configgroup_text"])
    assert len(document["targets"]) == len(results["stacks"])
    assert results["profile"]["extra_imports"], "--profile recorded no import times"
    assert "run_program" in results["profile"]["cprofile_top"]


@pytest.mark.integration
def test_scaling(tmp_path):
    document = run_benchmark("scaling", tmp_path, as_file=True)  # also covers `python bench/<name>.py`
    check_common(document, "scaling")
    for dimension in ("rayJobs", "workerGroups"):
        result = document["results"][dimension]
        assert len(result["sizes"]) == 3
        for size in result["sizes"]:
            check_summary(result["time_s"][str(size)])
            assert result["resources"][str(size)] > 0
        assert "per_item_s" in result and "growth_ratio" in result and "superlinear" in result


@pytest.mark.integration
def test_test_suite(tmp_path):
    document = run_benchmark("test_suite", tmp_path)
    check_common(document, "test_suite")
    for suite in ("unit", "unit_cold", "unit_serial", "integration"):
        result = document["results"][suite]
        check_summary(result["wall_s"])
        assert result["ok"] is True, result
        assert "pytest" in result["command"]
    assert document["results"]["unit"]["counts"].get("passed", 0) > 0
    # Every pytest process logged its garbage collection (xdist: the controller and both workers).
    for suite, processes in (("unit", 3), ("unit_cold", 3), ("unit_serial", 1)):
        harness = document["results"][suite]["harness"]
        assert harness["gc_processes"] == processes, (suite, harness)
        assert harness["gc_s"] is not None and harness["gc_collections"] > 0, (suite, harness)
        assert harness["gc_thresholds"] == [list(GC_THRESHOLDS)], (suite, harness)


@pytest.mark.integration
def test_report_renders_every_result(tmp_path):
    run_benchmark("scaling", tmp_path)
    output = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.report", "--results-dir", str(tmp_path), "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = output.read_text()
    assert "## Scaling with RayJobs and worker groups" in text
    assert "python -m bench.scaling" in text
    assert "Not measured yet" in text  # the other benchmarks have no result file in tmp_path


@pytest.mark.integration
def test_submission(tmp_path):
    document = run_benchmark("submission", tmp_path)
    check_common(document, "submission")
    variants = document["results"]["variants"]
    assert {"workloads run", "ray job submit"} <= set(variants)
    for variant in variants.values():
        check_summary(variant["wall_s"])
        check_summary(variant["submitted_s"])
    assert document["targets"][0]["value"] > 0


@pytest.mark.integration
def test_training(tmp_path):
    document = run_benchmark("training", tmp_path)
    check_common(document, "training")
    workers = document["results"]["workers"]
    for count in ("1", "2"):
        check_summary(workers[count]["samples_per_s"])
        check_summary(workers[count]["first_checkpoint_s"])
        assert workers[count]["samples_per_epoch"] > 0
    assert "scaling_efficiency" in workers


@pytest.mark.integration
def test_deploy_path(tmp_path):
    document = run_benchmark("deploy_path", tmp_path)
    check_common(document, "deploy_path")
    results = document["results"]
    # The path starts with the VPC and the cluster and ends at a Ray resource.
    assert results["path"][:2] == ["cluster-vpc", "cluster-eks"]
    assert results["path"][-1].startswith("ray-")
    assert results["critical_path_s"] <= results["previous_critical_path_s"] <= results["serial_sum_s"]
    # The operator release no longer waits for the monitoring chart.
    assert "monitoring-kube-prometheus-stack" not in results["path"]


@pytest.mark.integration
def test_serving(tmp_path):
    document = run_benchmark("serving", tmp_path, "--concurrency", "1,64", "--profile")
    check_common(document, "serving")
    results = document["results"]
    assert results["models"]["compute"]["hidden_dim"] > results["models"]["overhead"]["hidden_dim"]
    for regime in ("overhead", "compute"):
        for concurrency in ("1", "64"):
            for server in ("baseline", "serve"):
                (sample,) = results["cells"][regime][concurrency][server]
                # Every answer was a 200 (the load is light): the same API on both servers.
                assert sample["ok"] > 0 and set(sample["statuses"]) == {"200"}, (regime, concurrency, server)
                assert sample["cpu_ms_per_request"], (regime, concurrency, server)
        profile = results["profiles"][regime]
        assert profile["proxy"]["samples"] > 0 and profile["replica"]["samples"] > 0
    assert {t["name"].split(":")[0] for t in document["targets"]} == {
        "compute-bound c64",
        "overhead-bound c64",
        "overhead-bound c1",
    }


@pytest.mark.integration
def test_training_overhead(tmp_path):
    document = run_benchmark("training_overhead", tmp_path)
    check_common(document, "training_overhead")
    results = document["results"]
    check_summary(results["ray_epoch_s"])
    check_summary(results["plain_epoch_s"])
    assert results["ratio"] == results["ray_epoch_s"]["median"] / results["plain_epoch_s"]["median"]
    assert document["targets"][0]["limit"] == 1.25


@pytest.mark.integration
def test_batch_inference(tmp_path):
    document = run_benchmark("batch_inference", tmp_path, "--batch-sizes", "256")
    check_common(document, "batch_inference")
    outcome = document["results"]["batch_sizes"]["256"]
    check_summary(outcome["ray_rows_s"])
    check_summary(outcome["plain_rows_s"])
    assert outcome["meets_min_speed"] == (outcome["speed_vs_plain"] >= 0.8)
    assert document["settings"]["small_rows"] == document["settings"]["rows"] // 4
    for kind in ("ray", "plain"):
        for size in ("small", "large"):
            check_summary(outcome["seconds"][kind][size])
        fit = outcome["fit"][kind]
        if fit is not None:  # None only when noise made the larger run no slower
            assert fit["fixed_s"] >= 0 and fit["marginal_rows_s"] > 0
    # Every Ray run (one per size at --repeat 1) is split by its Predictor actor's task events.
    for size in ("small", "large"):
        phases = outcome["ray_phases"][size]
        assert phases["runs"] == 1, phases
        parts = [phases[phase]["median"] for phase in ("to_actor_s", "actor_start_s", "after_actor_s")]
        assert all(part >= 0 for part in parts) and parts[1] > 0, parts
        # The parts are the run's wall seconds (wall clock vs perf counter; millisecond event stamps).
        assert sum(parts) == pytest.approx(outcome["seconds"]["ray"][size]["median"], abs=0.1)
    extra = document["extra_tables"][0]
    assert [row[:2] for row in extra["rows"]] == [
        ["256", str(document["settings"]["rows"])],
        ["256", str(document["settings"]["small_rows"])],
    ]

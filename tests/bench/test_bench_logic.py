"""The logic of the benchmarks whose whole-script smoke runs are ``integration`` (test_bench_smoke.py).

What decides each verdict is arithmetic over measured samples, checked here on made-up numbers (no
timing is asserted): program_eval's and deploy_path's ratio targets, scaling's growth ratio,
test_suite's reading of the pytest summary line and the report's rendering of a result file. The
deploy critical path is computed on the real ``sandbox`` graph (the program under mocks, shared with
the other stack tests), with the same assertions as the smoke run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import _common as common
from bench import deploy_path, program_eval, report, scaling, test_suite
from tests.pulumi_harness import ProgramRun

# --- the target every benchmark reports: value <= limit ----------------------------------------------


def test_target_is_met_at_or_below_the_limit_and_missed_above() -> None:
    limit = program_eval.TARGET_RATIO
    assert common.target("t", limit, limit)["met"] is True
    assert common.target("t", 1.49, 1.5)["verdict"] == "met"
    missed = common.target("t", 1.51, 1.5)
    assert missed["met"] is False and missed["verdict"] == "MISSED"


def test_target_without_a_value_is_unmeasured() -> None:
    outcome = common.target("t", None, 2.0, unmeasured="below noise")
    assert outcome["met"] is None and outcome["verdict"] == "below noise"


def test_ratio_and_summary() -> None:
    assert common.ratio(3.0, 2.0) == pytest.approx(1.5)
    assert (
        common.ratio(None, 2.0) is None and common.ratio(1.0, 0) is None and common.ratio(1.0, None) is None
    )
    summary = common.summarize([3.0, 1.0, 2.0])
    assert summary == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0, "samples": [3.0, 1.0, 2.0]}
    assert common.summarize([])["median"] is None
    assert common.fmt_s(summary) == "2.000 (1.000-3.000)" and common.fmt_s({}) == "n/a"
    assert common.fmt_x(None) == "n/a" and common.fmt_x(1.234) == "1.23x"


# --- scaling: linear vs superlinear growth -----------------------------------------------------------


def test_slope_is_the_least_squares_slope() -> None:
    assert scaling.slope([(1.0, 2.0), (10.0, 11.0), (100.0, 101.0)]) == pytest.approx(1.0)
    assert scaling.slope([(1.0, 1.0)]) is None
    assert scaling.slope([(5.0, 1.0), (5.0, 2.0)]) is None  # no spread in x


def test_linear_growth_is_a_ratio_near_one() -> None:
    medians = {1: 1.0, 10: 1.09, 100: 1.99}  # 10 ms per item throughout
    ratio = scaling.growth_ratio(scaling.SIZES, medians, noise_s=0.05)
    assert ratio == pytest.approx(1.0)
    assert ratio is not None and ratio <= scaling.SUPERLINEAR_RATIO
    assert scaling._verdict(ratio, False) == "linear"


def test_quadratic_growth_is_flagged_superlinear() -> None:
    medians = {size: 1.0 + 0.001 * size * size for size in scaling.SIZES}
    ratio = scaling.growth_ratio(scaling.SIZES, medians, noise_s=0.05)
    assert ratio is not None and ratio > scaling.SUPERLINEAR_RATIO
    assert scaling._verdict(ratio, True) == "SUPERLINEAR"
    target = common.target("rayJobs", ratio, scaling.SUPERLINEAR_RATIO)
    assert target["met"] is False and target["verdict"] == "MISSED"


def test_growth_within_the_noise_has_no_ratio() -> None:
    medians = {1: 1.0, 10: 1.01, 100: 1.02}
    assert scaling.growth_ratio(scaling.SIZES, medians, noise_s=0.05) is None
    assert scaling._verdict(None, False) == "below noise"
    # An interval that did not grow gives no ratio either (no division by a zero per-item cost).
    assert scaling.growth_ratio(scaling.SIZES, {1: 1.0, 10: 1.0, 100: 2.0}, noise_s=0.05) is None


def test_scaling_inputs_have_the_requested_sizes_and_unique_names() -> None:
    jobs = scaling.ray_jobs(3)["rayJobs"]
    groups = scaling.worker_groups(3)["workerGroups"]
    assert len(jobs) == len(groups) == 3
    assert len({job["name"] for job in jobs}) == len({group["name"] for group in groups}) == 3


# --- test_suite: the pytest summary line -------------------------------------------------------------


def test_summary_counts_read_the_last_pytest_line() -> None:
    output = "....F.s\n\nFAILED tests/x.py::t\n= 1 failed, 5 passed, 1 skipped, 22 deselected, 2 errors in 3.2s =\n"
    assert test_suite.summary_counts(output) == {
        "failed": 1,
        "passed": 5,
        "skipped": 1,
        "deselected": 22,
        "error": 2,
    }
    assert test_suite.summary_counts("12 tests collected in 0.5s\n") == {"collected": 12}
    assert test_suite.summary_counts("no summary here\n") == {}


def test_failed_tests_are_read_from_the_short_summary() -> None:
    output = "..F\n=== short test summary info ===\nFAILED tests/a.py::t - AssertionError: x\nERROR tests/b.py::u\n= 1 failed =\n"
    assert test_suite.failed_tests(output) == [
        "FAILED tests/a.py::t - AssertionError: x",
        "ERROR tests/b.py::u",
    ]
    assert test_suite.failed_tests("....\n= 4 passed =\n") == []


def test_unit_suite_target_is_the_issues_60_seconds() -> None:
    assert test_suite.unit_target(59.9)["verdict"] == "met"
    assert test_suite.unit_target(60.1)["verdict"] == "MISSED"
    assert test_suite.unit_target(None)["verdict"] == "not measured"


def test_harness_profile_sums_runs_and_copies_by_test_file() -> None:
    import json

    def line(event: str, seconds: float, test: str, **more: Any) -> str:
        return json.dumps({"event": event, "stack": "dev", "seconds": seconds, "test": test, **more})

    lines = [
        line("run", 2.0, "tests/a.py::t1", ok=True, input="x"),
        line("run", 1.0, "tests/a.py::t2", ok=True, input="y"),
        line("copy", 0.5, "tests/b.py::t1"),
        line("run", 3.0, "tests/b.py::t2", ok=True, input="x"),
        line("run", 0.25, "tests/b.py::t3", ok=False, input="z"),
        "",
    ]
    profile = test_suite.harness_profile(lines, wall_s=13.5)
    assert (profile["full_runs"], profile["full_run_s"], profile["full_run_median_s"]) == (3, 6.0, 2.0)
    assert (profile["failed_runs"], profile["failed_run_s"]) == (1, 0.25)
    assert (profile["repeated_runs"], profile["repeated_run_s"]) == (1, 3.0)
    assert (profile["copies"], profile["copy_s"]) == (1, 0.5)
    assert profile["share_of_wall"] == 0.5
    assert profile["top_files"] == [
        {"file": "tests/b.py", "seconds": 3.75, "runs": 2},
        {"file": "tests/a.py", "seconds": 3.0, "runs": 2},
    ]
    note = test_suite.profile_note(profile, 13.5)
    assert "3 mocked runs of the whole __main__.py took 6.0 s" in note
    assert "1 of them, 3.0 s, repeat an input" in note and "50% of the 14 s wall." in note
    # Two xdist workers: the logged seconds are shared out over twice the wall time.
    parallel = test_suite.harness_profile(lines, wall_s=13.5, workers=2)
    assert parallel["share_of_wall"] == 0.25
    assert "25% of the 14 s wall x 2 workers" in test_suite.profile_note(parallel, 13.5)
    assert profile["gc_s"] is None and "Garbage collection" not in note


def test_harness_profile_sums_each_processs_garbage_collection_apart_from_the_runs() -> None:
    import json

    run = {"event": "run", "stack": "dev", "seconds": 2.0, "test": "tests/a.py::t", "ok": True, "input": "x"}
    lines = [
        json.dumps(run),
        json.dumps(
            {"event": "gc", "process": "gw0", "seconds": 3.0, "collections": 200, "full_collections": 1}
            | {"thresholds": [20000, 20, 100]}
        ),
        json.dumps(
            {"event": "gc", "process": "gw1", "seconds": 2.5, "collections": 170, "full_collections": 0}
            | {"thresholds": [20000, 20, 100]}
        ),
    ]
    profile = test_suite.harness_profile(lines, wall_s=10.0, workers=2)
    # The collector's seconds are not a mocked run and not a test file's.
    assert (profile["full_runs"], profile["full_run_s"], profile["share_of_wall"]) == (1, 2.0, 0.1)
    assert profile["top_files"] == [{"file": "tests/a.py", "seconds": 2.0, "runs": 1}]
    assert (profile["gc_s"], profile["gc_processes"]) == (5.5, 2)
    assert (profile["gc_collections"], profile["gc_full_collections"]) == (370, 1)
    assert profile["gc_thresholds"] == [(20000, 20, 100)]  # one entry per distinct setting
    assert "Garbage collection: 5.5 s in 2 pytest process(es), 370 collections of which 1 full" in (
        test_suite.profile_note(profile, 10.0)
    )


def test_the_unit_suite_is_timed_on_both_cores_and_in_one_process() -> None:
    unit, serial = test_suite.SUITES["unit"], test_suite.SUITES["unit_serial"]
    assert unit[:2] == serial == ("-m", "not integration")
    assert unit[2:] == ("-n", str(test_suite.UNIT_WORKERS), "--dist", "worksteal")
    assert test_suite.SUITES["unit_cold"] == unit  # the same command, only without a bytecode cache
    assert test_suite.WORKERS == {
        "unit": test_suite.UNIT_WORKERS,
        "unit_cold": test_suite.UNIT_WORKERS,
        "unit_serial": 1,
        "integration": 1,
    }


def test_a_cold_suite_runs_without_writing_bytecode_and_the_others_with_pythons_default() -> None:
    environ = {"PATH": "/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    assert test_suite.suite_env(environ, cold=False) == {"PATH": "/bin"}
    assert test_suite.suite_env({"PATH": "/bin"}, cold=True) == {
        "PATH": "/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    assert environ == {"PATH": "/bin", "PYTHONDONTWRITEBYTECODE": "1"}  # the caller's mapping is untouched
    assert test_suite.unit_target(61.0, cold=True)["met"] is False
    assert "fresh clone" in test_suite.unit_target(59.0, cold=True)["name"]
    assert test_suite.unit_target(59.0)["met"] is True


def test_only_the_projects_own_bytecode_caches_are_cleared(tmp_path: Path) -> None:
    own = [
        tmp_path / "__pycache__",
        tmp_path / "components" / "__pycache__",
        tmp_path / "a" / "b" / "__pycache__",
    ]
    kept = [
        tmp_path / ".venv" / "lib" / "__pycache__",  # hidden: .venv, .git
        tmp_path / "venv" / "lib" / "__pycache__",  # a virtual environment under another name
    ]
    for directory in own + kept:
        directory.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "components" / "__pycache__.txt").write_text("a file, not a cache directory")
    assert sorted(test_suite.project_bytecode_dirs(tmp_path)) == sorted(own)


def test_suites_left_out_are_carried_from_the_previous_result_with_its_date() -> None:
    previous = {
        "benchmark": "test_suite",
        "started_at": "2026-12-01T10:00:00+00:00",
        "settings": {"quick": False},
        "table": {
            "rows": [
                ["unit", "`pytest`", "70.0 (69.0-71.0)", "1400 passed", "ok"],
                ["integration", "`pytest -m integration`", "900.0 (900.0-900.0)", "34 passed", "ok"],
            ]
        },
        "results": {"unit": {"wall_s": {"median": 70.0}}, "integration": {"wall_s": {"median": 900.0}}},
    }
    results, rows = test_suite.carried_suites(previous, ["unit", "unit_serial"])
    assert list(results) == ["integration"]
    assert results["integration"]["carried_from"] == "2026-12-01T10:00:00+00:00"
    assert rows == [
        [
            "integration",
            "`pytest -m integration`",
            "900.0 (900.0-900.0)",
            "34 passed",
            "ok (carried from 2026-12-01T10:00:00+00:00)",
        ]
    ]
    # Carried twice: still the date of the run that measured it, not of the one that carried it.
    again = {
        **previous,
        "started_at": "2026-12-02T10:00:00+00:00",
        "table": {"rows": rows},
        "results": results,
    }
    assert (
        test_suite.carried_suites(again, ["unit"])[1][0][-1] == "ok (carried from 2026-12-01T10:00:00+00:00)"
    )
    # Nothing is carried from a --quick result, another benchmark's file or no file at all.
    assert test_suite.carried_suites({**previous, "settings": {"quick": True}}, ["unit"]) == ({}, [])
    assert test_suite.carried_suites({**previous, "benchmark": "scaling"}, ["unit"]) == ({}, [])
    assert test_suite.carried_suites(None, ["unit"]) == ({}, [])


# --- report: every number from a result file ----------------------------------------------------------


def _document(name: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema_version": common.SCHEMA_VERSION,
        "benchmark": name,
        "title": f"Title of {name}",
        "description": "What it measures.",
        "command": f"python -m bench.{name} --repeat 1",
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 12.0,
        "settings": {"repeat": 1, "quick": True},
        "machine": {"nproc": 2, "cpu_model": "cpu", "memory_gib": 8, "loadavg_1m_5m_15m": [0.1, 0.2, 0.3]},
        "versions": {"python": "3.11", "ray": None},
        "targets": targets,
        "table": {"columns": ["a", "b|c"], "rows": [["1", "x|y"]]},
        "extra_tables": [],
        "notes": ["a note"],
        "results": {},
    }


def test_report_renders_each_result_file_and_names_the_missing(tmp_path: Path) -> None:
    missed = common.target("wall ratio", 1.8, 1.5)
    unmeasured = common.target("growth", None, 2.0, unmeasured="below noise")
    (tmp_path / "scaling.json").write_text(json.dumps(_document("scaling", [missed, unmeasured])))
    text = report.render(tmp_path)
    assert "## Title of scaling" in text
    assert "python -m bench.scaling --repeat 1" in text
    assert "**--quick: not meaningful**" in text
    assert "| 1 | x\\|y |" in text  # cells are escaped for the markdown table
    assert "| scaling | wall ratio | 1.80x | <= 1.5x | **MISSED** |" in text
    assert "| scaling | growth | n/a | <= 2.0x | below noise |" in text
    assert "Not measured yet" in text and "program_eval" in text.split("Not measured yet")[1]
    assert "- a note" in text


# --- deploy_path: the real sandbox graph ---------------------------------------------------------------


def test_critical_path_of_a_small_graph() -> None:
    class Node:
        def __init__(self, name: str, type_: str) -> None:
            self.name, self.type = name, type_

    custom = {
        "vpc": Node("vpc", "awsx:ec2:Vpc"),
        "eks": Node("eks", "eks:index:Cluster"),
        "role": Node("role", "aws:iam/role:Role"),
        "ray": Node("ray", "kubernetes:ray.io/v1:RayCluster"),
    }
    waits: dict[str, set[str]] = {"vpc": set(), "eks": {"vpc"}, "role": set(), "ray": {"eks", "role"}}
    length, path, serial = deploy_path.critical_path(custom, waits)
    assert path == ["vpc", "eks", "ray"]
    assert length == pytest.approx(150.0 + 720.0 + 300.0)
    assert serial == pytest.approx(length + 5.0)
    assert deploy_path.length_to(custom, waits, "eks") == pytest.approx(870.0)
    slower = deploy_path.with_edges(custom, waits, (("role", "eks"),))
    assert deploy_path.critical_path(custom, slower)[1] == ["vpc", "eks", "role", "ray"]


def test_sandbox_critical_path_starts_at_the_cluster_and_skips_monitoring(
    stack_runs: dict[str, ProgramRun],
) -> None:
    custom, waits = deploy_path.graph(stack_runs[deploy_path.STACK])
    length, path, serial = deploy_path.critical_path(custom, waits)
    previous, _, _ = deploy_path.critical_path(
        custom, deploy_path.with_edges(custom, waits, deploy_path.PREVIOUS_EDGES)
    )
    names = [custom[urn].name for urn in path]
    # The path starts with the VPC and the cluster and ends at a Ray resource.
    assert names[:2] == ["cluster-vpc", "cluster-eks"]
    assert names[-1].startswith("ray-")
    assert length <= previous <= serial
    # The operator release no longer waits for the monitoring chart.
    assert "monitoring-kube-prometheus-stack" not in names


# --- program_eval: what the KubeRay CRD schemas cost a program ---------------------------------------


def test_schema_attribution_is_the_difference_and_its_share_of_the_program() -> None:
    found = program_eval.schema_attribution(3.0, 2.2, 2.0)
    assert found["schemas_s"] == pytest.approx(0.8)
    assert found["program_extra_s"] == pytest.approx(1.0)
    assert found["share"] == pytest.approx(0.8)
    assert found["ratio_without"] == pytest.approx(1.1)  # would meet the 1.2x target without them


def test_schema_attribution_keeps_noise_visible_and_refuses_missing_inputs() -> None:
    noisy = program_eval.schema_attribution(2.0, 2.1, 1.9)
    assert noisy["schemas_s"] == pytest.approx(-0.1) and noisy["share"] == pytest.approx(-1.0)
    assert program_eval.schema_attribution(1.8, 1.7, 1.9)["share"] is None  # program under the baseline
    for missing in ((None, 1.0, 1.0), (1.0, None, 1.0), (1.0, 1.0, None), (1.0, 1.0, 0.0)):
        assert set(program_eval.schema_attribution(*missing).values()) == {None}

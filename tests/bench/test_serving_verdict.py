"""The serving benchmark's verdict and bookkeeping on synthetic measurements (no Ray, no servers).

The targets of bench/serving.py (issue 15): compute-bound Serve throughput >= 1.0x the baseline's
at 64 clients, overhead-bound >= 0.5x, and overhead-bound p50 at one client <= 2x. These tests feed
made-up medians and check that each verdict passes and fails where it should; no timing is asserted.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import serving


def medians(
    *,
    compute_c64: tuple[float, float] = (50.0, 80.0),
    overhead_c64: tuple[float, float] = (900.0, 500.0),
    overhead_c1_p50: tuple[float, float] = (0.001, 0.0015),
) -> dict[str, Any]:
    """``medians[regime][clients][server]`` with (baseline, serve) throughputs and p50s."""

    def cell(rps: tuple[float, float], p50: tuple[float, float] = (0.01, 0.01)) -> dict[str, Any]:
        return {
            "baseline": {"throughput_rps": rps[0], "p50_s": p50[0], "p99_s": p50[0] * 3},
            "serve": {"throughput_rps": rps[1], "p50_s": p50[1], "p99_s": p50[1] * 3},
        }

    return {
        "compute": {1: cell((40.0, 40.0)), 64: cell(compute_c64)},
        "overhead": {1: cell((500.0, 300.0), overhead_c1_p50), 64: cell(overhead_c64)},
    }


def by_name(targets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {target["name"].split(":")[0]: target for target in targets}


def test_all_targets_met() -> None:
    targets = by_name(serving.verdicts(medians()))
    assert set(targets) == {"compute-bound c64", "overhead-bound c64", "overhead-bound c1"}
    assert all(t["met"] is True and t["verdict"] == "met" for t in targets.values())
    assert targets["compute-bound c64"]["value"] == pytest.approx(50 / 80)
    assert targets["overhead-bound c64"]["limit"] == pytest.approx(2.0)
    assert targets["overhead-bound c1"]["value"] == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("kwargs", "missed"),
    [
        ({"compute_c64": (50.0, 49.0)}, "compute-bound c64"),  # Serve just below 1.0x
        ({"overhead_c64": (900.0, 440.0)}, "overhead-bound c64"),  # below 0.5x
        ({"overhead_c1_p50": (0.001, 0.0021)}, "overhead-bound c1"),  # p50 above 2x
    ],
)
def test_each_target_fails_on_its_own(kwargs: dict[str, Any], missed: str) -> None:
    targets = by_name(serving.verdicts(medians(**kwargs)))
    assert targets[missed]["met"] is False and targets[missed]["verdict"] == "MISSED"
    assert all(t["met"] is True for name, t in targets.items() if name != missed)


def test_boundaries_are_inclusive() -> None:
    targets = by_name(
        serving.verdicts(
            medians(compute_c64=(60.0, 60.0), overhead_c64=(800.0, 400.0), overhead_c1_p50=(0.002, 0.004))
        )
    )
    assert all(t["met"] is True for t in targets.values())


def test_serve_answering_nothing_is_a_miss_not_a_gap() -> None:
    targets = by_name(serving.verdicts(medians(compute_c64=(50.0, 0.0))))
    assert targets["compute-bound c64"]["met"] is False
    assert targets["compute-bound c64"]["verdict"] == "MISSED"


def test_unmeasured_cells_are_not_measured() -> None:
    partial = medians()
    del partial["compute"]
    partial["overhead"][1]["serve"]["p50_s"] = None
    targets = by_name(serving.verdicts(partial))
    assert targets["compute-bound c64"]["met"] is None
    assert targets["compute-bound c64"]["verdict"] == "not measured"
    assert targets["overhead-bound c1"]["met"] is None
    assert targets["overhead-bound c64"]["met"] is True


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert serving.percentile(values, 50) == 50.0
    assert serving.percentile(values, 99) == 99.0
    assert serving.percentile([7.0], 99) == 7.0
    assert serving.percentile([], 50) is None


def test_load_summary_counts_only_answers_as_throughput() -> None:
    load = serving.Load(latencies_s=[0.1, 0.2, 0.3, 0.4], timeouts=2, errors=1, wall_s=2.0)
    summary = load.summary()
    assert summary["ok"] == 4 and summary["timeouts"] == 2 and summary["errors"] == 1
    assert summary["throughput_rps"] == pytest.approx(2.0)
    assert summary["p50_s"] == 0.2 and summary["p99_s"] == 0.4


def test_cpu_per_request_by_hop() -> None:
    before = {"proxy": 1.0, "replica": 2.0, "client": 0.5}
    after = {"proxy": 1.5, "replica": 2.2, "client": 0.5, "controller": 0.01}
    assert serving.cpu_ms_per_request(before, after, 100) == {
        "proxy": 5.0,
        "replica": 2.0,
        "controller": 0.1,
    }
    assert serving.cpu_ms_per_request(before, after, 0) == {}
    assert serving.classify("ray::ServeReplica:classifier:Classifier") == "replica"
    assert serving.classify("ray::ProxyActor") == "proxy"
    assert serving.classify("/venv/bin/raylet --node") == "ray_other"


def test_top_frames_parses_py_spy_raw_output() -> None:
    raw = (
        "main (a.py:1);handle (b.py:2);forward (/x/linear.py:9) 30\n"
        "main (a.py:1);handle (b.py:2) 10\n"
        "main (a.py:1);log (/y/logging.py:3) 10\n"
    )
    top = serving.top_frames(raw)
    assert top["samples"] == 50
    assert top["self"][0] == ["forward (linear.py:9)", 60.0]
    inclusive = dict((frame, share) for frame, share in top["inclusive"])
    assert inclusive["main (a.py:1)"] == 100.0 and inclusive["handle (b.py:2)"] == 80.0


def test_hop_notes_state_the_cpu_ceiling_of_each_path() -> None:
    cells = {
        "overhead": {
            64: {
                "serve": [
                    {"cpu_ms_per_request": {"proxy": 4.0, "replica": 3.0, "ray_other": 1.0, "client": 0.3}},
                    {"cpu_ms_per_request": {"proxy": 6.0, "replica": 5.0, "ray_other": 1.0, "client": 0.3}},
                ],
                "baseline": [{"cpu_ms_per_request": {"baseline": 0.5, "client": 0.3}}],
            }
        }
    }
    (note,) = serving.hop_notes(cells)
    assert note.startswith("overhead c64: Serve spends 10.00 CPU-ms per request (proxy 5.00, replica 4.00")
    assert "against 0.50 in the baseline" in note

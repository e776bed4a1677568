"""Verdict logic of the training-overhead and batch-inference benchmarks, on synthetic measurements.

The benchmarks themselves need a local Ray and minutes; what decides their verdicts is pure
arithmetic over the measured samples, checked here for passing, failing and unmeasured cases
(no timing is asserted: the inputs are made-up numbers).
"""

from __future__ import annotations

import pytest

from bench import batch_inference, training_overhead


def test_training_overhead_passes_within_the_limit() -> None:
    outcome = training_overhead.verdict([2.4, 2.2, 2.6], [2.0, 2.1, 1.9])
    assert outcome["ratio"] == pytest.approx(2.4 / 2.0)
    assert outcome["target"]["limit"] == 1.25
    assert outcome["target"]["met"] is True and outcome["target"]["verdict"] == "met"
    # Each interleaved pair's ratio, summarized: 2.4/2.0, 2.2/2.1, 2.6/1.9.
    assert outcome["pair_ratios"]["samples"] == pytest.approx([1.2, 2.2 / 2.1, 2.6 / 1.9])
    assert outcome["pair_ratios"]["median"] == pytest.approx(1.2)


def test_training_overhead_misses_above_the_limit() -> None:
    outcome = training_overhead.verdict([1.6, 1.6, 1.7], [0.03, 0.04, 0.03])
    assert outcome["ratio"] == pytest.approx(1.6 / 0.03)
    assert outcome["target"]["met"] is False and outcome["target"]["verdict"] == "MISSED"


def test_training_overhead_exact_limit_passes_and_custom_limit_applies() -> None:
    assert training_overhead.verdict([2.5], [2.0])["target"]["met"] is True
    assert training_overhead.verdict([2.5], [2.0], limit=1.2)["target"]["met"] is False


def test_training_overhead_without_measurements_is_unmeasured() -> None:
    outcome = training_overhead.verdict([], [])
    assert outcome["ratio"] is None
    assert outcome["target"]["met"] is None and outcome["target"]["verdict"] == "not measured"


def test_steady_epochs_drop_the_warm_up_epoch() -> None:
    assert training_overhead.steady({1: 9.0, 2: 2.0, 3: 2.2}) == [2.0, 2.2]
    assert training_overhead.steady({1: 9.0}) == [9.0]  # a one-epoch run keeps its only epoch


def test_epoch_line_pattern_reads_the_workload_log_line() -> None:
    line = (
        "epoch 3/5 loss=0.1234 held_out_accuracy=0.9500 train_seconds=2.100 "
        "samples_per_second=20528 report_seconds=0.050 epoch_seconds=2.201"
    )
    match = training_overhead.EPOCH_LINE.search(line)
    assert match is not None
    assert match.groups() == ("3", "5", "2.100", "0.050", "2.201")


def test_batch_inference_passes_at_or_above_the_minimum_speed() -> None:
    outcome = batch_inference.verdict([90_000, 80_000, 100_000], [100_000, 100_000, 100_000])
    assert outcome["speed_vs_plain"] == pytest.approx(0.9)
    assert outcome["meets_min_speed"] is True
    target = outcome["target"]
    assert target["value"] == pytest.approx(1 / 0.9) and target["limit"] == pytest.approx(1.25)
    assert target["met"] is True
    # Exactly 0.8x passes too (the limit 1.25 is 1/0.8).
    assert batch_inference.verdict([80.0], [100.0])["target"]["met"] is True


def test_batch_inference_misses_below_the_minimum_speed() -> None:
    outcome = batch_inference.verdict([20_000, 30_000], [100_000, 100_000])
    assert outcome["speed_vs_plain"] == pytest.approx(0.25)
    assert outcome["meets_min_speed"] is False
    assert outcome["target"]["met"] is False and outcome["target"]["verdict"] == "MISSED"
    # The pass/fail of the upper-limit form agrees with the rows/s form.
    assert outcome["target"]["met"] == outcome["meets_min_speed"]


def test_batch_inference_without_measurements_is_unmeasured() -> None:
    outcome = batch_inference.verdict([], [1.0])
    assert outcome["speed_vs_plain"] is None and outcome["meets_min_speed"] is None
    assert outcome["target"]["verdict"] == "not measured"


def test_batch_inference_fit_recovers_start_up_and_marginal_rows_s() -> None:
    # seconds = 2 + rows / 1000
    fixed, marginal = batch_inference.fit_fixed_and_marginal(1000, 3.0, 5000, 7.0) or (None, None)
    assert fixed == pytest.approx(2.0) and marginal == pytest.approx(1000.0)
    # Noise that puts the intercept below zero reads as no start-up, not a negative one.
    assert batch_inference.fit_fixed_and_marginal(1000, 0.5, 5000, 4.5) == (0.0, pytest.approx(1000.0))
    # Two runs that cannot say it: the larger not slower, or the sizes not increasing.
    assert batch_inference.fit_fixed_and_marginal(1000, 3.0, 5000, 3.0) is None
    assert batch_inference.fit_fixed_and_marginal(5000, 3.0, 5000, 4.0) is None


def _end_to_end_speed(rows: float, ray: tuple[float, float], plain: tuple[float, float]) -> float:
    """Ray rows/s over plain rows/s for a job of ``rows`` under the fitted times."""
    return (plain[0] + rows / plain[1]) / (ray[0] + rows / ray[1])


def test_batch_inference_break_even_is_where_ray_reaches_the_minimum_speed() -> None:
    ray, plain = (8.0, 60_000.0), (0.1, 15_000.0)  # slow start, 4x the marginal rows/s
    rows = batch_inference.break_even_rows(ray, plain)
    assert rows is not None and rows == pytest.approx(118_125.0)
    assert _end_to_end_speed(rows, ray, plain) == pytest.approx(0.8)
    assert _end_to_end_speed(rows / 2, ray, plain) < 0.8 < _end_to_end_speed(rows * 2, ray, plain)


def test_batch_inference_break_even_edges() -> None:
    # Ray at least as fast from the first row: every job size meets the target.
    assert batch_inference.break_even_rows((0.0, 20_000.0), (0.0, 10_000.0)) == 0.0
    # Ray's marginal rows/s below 0.8x plain: no job is large enough.
    assert batch_inference.break_even_rows((1.0, 7_000.0), (0.0, 10_000.0)) is None
    # Exactly 0.8x at the margin: only a start-up no slower than plain's / 0.8 meets it.
    assert batch_inference.break_even_rows((1.0, 8_000.0), (1.0, 10_000.0)) == 0.0
    assert batch_inference.break_even_rows((2.0, 8_000.0), (1.0, 10_000.0)) is None


def _task(kind: str, name: str, **stamps_s: float) -> dict[str, object]:
    """A task record as the state API returns it, event times in seconds."""
    events = [{"state": state, "created_ms": int(at * 1000)} for state, at in stamps_s.items()]
    return {"type": kind, "name": name, "events": events}


def test_batch_inference_run_phases_split_a_run_at_its_first_predictor_actor() -> None:
    actor = "MapWorker(MapBatches(Predictor)).__init__"
    tasks = [
        # The previous run's actor and a Ray Data helper actor: not this run's Predictor.
        _task("ACTOR_CREATION_TASK", actor, PENDING_ARGS_AVAIL=95.0, RUNNING=96.0, FINISHED=98.0),
        _task(
            "ACTOR_CREATION_TASK",
            "datasets_stats_actor:_StatsActor.__init__",
            PENDING_ARGS_AVAIL=100.2,
            FINISHED=101.0,
        ),
        # This run's two pool actors: the first requested one is the one that gates the run.
        _task("ACTOR_CREATION_TASK", actor, PENDING_ARGS_AVAIL=101.5, RUNNING=101.6, FINISHED=104.0),
        _task("ACTOR_CREATION_TASK", actor, PENDING_ARGS_AVAIL=104.5, RUNNING=104.6, FINISHED=106.0),
        _task(
            "ACTOR_TASK", "MapWorker(MapBatches(Predictor)).submit", PENDING_ARGS_AVAIL=104.1, FINISHED=104.2
        ),
    ]
    phases = batch_inference.run_phases(100.0, 106.5, tasks)
    assert phases == {
        "to_actor_s": pytest.approx(1.5),
        "actor_start_s": pytest.approx(2.5),
        "after_actor_s": pytest.approx(2.5),
    }
    assert sum(phases.values()) == pytest.approx(6.5)  # the phases add up to the run


def test_batch_inference_run_phases_need_a_finished_actor_in_the_window() -> None:
    actor = "MapWorker(MapBatches(Predictor)).__init__"
    unfinished = _task("ACTOR_CREATION_TASK", actor, PENDING_ARGS_AVAIL=101.0, RUNNING=101.5)
    earlier = _task("ACTOR_CREATION_TASK", actor, PENDING_ARGS_AVAIL=90.0, FINISHED=92.0)
    assert batch_inference.run_phases(100.0, 105.0, [unfinished, earlier]) is None
    assert batch_inference.run_phases(100.0, 105.0, []) is None

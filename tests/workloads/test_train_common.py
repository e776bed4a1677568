"""workloads.train_common: what every catalog training job's driver does around ``trainer.fit()``."""

from __future__ import annotations

import os

import pytest

from workloads import train_common

ENV = train_common.HEALTH_CHECK_INTERVAL_ENV


class _Trainer:
    """Records what Ray Train would hand its controller when ``fit`` runs (its own propagation code)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.propagated: dict[str, str] | None = None

    def fit(self) -> None:
        from ray.train.v2._internal.constants import get_env_vars_to_propagate

        self.propagated = get_env_vars_to_propagate()
        if self.error is not None:
            raise self.error


@pytest.fixture
def no_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable unset, and unset again after the test (``fit`` sets it in this process)."""
    monkeypatch.setenv(ENV, "placeholder")
    monkeypatch.delenv(ENV)


def test_the_controller_polls_every_quarter_second_unless_the_job_says_otherwise(no_interval: None) -> None:
    trainer = _Trainer()
    assert train_common.fit(trainer) is True
    assert trainer.propagated is not None
    assert trainer.propagated.get(ENV) == "0.25"
    assert float(os.environ[ENV]) == train_common.HEALTH_CHECK_INTERVAL_S


def test_an_interval_set_in_the_job_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "2")
    trainer = _Trainer()
    assert train_common.fit(trainer) is True
    assert trainer.propagated is not None and trainer.propagated.get(ENV) == "2"


def test_a_failed_fit_is_one_error_line_and_false(
    no_interval: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_common.fit(_Trainer(RuntimeError("worker 1 died"))) is False
    assert capsys.readouterr().err == "error: training failed: worker 1 died\n"


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "nan", "inf", ""])
def test_a_bad_interval_in_the_job_environment_stops_before_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    monkeypatch.setenv(ENV, bad)
    trainer = _Trainer()
    assert train_common.fit(trainer) is False
    assert trainer.propagated is None  # the trainer never ran
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{ENV}={bad!r}" in error and "unset it" in error, error

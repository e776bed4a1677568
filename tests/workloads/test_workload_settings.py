"""Unit tests of env-contract parsing (workloads.settings and each workload's settings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workloads.batch_inference.predict import BatchSettings
from workloads.dt_pytorch.train import TrainSettings
from workloads.serve.app import ServeSettings
from workloads.settings import EnvReader, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_come_from_the_contract_and_paths_derive_from_storage() -> None:
    settings = TrainSettings.from_env({"STORAGE_PATH": "/fsx"})
    assert settings.num_workers == 2 and settings.epochs == 10 and settings.batch_size == 32
    assert settings.use_gpu is False and settings.dataset == "digits"
    assert settings.checkpoint_dir == Path("/fsx/checkpoints")
    assert settings.run_dir == Path("/fsx/checkpoints/dt-pytorch")
    assert settings.model_path == Path("/fsx/models/latest")
    assert settings.data_dir == Path("/fsx/datasets/digits")


def test_explicit_values_win_over_derived_ones() -> None:
    settings = TrainSettings.from_env(
        {
            "STORAGE_PATH": "/fsx",
            "CHECKPOINT_DIR": "/s3/ckpt",
            "MODEL_PATH": "/s3/model",
            "NUM_WORKERS": "4",
            "USE_GPU": "TRUE",
            "LEARNING_RATE": "1e-3",
            "DATASET": "fashion-mnist",
        }
    )
    assert settings.checkpoint_dir == Path("/s3/ckpt") and settings.model_path == Path("/s3/model")
    assert settings.num_workers == 4 and settings.use_gpu is True and settings.learning_rate == 0.001
    assert settings.data_dir == Path("/fsx/datasets/fashion-mnist")


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("NUM_WORKERS", "abc", "NUM_WORKERS must be an integer >= 1, got 'abc'"),
        ("NUM_WORKERS", "0", "NUM_WORKERS must be an integer >= 1, got '0'"),
        ("EPOCHS", "2.5", "EPOCHS must be an integer >= 1"),
        ("MAX_FAILURES", "-1", "MAX_FAILURES must be an integer >= 0"),
        ("USE_GPU", "maybe", "USE_GPU must be true or false, got 'maybe'"),
        ("LEARNING_RATE", "-0.1", "LEARNING_RATE must be a number > 0"),
        ("LEARNING_RATE", "nan", "LEARNING_RATE must be a number > 0"),
        ("CPUS_PER_WORKER", "x", "CPUS_PER_WORKER must be a number > 0"),
        ("DATASET", "cifar", "DATASET must be one of digits, fashion-mnist; got 'cifar'"),
        ("CHECKPOINT_DIR", "relative/dir", "CHECKPOINT_DIR must be an absolute path"),
        ("RUN_NAME", "a/b", "RUN_NAME must be a plain directory name"),
        ("PAUSE_AFTER_EPOCH", "-1", "PAUSE_AFTER_EPOCH must be an integer >= 0"),
        ("PAUSE_SECONDS", "soon", "PAUSE_SECONDS must be an integer >= 0, got 'soon'"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        TrainSettings.from_env({"STORAGE_PATH": "/fsx", name: value})
    assert fragment in str(caught.value)


def test_storage_path_is_required_when_paths_are_derived() -> None:
    with pytest.raises(SettingsError, match="STORAGE_PATH is required"):
        TrainSettings.from_env({})
    # ... but not when every path is given explicitly.
    settings = ServeSettings.from_env({"MODEL_PATH": "/models/m"})
    assert settings.model_path == Path("/models/m")
    with pytest.raises(SettingsError, match="STORAGE_PATH is required"):
        ServeSettings.from_env({})


def test_batch_settings_derive_output_under_storage() -> None:
    settings = BatchSettings.from_env({"STORAGE_PATH": "/fsx", "BATCH_SIZE": "64"})
    assert settings.batch_size == 64
    assert settings.result_dir == Path("/fsx/predictions/batch-inference")
    assert settings.model_path == Path("/fsx/models/latest")


def test_reader_refuses_names_outside_the_contract() -> None:
    with pytest.raises(SettingsError, match="not part of the workload env contract"):
        EnvReader({"HOME": "/root"}).string("HOME")


def test_empty_value_falls_back_to_the_default() -> None:
    assert EnvReader({"EPOCHS": "  "}).integer("EPOCHS", minimum=1) == 10


def test_entrypoint_reports_bad_env_without_traceback() -> None:
    env = {**os.environ, "STORAGE_PATH": "/tmp/unused", "NUM_WORKERS": "zero"}
    completed = subprocess.run(
        [sys.executable, "-m", "workloads.dt_pytorch.train"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert "configuration error: NUM_WORKERS must be an integer >= 1, got 'zero'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_every_contract_variable_has_a_submission_time_check() -> None:
    from workloads.catalog import ENV_CONTRACT
    from workloads.settings import _CHECKS, check_env

    assert set(_CHECKS) == {var.name for var in ENV_CONTRACT}
    check_env({var.name: var.default for var in ENV_CONTRACT if var.default is not None})
    with pytest.raises(SettingsError, match="SEED must be an integer >= 0, got '-3'"):
        check_env({"SEED": "-3"})
    with pytest.raises(SettingsError, match="NOPE is not part of the workload env contract"):
        check_env({"NOPE": "1"})


def test_storage_locations_accept_s3_uris_and_derive_under_them() -> None:
    settings = TrainSettings.from_env(
        {"STORAGE_PATH": "s3://bucket/ray-results/", "DATASET": "fashion-mnist"}
    )
    assert settings.checkpoint_dir == "s3://bucket/ray-results/checkpoints"
    assert settings.run_dir == "s3://bucket/ray-results/checkpoints/dt-pytorch"
    assert settings.model_path == "s3://bucket/ray-results/models/latest"
    # Data files stay local: a per-node cache when the storage is a URI.
    assert isinstance(settings.data_dir, Path) and settings.data_dir.name == "fashion-mnist"
    for bad in ("gs://bucket/x", "s3://", "s3:///key", "relative/dir"):
        with pytest.raises(SettingsError, match="must be an absolute path or s3://bucket/prefix"):
            TrainSettings.from_env({"STORAGE_PATH": bad})


def test_default_ray_env_sets_only_unset_ray_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads.settings import default_ray_env

    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "placeholder")
    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")  # unset now, and again after the test
    assert default_ray_env("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25") == "0.25"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.25"
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")
    assert default_ray_env("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25") == "2"
    with pytest.raises(ValueError, match=r"RAY_\*.*'EPOCHS'"):
        default_ray_env("EPOCHS", "3")


def test_positive_number_is_the_one_check_for_numbers_above_zero() -> None:
    from workloads.settings import positive_number

    assert positive_number("0.25") == 0.25 and positive_number(" 2 ") == 2.0
    for bad in ("abc", "", "0", "-1", "nan", "inf", "-inf", "1e999"):
        assert positive_number(bad) is None, bad

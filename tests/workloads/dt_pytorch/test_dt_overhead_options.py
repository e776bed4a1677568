"""DATA_REPEATS (shifted training copies) and CHECKPOINT_EVERY (which epochs report a checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.dt_pytorch.data import DatasetError, Split, load_dataset, repeat_train
from workloads.dt_pytorch.train import TrainSettings
from workloads.settings import SettingsError, check_env

BASE_ENV = {"STORAGE_PATH": "/tmp/unused-storage"}


def test_repeats_grow_the_training_split_only() -> None:
    plain = load_dataset("digits", seed=0)
    grown = load_dataset("digits", seed=0, repeats=3)
    assert len(grown.x_train) == 3 * len(plain.x_train)
    np.testing.assert_array_equal(grown.y_train, np.tile(plain.y_train, 3))
    np.testing.assert_array_equal(grown.x_train[: len(plain.x_train)], plain.x_train)  # copy 0 as is
    np.testing.assert_array_equal(grown.x_test, plain.x_test)
    np.testing.assert_array_equal(grown.y_test, plain.y_test)
    assert load_dataset("digits", seed=0, repeats=1).x_train.shape == plain.x_train.shape


def test_extra_copies_are_one_pixel_shifts_of_the_original() -> None:
    plain = load_dataset("digits", seed=0)
    grown = repeat_train(plain, repeats=2, seed=5)
    n = len(plain.x_train)
    originals, copies = plain.x_train.reshape(-1, 8, 8), grown.x_train[n:].reshape(-1, 8, 8)
    for original, copy in zip(originals[:200], copies[:200], strict=True):
        candidates = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = np.roll(original, (dy, dx), axis=(0, 1))
                if dy:
                    shifted[0 if dy > 0 else -1, :] = 0
                if dx:
                    shifted[:, 0 if dx > 0 else -1] = 0
                candidates.append(shifted)
        assert any(np.array_equal(copy, c) for c in candidates)
    assert not np.array_equal(copies, originals), "no copy was shifted"
    # Seeded: the same seed gives the same copies.
    np.testing.assert_array_equal(repeat_train(plain, repeats=2, seed=5).x_train, grown.x_train)


def test_non_square_rows_cannot_be_shifted() -> None:
    split = Split(
        x_train=np.zeros((4, 10), np.float32),
        y_train=np.zeros(4, np.int64),
        x_test=np.zeros((1, 10), np.float32),
        y_test=np.zeros(1, np.int64),
        feature_scale=1.0,
        num_classes=2,
    )
    with pytest.raises(DatasetError, match="not square"):
        repeat_train(split, repeats=2, seed=0)


@pytest.mark.parametrize(
    ("every", "epochs", "pause", "expected"),
    [
        (1, 4, 0, [1, 2, 3, 4]),  # the default: every epoch, as before
        (3, 10, 0, [3, 6, 9, 10]),  # every third, plus the last
        (5, 10, 2, [2, 5, 10]),  # the pause epoch promises a stored checkpoint
        (20, 4, 0, [4]),
    ],
)
def test_checkpoint_epochs(every: int, epochs: int, pause: int, expected: list[int]) -> None:
    settings = TrainSettings.from_env(
        {**BASE_ENV, "CHECKPOINT_EVERY": str(every), "EPOCHS": str(epochs), "PAUSE_AFTER_EPOCH": str(pause)}
    )
    assert [e for e in range(1, epochs + 1) if settings.checkpoints_after(e)] == expected


def test_defaults_and_bad_values() -> None:
    settings = TrainSettings.from_env(BASE_ENV)
    assert settings.checkpoint_every == 1 and settings.data_repeats == 1
    assert TrainSettings.from_env({**BASE_ENV, "DATA_REPEATS": "4"}).data_repeats == 4
    for name in ("CHECKPOINT_EVERY", "DATA_REPEATS"):
        for bad in ("0", "two"):
            with pytest.raises(SettingsError, match=rf"{name} must be an integer >= 1, got '{bad}'"):
                TrainSettings.from_env({**BASE_ENV, name: bad})
            with pytest.raises(SettingsError, match=name):
                check_env({name: bad})

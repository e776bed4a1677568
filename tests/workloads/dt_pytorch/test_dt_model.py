"""Unit tests of the model directory layout shared by checkpoints, serve and batch inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from workloads.dt_pytorch.model import (
    ModelMeta,
    ModelNotFoundError,
    build_model,
    checkpoint_dir_name,
    export_model,
    load_model,
    newest_checkpoint,
    predict,
    read_meta,
    write_model_dir,
)


def meta(epoch: int = 1, accuracy: float = 0.5) -> ModelMeta:
    return ModelMeta(
        input_dim=4,
        hidden_dim=8,
        num_classes=3,
        feature_scale=2.0,
        dataset="digits",
        epoch=epoch,
        held_out_accuracy=accuracy,
    )


def save(directory: Path, *, epoch: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(input_dim=4, hidden_dim=8, num_classes=3)
    write_model_dir(directory, state_dict=model.state_dict(), meta=meta(epoch))
    return model


def test_round_trip_predicts_like_the_original(tmp_path: Path) -> None:
    original = save(tmp_path / "m")
    loaded, loaded_meta = load_model(tmp_path / "m")
    assert loaded_meta == meta(1)
    features = np.random.default_rng(0).uniform(0, 2, size=(50, 4)).astype(np.float32)
    expected = original(torch.as_tensor(features / 2.0)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(predict(loaded, loaded_meta, features), expected)


def test_newest_checkpoint_takes_the_highest_complete_epoch(tmp_path: Path) -> None:
    assert newest_checkpoint(tmp_path / "missing") is None
    for epoch in (1, 2, 10):
        save(tmp_path / checkpoint_dir_name(epoch), epoch=epoch)
    (tmp_path / checkpoint_dir_name(11)).mkdir()  # incomplete (no files): ignored
    (tmp_path / "checkpoint_2026-01-01").mkdir()  # not ours: ignored
    found = newest_checkpoint(tmp_path)
    assert found == (10, tmp_path / "epoch_0010")


def test_export_replaces_the_previous_model(tmp_path: Path) -> None:
    save(tmp_path / "ckpt1", epoch=1, seed=1)
    save(tmp_path / "ckpt2", epoch=2, seed=2)
    target = tmp_path / "models" / "latest"
    assert export_model(tmp_path / "ckpt1", target).epoch == 1
    assert export_model(tmp_path / "ckpt2", target).epoch == 2
    assert read_meta(target).epoch == 2
    assert sorted(p.name for p in target.iterdir()) == ["model.json", "model.pt"]
    assert [p.name for p in target.parent.iterdir()] == ["latest"]  # no staging leftovers


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="run the dt-pytorch workload first"):
        load_model(tmp_path)


def test_predict_runs_rows_per_forward_at_a_time_with_the_same_answers(tmp_path: Path) -> None:
    model = save(tmp_path)
    features = np.random.default_rng(0).uniform(0, 2, size=(10, 4)).astype(np.float32)
    whole = predict(model, meta(), features)
    forwards: list[int] = []
    model.register_forward_hook(lambda _module, inputs, _output: forwards.append(len(inputs[0])))
    np.testing.assert_array_equal(predict(model, meta(), features, rows_per_forward=4), whole)
    assert forwards == [4, 4, 2]
    forwards.clear()
    # At most rows_per_forward rows, or none given: one forward; an empty batch gives no predictions.
    np.testing.assert_array_equal(predict(model, meta(), features, rows_per_forward=10), whole)
    np.testing.assert_array_equal(predict(model, meta(), features), whole)
    assert predict(model, meta(), features[:0], rows_per_forward=4).shape == (0,)
    assert forwards == [10, 10, 0]


@pytest.mark.parametrize("bad", [0, -3])
def test_predict_refuses_rows_per_forward_below_one(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match=rf"rows_per_forward must be an integer >= 1 .*got {bad}"):
        predict(save(tmp_path), meta(), np.zeros((2, 4), dtype=np.float32), rows_per_forward=bad)

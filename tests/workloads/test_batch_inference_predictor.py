"""The batch-inference Predictor on both batch layouts Ray Data can hand it (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from workloads.batch_inference.predict import Predictor, predictions_dataset
from workloads.dt_pytorch.data import load_digits
from workloads.dt_pytorch.model import ModelMeta, build_model, load_model, predict, write_model_dir


def _model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(input_dim=64, hidden_dim=16, num_classes=10)
    meta = ModelMeta(
        input_dim=64,
        hidden_dim=16,
        num_classes=10,
        feature_scale=16.0,
        dataset="digits",
        epoch=1,
        held_out_accuracy=0.0,
    )
    write_model_dir(tmp_path / "model", state_dict=model.state_dict(), meta=meta)
    return tmp_path / "model"


def _held_out(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A model directory, 50 held-out rows (features, labels, ids) and the model's own predictions."""
    directory = _model_dir(tmp_path)
    split = load_digits(seed=0)
    features, labels = split.x_test[:50], split.y_test[:50]
    return directory, features, labels, np.arange(50), predict(*load_model(directory), features)


def test_tensor_batches_and_row_object_batches_predict_alike(tmp_path: Path) -> None:
    directory, features, labels, ids, expected = _held_out(tmp_path)
    predictor = Predictor(str(directory))
    # A tensor column arrives as one 2-D array (rows_dataset's layout).
    tensor = predictor({"id": ids, "features": features, "label": labels})
    # A list column arrives as an object array of per-row arrays.
    rows = np.empty(50, dtype=object)
    rows[:] = [row.tolist() for row in features]
    objects = predictor({"id": ids, "features": rows, "label": labels})
    for result in (tensor, objects):
        np.testing.assert_array_equal(result["prediction"], expected)
        np.testing.assert_array_equal(result["id"], ids)
        np.testing.assert_array_equal(result["label"], labels)


def test_a_large_batch_runs_the_model_rows_per_forward_at_a_time(tmp_path: Path) -> None:
    directory, features, labels, ids, expected = _held_out(tmp_path)
    predictor = Predictor(str(directory), rows_per_forward=16)
    forwards: list[int] = []
    predictor._model.register_forward_hook(lambda _module, inputs, _output: forwards.append(len(inputs[0])))
    result = predictor({"id": ids, "features": features, "label": labels})
    assert forwards == [16, 16, 16, 2]
    np.testing.assert_array_equal(result["prediction"], expected)
    np.testing.assert_array_equal(result["id"], ids)
    # An empty batch and a batch smaller than rows_per_forward are one forward each.
    forwards.clear()
    empty = predictor({"id": ids[:0], "features": features[:0], "label": labels[:0]})
    small = predictor({"id": ids[:5], "features": features[:5], "label": labels[:5]})
    assert forwards == [0, 5] and len(empty["prediction"]) == 0
    np.testing.assert_array_equal(small["prediction"], expected[:5])


def test_the_actor_pool_refuses_fewer_than_one_actor() -> None:
    with pytest.raises(ValueError, match=r"actors must be an integer >= 1 .*got 0"):
        predictions_dataset(object(), model_path="unused", batch_size=32, actors=0)

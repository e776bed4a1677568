"""The dt-pytorch model, and its on-disk layout shared by checkpoints and the exported model.

A model directory (a checkpoint ``epoch_NNNN`` or the exported ``MODEL_PATH``) holds
``model.pt`` (the ``state_dict``) and ``model.json`` (:class:`ModelMeta`); checkpoints also hold
``optimizer.pt``. Serve and batch-inference use :func:`load_model` and :func:`predict`.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workloads import model_store, storage
from workloads.storage import Location

MODEL_FILE = model_store.MODEL_FILE
META_FILE = model_store.META_FILE
OPTIMIZER_FILE = model_store.OPTIMIZER_FILE
CHECKPOINT_PREFIX = model_store.CHECKPOINT_PREFIX
checkpoint_dir_name = model_store.checkpoint_dir_name
newest_checkpoint = model_store.newest_checkpoint


class ModelNotFoundError(FileNotFoundError):
    """No usable model directory at the given path."""


@dataclass(frozen=True, kw_only=True)
class ModelMeta:
    """What is needed to rebuild the model and to feed it."""

    input_dim: int
    hidden_dim: int
    num_classes: int
    feature_scale: float
    dataset: str
    epoch: int
    held_out_accuracy: float


def build_model(*, input_dim: int, hidden_dim: int, num_classes: int) -> nn.Module:
    """A two-hidden-layer MLP classifier."""
    return nn.Sequential(
        nn.Linear(input_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, num_classes),
    )


def write_model_dir(
    directory: Path,
    *,
    state_dict: dict[str, torch.Tensor],
    meta: ModelMeta,
    optimizer_state: dict[str, object] | None = None,
) -> None:
    """Write ``model.pt`` / ``model.json`` (and ``optimizer.pt``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, directory / MODEL_FILE)
    if optimizer_state is not None:
        torch.save(optimizer_state, directory / OPTIMIZER_FILE)
    (directory / META_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True))


def read_meta(directory: Location) -> ModelMeta:
    """The :class:`ModelMeta` of a model directory (local path or ``s3://`` URI)."""
    meta_path = storage.join(directory, META_FILE)
    if not storage.is_file(meta_path) or not storage.is_file(storage.join(directory, MODEL_FILE)):
        raise ModelNotFoundError(f"no trained model at {directory} (run the dt-pytorch workload first)")
    return ModelMeta(**json.loads(storage.read_bytes(meta_path)))


def load_model(directory: Location) -> tuple[nn.Module, ModelMeta]:
    """Rebuild the model stored in ``directory`` (eval mode, CPU)."""
    meta = read_meta(directory)
    model = build_model(input_dim=meta.input_dim, hidden_dim=meta.hidden_dim, num_classes=meta.num_classes)
    weights = io.BytesIO(storage.read_bytes(storage.join(directory, MODEL_FILE)))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    return model, meta


def export_model(source: Location, target: Location) -> ModelMeta:
    """Publish the model in ``source`` (e.g. a checkpoint) as ``target``, replacing it atomically.

    On S3 each object is replaced atomically; ``model.json`` is written last, so a reader that
    sees the new metadata finds the new weights (serve reloads when ``model.json`` changes).
    """
    meta = read_meta(source)
    model_store.publish(source, target, (MODEL_FILE, META_FILE))
    return meta


def predict(
    model: nn.Module, meta: ModelMeta, features: np.ndarray, *, rows_per_forward: int | None = None
) -> np.ndarray:
    """Class predictions (int64) for raw ``features`` of shape ``(n, meta.input_dim)``.

    ``rows_per_forward`` bounds one forward (serve's slice of a large batch, batch-inference's
    BATCH_SIZE); ``None`` runs all rows at once.
    """
    if rows_per_forward is not None and rows_per_forward < 1:
        raise ValueError(
            f"rows_per_forward must be an integer >= 1 (e.g. BATCH_SIZE), got {rows_per_forward}"
        )
    inputs = torch.as_tensor(np.asarray(features, dtype=np.float32) / meta.feature_scale)
    step = rows_per_forward or len(inputs)
    with torch.no_grad():
        if len(inputs) <= step:
            return model(inputs).argmax(dim=1).numpy().astype(np.int64)
        parts = [model(inputs[at : at + step]).argmax(dim=1) for at in range(0, len(inputs), step)]
    return torch.cat(parts).numpy().astype(np.int64)

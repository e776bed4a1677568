"""The dt-pytorch model, and its on-disk layout shared by checkpoints and the exported model.

A model directory (a checkpoint ``epoch_NNNN`` or the exported ``MODEL_PATH``) holds
``model.pt`` (the ``state_dict``) and ``model.json`` (:class:`ModelMeta`); checkpoints also hold
``optimizer.pt``. Serve and batch-inference use :func:`load_model` and :func:`predict`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODEL_FILE = "model.pt"
META_FILE = "model.json"
OPTIMIZER_FILE = "optimizer.pt"
CHECKPOINT_PREFIX = "epoch_"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


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


def checkpoint_dir_name(epoch: int) -> str:
    """Name of the checkpoint directory written after ``epoch`` (1-based)."""
    return f"{CHECKPOINT_PREFIX}{epoch:04d}"


def newest_checkpoint(run_dir: Path, *, require: tuple[str, ...] = ()) -> tuple[int, Path] | None:
    """``(epoch, path)`` of the highest-epoch complete checkpoint in ``run_dir``, if any.

    Complete: ``model.json``, ``model.pt`` and every file named in ``require`` are present.
    """
    best: tuple[int, Path] | None = None
    if not run_dir.is_dir():
        return None
    for child in run_dir.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match is None or not all((child / name).is_file() for name in (META_FILE, MODEL_FILE, *require)):
            continue
        epoch = int(match.group(1))
        if best is None or epoch > best[0]:
            best = (epoch, child)
    return best


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


def read_meta(directory: Path) -> ModelMeta:
    """The :class:`ModelMeta` of a model directory."""
    meta_path = directory / META_FILE
    if not meta_path.is_file() or not (directory / MODEL_FILE).is_file():
        raise ModelNotFoundError(f"no trained model at {directory} (run the dt-pytorch workload first)")
    return ModelMeta(**json.loads(meta_path.read_text()))


def load_model(directory: Path) -> tuple[nn.Module, ModelMeta]:
    """Rebuild the model stored in ``directory`` (eval mode, CPU)."""
    meta = read_meta(directory)
    model = build_model(input_dim=meta.input_dim, hidden_dim=meta.hidden_dim, num_classes=meta.num_classes)
    model.load_state_dict(torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True))
    model.eval()
    return model, meta


def export_model(source: Path, target: Path) -> ModelMeta:
    """Publish the model in ``source`` (e.g. a checkpoint) as ``target``, replacing it atomically."""
    meta = read_meta(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    for name in (MODEL_FILE, META_FILE):
        shutil.copy2(source / name, staging / name)
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return meta


def predict(model: nn.Module, meta: ModelMeta, features: np.ndarray) -> np.ndarray:
    """Class predictions (int64) for raw ``features`` of shape ``(n, meta.input_dim)``."""
    inputs = torch.as_tensor(np.asarray(features, dtype=np.float32) / meta.feature_scale)
    with torch.no_grad():
        logits = model(inputs)
    return logits.argmax(dim=1).numpy().astype(np.int64)

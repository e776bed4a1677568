"""Checkpoint and model directories on shared storage, common to every training workload.

A model directory (a checkpoint ``epoch_NNNN`` under a run directory, or an exported model) holds
``model.pt`` and ``model.json``; checkpoints also hold ``optimizer.pt``. ``model.json`` is always
written last, so its presence marks a complete directory, and serve apps reload when it changes.
Standard library plus :mod:`workloads.storage` only: what the files contain is each workload's
business (dt-pytorch's MLP, image-train's ResNet-18).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from workloads import storage
from workloads.storage import Location

MODEL_FILE = "model.pt"
META_FILE = "model.json"
OPTIMIZER_FILE = "optimizer.pt"
CHECKPOINT_PREFIX = "epoch_"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


def checkpoint_dir_name(epoch: int) -> str:
    """Name of the checkpoint directory written after ``epoch`` (1-based)."""
    return f"{CHECKPOINT_PREFIX}{epoch:04d}"


def newest_checkpoint(
    run_dir: Location, *, require: tuple[str, ...] = (), marker: str = META_FILE, weights: str = MODEL_FILE
) -> tuple[int, Location] | None:
    """``(epoch, location)`` of the highest-epoch complete checkpoint in ``run_dir``, if any.

    Complete: ``marker``, ``weights`` and every file named in ``require`` are present.
    ``run_dir`` is a local path or an ``s3://`` URI (see :mod:`workloads.storage`).
    """
    epochs = sorted(
        (
            (int(match.group(1)), child)
            for child in storage.child_dirs(run_dir)
            if (match := _CHECKPOINT_RE.match(child))
        ),
        reverse=True,
    )
    for epoch, child in epochs:
        location = storage.join(run_dir, child)
        if all(storage.is_file(storage.join(location, name)) for name in (marker, weights, *require)):
            return epoch, location
    return None


def publish(source: Location, target: Location, names: tuple[str, ...]) -> None:
    """Copy the files ``names`` of directory ``source`` to ``target``, replacing it as a whole.

    Locally the new directory is staged beside ``target`` and renamed into place. On S3 each object
    is replaced atomically; ``names`` should end with the metadata file, so a reader that sees the
    new metadata finds the new weights.
    """
    if storage.is_uri(target) or storage.is_uri(source):
        storage.copy_files(source, target, names)
        return
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    for file_name in names:
        shutil.copy2(source / file_name, staging / file_name)
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)

"""llm-finetune's model side: which model, which precision, and the on-disk layouts.

* :func:`precision_settings` is the one place that decides device, dtypes and the collective
  backend, as a pure function of USE_GPU, so the GPU choices (bf16 compute, fp32 gradient
  reduction, NCCL) are unit-tested on machines without a GPU.
* A checkpoint ``CHECKPOINT_DIR/RUN_NAME/epoch_NNNN`` is a ``torch.distributed.checkpoint`` (DCP)
  directory: every worker writes its own shard of the model and optimizer state in place
  (``__R_0.distcp``, plus the coordinator's ``.metadata``), so no process ever holds the full
  state. Rank 0 then adds the model's ``config.json``, the tokenizer files and, last,
  ``meta.json``: a checkpoint counts only once ``meta.json`` exists (:func:`newest_checkpoint`).
* The export at ``MODEL_PATH`` is a plain Hugging Face directory (``save_pretrained`` model in
  safetensors + tokenizer) that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load, plus
  ``model.json`` (:class:`ExportMeta`), written last; llm-serve reloads when it changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from workloads import storage
from workloads.storage import Location

TINY_MODEL_NAME = "tiny-random"
"""MODEL_NAME of the built-in, randomly initialised tiny Llama (no download)."""
META_FILE = "meta.json"
"""Completeness marker of a checkpoint (written last by rank 0)."""
DCP_METADATA_FILE = ".metadata"
"""Written by DCP's coordinator once every rank's shard is stored."""
EXPORT_META_FILE = "model.json"
CHECKPOINT_PREFIX = "epoch_"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


class ModelNotFoundError(FileNotFoundError):
    """No usable checkpoint or export at the given path."""


@dataclass(frozen=True, kw_only=True)
class Precision:
    """Where and in which dtypes the FSDP2 workers compute, and how they talk to each other."""

    device_type: str
    """``cuda`` or ``cpu``."""
    param_dtype: torch.dtype
    """Dtype of the unsharded parameters during forward/backward (FSDP2 ``MixedPrecisionPolicy``)."""
    reduce_dtype: torch.dtype
    """Dtype of the gradient reduce-scatter."""
    backend: str
    """``torch.distributed`` backend: ``nccl`` between GPUs, ``gloo`` between CPU processes."""


def precision_settings(use_gpu: bool) -> Precision:
    """The precision plan for USE_GPU.

    GPU: bf16 compute with fp32 gradient reduction (the sharded fp32 master weights and the
    optimizer stay fp32), NCCL. CPU: plain fp32 and gloo; bf16 on CPU is slow and buys nothing
    for a model this size.
    """
    if use_gpu:
        return Precision(
            device_type="cuda", param_dtype=torch.bfloat16, reduce_dtype=torch.float32, backend="nccl"
        )
    return Precision(device_type="cpu", param_dtype=torch.float32, reduce_dtype=torch.float32, backend="gloo")


def tiny_config(*, vocab_size: int, seq_len: int) -> Any:
    """The built-in tiny Llama: hidden 64, 2 layers, 4 heads; untied embeddings.

    Untied, so every parameter has exactly one name in the state dict (DCP and the export see the
    same keys).
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max(256, 2 * seq_len),
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
    )


@dataclass(frozen=True, kw_only=True)
class CheckpointMeta:
    """``meta.json`` of a checkpoint: its epoch and how it was made."""

    epoch: int
    model_name: str
    world_size: int
    loss: float
    held_out_loss: float


@dataclass(frozen=True, kw_only=True)
class ExportMeta:
    """``model.json`` of the export: what llm-serve reports about the model it serves."""

    model_name: str
    """MODEL_NAME the run started from (``tiny-random``, a hub id or a directory)."""
    epoch: int
    loss: float
    held_out_loss: float
    held_out_perplexity: float
    run_name: str


def checkpoint_dir_name(epoch: int) -> str:
    """Name of the checkpoint directory written after ``epoch`` (1-based)."""
    return f"{CHECKPOINT_PREFIX}{epoch:04d}"


def newest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """``(epoch, path)`` of the highest-epoch *complete* checkpoint in ``run_dir``, if any.

    Complete: DCP's ``.metadata`` (all shards stored) and ``meta.json`` (rank 0 finished) exist.
    """
    if not run_dir.is_dir():
        return None
    epochs = sorted(
        (
            (int(match.group(1)), child)
            for child in run_dir.iterdir()
            if child.is_dir() and (match := _CHECKPOINT_RE.match(child.name))
        ),
        reverse=True,
    )
    for epoch, path in epochs:
        if (path / META_FILE).is_file() and (path / DCP_METADATA_FILE).is_file():
            return epoch, path
    return None


def write_checkpoint_meta(directory: Path, meta: CheckpointMeta) -> None:
    """Write ``meta.json`` atomically (a reader never sees half of it)."""
    _write_atomically(directory / META_FILE, json.dumps(asdict(meta), indent=2, sort_keys=True))


def read_checkpoint_meta(directory: Path) -> CheckpointMeta:
    """The :class:`CheckpointMeta` of a complete checkpoint."""
    path = directory / META_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"no complete checkpoint at {directory} ({META_FILE} missing)")
    return CheckpointMeta(**json.loads(path.read_text()))


def write_export_meta(directory: Location, meta: ExportMeta) -> None:
    """Write ``model.json`` into ``directory`` (local path or ``s3://`` URI)."""
    storage.write_bytes(
        storage.join(directory, EXPORT_META_FILE), json.dumps(asdict(meta), indent=2, sort_keys=True).encode()
    )


def read_export_meta(directory: Location) -> ExportMeta:
    """The :class:`ExportMeta` of an export (local path or ``s3://`` URI)."""
    path = storage.join(directory, EXPORT_META_FILE)
    if not storage.is_file(path):
        raise ModelNotFoundError(
            f"no exported language model at {directory} (run the llm-finetune workload first)"
        )
    return ExportMeta(**json.loads(storage.read_bytes(path)))


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text)
    staging.replace(path)


def shard_model(model: Any, precision: Precision) -> Any:
    """Apply FSDP2 ``fully_shard`` to every transformer block, then to the whole model.

    The blocks are the modules Hugging Face lists in ``_no_split_modules`` (``LlamaDecoderLayer``
    and the like): each block's parameters are all-gathered just for its own forward/backward.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=precision.param_dtype, reduce_dtype=precision.reduce_dtype)
    block_names = set(getattr(model, "_no_split_modules", None) or ())
    for module in list(model.modules()):
        if type(module).__name__ in block_names:
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def export_checkpoint(checkpoint: Path, target: Location, *, run_name: str) -> ExportMeta:
    """Turn the sharded checkpoint ``checkpoint`` into a Hugging Face directory at ``target``.

    Runs in one process without a process group: DCP then loads every shard itself and reshards
    them into the full (unsharded) state dict of a freshly built model. The new directory replaces
    ``target`` atomically on local storage; on S3 ``model.json`` is uploaded last.
    """
    import torch.distributed.checkpoint as dcp
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Writing model shards: 100%|███|" in job logs
    meta = read_checkpoint_meta(checkpoint)
    config = AutoConfig.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_config(config)
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():
        # DCP warns about single-process loading even when asked for it with no_dist=True.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.load(state, checkpoint_id=str(checkpoint), no_dist=True)
    model.load_state_dict(state["model"])
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    held_out_loss = meta.held_out_loss
    exported = ExportMeta(
        model_name=meta.model_name,
        epoch=meta.epoch,
        loss=meta.loss,
        held_out_loss=held_out_loss,
        held_out_perplexity=perplexity(held_out_loss),
        run_name=run_name,
    )
    if storage.is_uri(target):
        with tempfile.TemporaryDirectory(prefix="llm-export-") as scratch:
            model.save_pretrained(scratch, safe_serialization=True)
            tokenizer.save_pretrained(scratch)
            names = sorted(path.name for path in Path(scratch).iterdir() if path.is_file())
            storage.copy_files(Path(scratch), target, tuple(names))
        write_export_meta(target, exported)
        return exported
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the export is for every reader
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    write_export_meta(staging, exported)
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return exported


def perplexity(loss: float) -> float:
    """``exp(loss)``, capped so that a diverged run reports a large number rather than ``inf``."""
    import math

    return math.exp(min(loss, 50.0))


def load_export(directory: Location) -> tuple[Any, Any, ExportMeta]:
    """``(model, tokenizer, meta)`` of an export (eval mode, CPU); an ``s3://`` one is downloaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = read_export_meta(directory)
    if storage.is_uri(directory):
        local = Path(tempfile.mkdtemp(prefix="llm-model-"))
        storage.download_dir(directory, local)
    else:
        local = Path(directory)
    model = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(local)
    return model, tokenizer, meta

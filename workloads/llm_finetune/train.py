"""llm-finetune: fine-tune a causal language model with Ray Train's TorchTrainer and PyTorch FSDP2.

Reads only the env contract: MODEL_NAME, HF_TOKEN, SEQ_LEN, MAX_STEPS_PER_EPOCH, NUM_WORKERS,
CPUS_PER_WORKER, USE_GPU, EPOCHS, BATCH_SIZE, LEARNING_RATE, DATA_DIR, SEED, RUN_NAME,
STORAGE_PATH, CHECKPOINT_DIR, MAX_FAILURES, MODEL_PATH, PAUSE_AFTER_EPOCH, PAUSE_SECONDS.

* The driver prepares the data once: the tokenizer (trained for ``tiny-random``, the model's own
  otherwise, or the one stored with the newest checkpoint when resuming) and the token blocks
  (``workloads.llm_finetune.data``), and hands them to the workers with the config.
* Every worker builds the model, shards it with FSDP2 (``fully_shard`` per transformer block, then
  the root; :func:`workloads.llm_finetune.model.precision_settings` picks bf16/NCCL on GPU,
  fp32/gloo on CPU), and trains on its equal share of the blocks (FSDP's collectives need every
  rank to take the same number of steps).
* After every epoch all workers save one *sharded* checkpoint with ``torch.distributed.checkpoint``
  in place under ``CHECKPOINT_DIR/RUN_NAME/epoch_NNNN``; rank 0 adds ``config.json``, the tokenizer
  and finally ``meta.json``, then registers the directory with Ray Train
  (``CheckpointUploadMode.NO_UPLOAD``: it already is in the run directory). The in-place write
  needs a directory every worker mounts (FSx on the cluster), so an ``s3://`` CHECKPOINT_DIR is
  refused with a configuration error.
* A failed worker makes Ray Train restart the group (``FailureConfig(max_failures)``); a fresh
  job with the same RUN_NAME starts a new one. Both start from the later of Ray Train's registered
  checkpoint and the newest complete one in the run directory and print
  ``resumed from checkpoint epoch N``.
* PAUSE_AFTER_EPOCH (fault injection, as dt-pytorch): after that epoch's checkpoint is complete,
  rank 0 prints ``paused after epoch N`` and every worker waits PAUSE_SECONDS.
* Per epoch: training loss, tokens/s and held-out loss/perplexity (log line and
  ``ray.train.report`` metrics). At the end the newest checkpoint is exported to MODEL_PATH as a
  Hugging Face directory (safetensors) + ``model.json`` for llm-serve.

Run: ``python -m workloads.llm_finetune.train`` (inside a Ray job; connects to the running cluster).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.catalog import get_workload
from workloads.settings import EnvReader, SettingsError, exit_on_settings_error
from workloads.storage import Location, is_uri
from workloads.train_common import (
    announce_resume,
    final_checkpoint,
    fit,
    quiet_training_reports,
    run_config,
    say,
)

TINY_VOCAB_SIZE = 2048
"""Vocabulary of the tokenizer trained for the built-in tiny model."""
GRADIENT_CLIP_NORM = 1.0


@dataclass(frozen=True, kw_only=True)
class LlmTrainSettings:
    """llm-finetune parameters, parsed from the env contract."""

    model_name: str
    hf_token: str | None = field(default=None, repr=False)
    """Never printed (``repr=False``): it reaches the workers inside the config, not the logs."""
    seq_len: int
    max_steps_per_epoch: int
    num_workers: int
    cpus_per_worker: float
    use_gpu: bool
    epochs: int
    batch_size: int
    learning_rate: float
    data_dir: Path | None
    """``None``: the standard-library docstrings (DATA_DIR unset)."""
    seed: int
    run_name: str
    checkpoint_dir: Path
    max_failures: int
    model_path: Location
    pause_after_epoch: int = 0
    pause_seconds: int = 0

    @property
    def run_dir(self) -> Path:
        """Directory of this run's sharded checkpoints."""
        return self.checkpoint_dir / self.run_name

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LlmTrainSettings:
        """Parse and validate; raises :class:`SettingsError` naming the bad variable."""
        # The catalog entry's defaults (RUN_NAME=llm-finetune, EPOCHS, BATCH_SIZE) apply however the
        # module is started, so a bare run never shares dt-pytorch's run directory.
        env = EnvReader(environ, defaults=get_workload("llm-finetune").env_defaults)
        checkpoint_dir = env.location("CHECKPOINT_DIR", derived=env.storage_subdir("checkpoints"))
        if is_uri(checkpoint_dir):
            raise SettingsError(
                f"CHECKPOINT_DIR must be a directory every worker mounts for llm-finetune (its workers "
                f"write sharded checkpoints in place), got {str(checkpoint_dir)!r}; set "
                f"CHECKPOINT_DIR=/fsx/checkpoints or another shared path"
            )
        data_dir = env.path("DATA_DIR") if env.raw("DATA_DIR") is not None else None
        return cls(
            model_name=env.model_name("MODEL_NAME"),
            hf_token=env.raw("HF_TOKEN"),
            seq_len=env.integer("SEQ_LEN", minimum=8),
            max_steps_per_epoch=env.integer("MAX_STEPS_PER_EPOCH", minimum=0),
            num_workers=env.integer("NUM_WORKERS", minimum=1),
            cpus_per_worker=env.positive_float("CPUS_PER_WORKER"),
            use_gpu=env.boolean("USE_GPU"),
            epochs=env.integer("EPOCHS", minimum=1),
            batch_size=env.integer("BATCH_SIZE", minimum=1),
            learning_rate=env.positive_float("LEARNING_RATE"),
            data_dir=data_dir,
            seed=env.integer("SEED", minimum=0),
            run_name=env.plain_name("RUN_NAME"),
            checkpoint_dir=Path(checkpoint_dir),
            max_failures=env.integer("MAX_FAILURES", minimum=0),
            model_path=env.location("MODEL_PATH", derived=env.storage_subdir("models", "llm-latest")),
            pause_after_epoch=env.integer("PAUSE_AFTER_EPOCH", minimum=0),
            pause_seconds=env.integer("PAUSE_SECONDS", minimum=0),
        )


@dataclass(frozen=True, kw_only=True)
class PreparedData:
    """What the driver hands every worker: the tokenizer and the token blocks."""

    tokenizer: Any
    train_blocks: Any
    """``(n, SEQ_LEN)`` int64 numpy array."""
    held_out_blocks: Any


def prepare_data(settings: LlmTrainSettings, *, resume_from: Path | None) -> PreparedData:
    """Text -> tokenizer -> blocks -> train/held-out split (deterministic for a given SEED).

    Raises :class:`workloads.llm_finetune.data.DataError` when the text cannot feed every worker.
    """
    from transformers import AutoTokenizer

    from workloads.llm_finetune.data import (
        DataError,
        split_blocks,
        stdlib_docstrings,
        text_files,
        token_blocks,
        train_tokenizer,
    )
    from workloads.llm_finetune.model import TINY_MODEL_NAME

    documents = stdlib_docstrings() if settings.data_dir is None else text_files(settings.data_dir)
    if resume_from is not None:
        tokenizer = AutoTokenizer.from_pretrained(resume_from)
    elif settings.model_name == TINY_MODEL_NAME:
        tokenizer = train_tokenizer(documents, vocab_size=TINY_VOCAB_SIZE)
    else:
        tokenizer = AutoTokenizer.from_pretrained(settings.model_name, token=settings.hf_token)
    blocks = token_blocks(tokenizer, documents, seq_len=settings.seq_len)
    train, held_out = split_blocks(blocks, seed=settings.seed)
    needed = settings.num_workers * settings.batch_size
    if len(train) < needed or len(held_out) < settings.num_workers:
        raise DataError(
            f"the text gives {len(train)} training and {len(held_out)} held-out blocks of SEQ_LEN="
            f"{settings.seq_len} tokens; NUM_WORKERS={settings.num_workers} x BATCH_SIZE="
            f"{settings.batch_size} needs {needed} and {settings.num_workers}: lower SEQ_LEN or "
            f"BATCH_SIZE, or add text"
        )
    return PreparedData(tokenizer=tokenizer, train_blocks=train, held_out_blocks=held_out)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One FSDP2 worker: build + shard the model, resume, train, checkpoint every epoch."""
    import numpy as np
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from ray.train import CheckpointUploadMode
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    from workloads.llm_finetune.model import (
        TINY_MODEL_NAME,
        CheckpointMeta,
        checkpoint_dir_name,
        newest_checkpoint,
        perplexity,
        precision_settings,
        read_checkpoint_meta,
        shard_model,
        tiny_config,
        write_checkpoint_meta,
    )

    settings: LlmTrainSettings = config["settings"]
    data: PreparedData = config["data"]
    quiet_training_reports()
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    precision = precision_settings(settings.use_gpu)
    device = ray.train.torch.get_device()
    _say(f"worker rank {rank}/{world_size} pid {os.getpid()}")

    # Ray Train's registered checkpoint or the newest complete one in the run directory, whichever
    # is later: a checkpoint is complete before the controller registers it (see dt-pytorch).
    resume: tuple[int, Path] | None = newest_checkpoint(settings.run_dir)
    registered = ray.train.get_checkpoint()
    if registered is not None:
        path = Path(registered.path)
        try:
            epoch = read_checkpoint_meta(path).epoch
        except (OSError, ValueError):
            epoch = -1
        if epoch >= 0 and (resume is None or epoch > resume[0]):
            resume = (epoch, path)

    torch.manual_seed(settings.seed)
    if resume is not None:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resume[1]))
    elif settings.model_name == TINY_MODEL_NAME:
        model = AutoModelForCausalLM.from_config(
            tiny_config(vocab_size=len(data.tokenizer), seq_len=settings.seq_len)
        )
    else:
        # fp32 master weights whatever the hub's dtype; FSDP2 casts to bf16 for compute on GPU.
        model = AutoModelForCausalLM.from_pretrained(
            settings.model_name, token=settings.hf_token, dtype=torch.float32
        )
    model.to(device)
    shard_model(model, precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    start_epoch = 0
    if resume is not None:
        start_epoch, path = resume
        model_state, optimizer_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optimizer_state}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        if rank == 0:
            _say(f"resumed from checkpoint epoch {start_epoch}")

    train_blocks = torch.from_numpy(np.array(data.train_blocks, dtype=np.int64))
    held_out = torch.from_numpy(np.array(data.held_out_blocks, dtype=np.int64))
    per_rank = len(train_blocks) // world_size
    steps = per_rank // settings.batch_size
    if settings.max_steps_per_epoch:
        steps = min(steps, settings.max_steps_per_epoch)
    held_per_rank = len(held_out) // world_size
    my_held_out = held_out[rank * held_per_rank : (rank + 1) * held_per_rank]

    def mean_over_ranks(total: float, count: int) -> float:
        values = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(values)
        return float(values[0] / values[1])

    def held_out_loss() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, held_per_rank, settings.batch_size):
                batch = my_held_out[start : start + settings.batch_size].to(device)
                total += float(model(input_ids=batch, labels=batch).loss) * len(batch)
        model.train()
        return mean_over_ranks(total, held_per_rank)

    if start_epoch >= settings.epochs:
        loss = held_out_loss()
        if rank == 0:
            _say(f"already trained to epoch {start_epoch}; held-out loss {loss:.4f}")
        ray.train.report({"epoch": start_epoch, "held_out_loss": loss})
        return

    model.train()
    for epoch in range(start_epoch + 1, settings.epochs + 1):
        # The same permutation on every rank; each takes its own contiguous share of it.
        order = torch.randperm(
            len(train_blocks), generator=torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
        )
        mine = order[rank * per_rank : (rank + 1) * per_rank]
        started = time.perf_counter()
        total = 0.0
        for step in range(steps):
            batch = train_blocks[mine[step * settings.batch_size : (step + 1) * settings.batch_size]].to(
                device
            )
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP_NORM)
            optimizer.step()
            optimizer.zero_grad()
            total += float(loss.detach())
        train_seconds = time.perf_counter() - started
        train_loss = mean_over_ranks(total, steps)
        evaluated = held_out_loss()
        metrics = {
            "epoch": epoch,
            "loss": train_loss,
            "held_out_loss": evaluated,
            "held_out_perplexity": perplexity(evaluated),
            "train_seconds": train_seconds,
            "tokens_per_second": world_size
            * steps
            * settings.batch_size
            * settings.seq_len
            / max(train_seconds, 1e-9),
        }

        directory = settings.run_dir / checkpoint_dir_name(epoch)
        model_state, optimizer_state = get_state_dict(model, optimizer)
        # Collective: returns on every rank once all shards and the coordinator's .metadata exist.
        dcp.save({"model": model_state, "optim": optimizer_state}, checkpoint_id=str(directory))
        if rank == 0:
            model.config.save_pretrained(directory)
            data.tokenizer.save_pretrained(directory)
            write_checkpoint_meta(
                directory,
                CheckpointMeta(
                    epoch=epoch,
                    model_name=settings.model_name,
                    world_size=world_size,
                    loss=train_loss,
                    held_out_loss=evaluated,
                ),
            )
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint(str(directory)),
                checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD,
            )
            _say(
                f"epoch {epoch}/{settings.epochs} loss={train_loss:.4f} held_out_loss={evaluated:.4f} "
                f"held_out_perplexity={metrics['held_out_perplexity']:.2f} "
                f"tokens_per_second={metrics['tokens_per_second']:.0f} train_seconds={train_seconds:.3f}"
            )
        else:
            ray.train.report(metrics)
        if epoch == settings.pause_after_epoch:
            # Only a group that trained this epoch gets here; a resumed one starts after it.
            if rank == 0:
                _say(f"paused after epoch {epoch} for {settings.pause_seconds}s (PAUSE_AFTER_EPOCH)")
            time.sleep(settings.pause_seconds)


def _say(message: str) -> None:
    """One line in the job logs from a Ray Train worker (see :func:`workloads.train_common.say`)."""
    say("workloads.llm_finetune", message)


def run(settings: LlmTrainSettings) -> int:
    """Prepare the data, drive the TorchTrainer, export; returns the process exit status."""
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from workloads.llm_finetune.data import DataError
    from workloads.llm_finetune.model import export_checkpoint, newest_checkpoint, precision_settings

    ray.init()
    print(f"cluster resources: {ray.cluster_resources()}", flush=True)
    found = newest_checkpoint(settings.run_dir)
    announce_resume(found)
    try:
        data = prepare_data(settings, resume_from=None if found is None else found[1])
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    print(
        f"fine-tuning {settings.model_name} for {settings.epochs} epochs on {settings.num_workers} workers "
        f"(FSDP2): {len(data.train_blocks)} training and {len(data.held_out_blocks)} held-out blocks of "
        f"{settings.seq_len} tokens, vocabulary {len(data.tokenizer)}; checkpoints in {settings.run_dir}",
        flush=True,
    )
    precision = precision_settings(settings.use_gpu)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"settings": settings, "data": data},
        torch_config=TorchConfig(backend=precision.backend),
        scaling_config=ScalingConfig(
            num_workers=settings.num_workers,
            use_gpu=settings.use_gpu,
            resources_per_worker={"CPU": settings.cpus_per_worker},
        ),
        run_config=run_config(
            run_name=settings.run_name,
            checkpoint_dir=settings.checkpoint_dir,
            max_failures=settings.max_failures,
        ),
    )
    if not fit(trainer):
        return 1
    newest = final_checkpoint(newest_checkpoint(settings.run_dir), settings.run_dir)
    if newest is None:
        return 1
    meta = export_checkpoint(Path(newest), settings.model_path, run_name=settings.run_name)
    print(
        f"final held-out loss {meta.held_out_loss:.4f} perplexity {meta.held_out_perplexity:.2f} "
        f"at epoch {meta.epoch}",
        flush=True,
    )
    print(f"model exported to {settings.model_path}", flush=True)
    return 0


def main() -> int:
    """Entry point of ``python -m workloads.llm_finetune.train``."""
    try:
        settings = LlmTrainSettings.from_env()
    except SettingsError as error:
        exit_on_settings_error(error)
    return run(settings)


if __name__ == "__main__":
    raise SystemExit(main())

"""image-train: ResNet-18 (torchvision, random init) trained with Ray Train on images read by Ray Data.

Reads only the env contract: NUM_WORKERS, CPUS_PER_WORKER, USE_GPU, EPOCHS, BATCH_SIZE,
LEARNING_RATE, SEED, RUN_NAME, STORAGE_PATH, IMAGE_DATA, IMAGE_SIZE, CHECKPOINT_DIR, MAX_FAILURES,
MODEL_PATH, PAUSE_AFTER_EPOCH, PAUSE_SECONDS.

* Data: ``IMAGE_DATA/train`` and ``IMAGE_DATA/test`` (class folders, see :mod:`.data`) go through
  Ray Data: read tasks decode and resize the images, ``map_batches`` normalises them, and the
  training split streams to the workers (``streaming_split(equal=True)``, so every DDP rank runs
  the same number of steps). The held-out split is not split: every worker scores all of it, so
  the ranks agree on the accuracy without a collective. Locally the default IMAGE_DATA is generated
  from scikit-learn's digits on first use (no download).
* Checkpoints and resume work as in dt-pytorch: after every epoch rank 0 reports a checkpoint
  ``CHECKPOINT_DIR/RUN_NAME/epoch_NNNN`` (model, optimizer, held-out accuracy); a restarted worker
  group or a fresh job with the same RUN_NAME starts from the newest complete one (Ray Train's own
  or the newest in the run directory, whichever is later); PAUSE_AFTER_EPOCH pauses the workers
  after that epoch's checkpoint so a test can kill one.
* At the end the newest checkpoint is exported to MODEL_PATH (default
  ``STORAGE_PATH/models/image-latest``) for the ``image-serve`` app.

On a GPU group (``USE_GPU=true``) each worker gets one GPU, DDP runs over NCCL (Ray Train's
default backend for GPU workers) and the forward/backward runs under bf16 autocast
(:func:`device_settings`); IMAGE_SIZE 224 suits real photographs.

Run: ``python -m workloads.image_train.train`` (inside a Ray job; connects to the running cluster).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.settings import EnvReader, SettingsError, exit_on_settings_error
from workloads.storage import Location, join
from workloads.train_common import (
    announce_resume,
    final_checkpoint,
    fit,
    quiet_training_reports,
    run_config,
    say,
)


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """image-train parameters, parsed from the env contract."""

    num_workers: int
    cpus_per_worker: float
    use_gpu: bool
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    run_name: str
    image_data: Location
    generate_digits: bool
    """IMAGE_DATA is the default location: generate the digits there when it is empty."""
    image_size: int
    checkpoint_dir: Location
    max_failures: int
    model_path: Location
    pause_after_epoch: int = 0
    pause_seconds: int = 0

    @property
    def run_dir(self) -> Location:
        """Directory of this run's checkpoints (local path or s3:// URI)."""
        return join(self.checkpoint_dir, self.run_name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainSettings:
        """Parse and validate; raises :class:`SettingsError` naming the bad variable."""
        from workloads.image_train.data import DIGITS_PNG_PARTS

        env = EnvReader(environ)
        explicit_data = env.raw("IMAGE_DATA") is not None
        return cls(
            num_workers=env.integer("NUM_WORKERS", minimum=1),
            cpus_per_worker=env.positive_float("CPUS_PER_WORKER"),
            use_gpu=env.boolean("USE_GPU"),
            epochs=env.integer("EPOCHS", minimum=1),
            batch_size=env.integer("BATCH_SIZE", minimum=1),
            learning_rate=env.positive_float("LEARNING_RATE"),
            seed=env.integer("SEED", minimum=0),
            run_name=env.plain_name("RUN_NAME"),
            image_data=env.location("IMAGE_DATA", derived=env.storage_subdir(*DIGITS_PNG_PARTS)),
            generate_digits=not explicit_data,
            image_size=env.integer("IMAGE_SIZE", minimum=16),
            checkpoint_dir=env.location("CHECKPOINT_DIR", derived=env.storage_subdir("checkpoints")),
            max_failures=env.integer("MAX_FAILURES", minimum=0),
            model_path=env.location("MODEL_PATH", derived=env.storage_subdir("models", "image-latest")),
            pause_after_epoch=env.integer("PAUSE_AFTER_EPOCH", minimum=0),
            pause_seconds=env.integer("PAUSE_SECONDS", minimum=0),
        )


@dataclass(frozen=True, kw_only=True)
class DeviceSettings:
    """Where and in which precision the workers compute (pure: unit-tested for GPU here)."""

    device_type: str
    """``cuda`` or ``cpu`` (Ray Train picks the GPU index of each worker)."""
    autocast_dtype: str | None
    """``bfloat16`` on GPU (A10G/A100/H100 support it; no loss scaling needed), ``None`` = float32."""
    backend: str
    """torch.distributed backend of the DDP group: ``nccl`` on GPU, ``gloo`` on CPU."""


def device_settings(*, use_gpu: bool) -> DeviceSettings:
    """The device, autocast dtype and collective backend for ``USE_GPU``."""
    if use_gpu:
        return DeviceSettings(device_type="cuda", autocast_dtype="bfloat16", backend="nccl")
    return DeviceSettings(device_type="cpu", autocast_dtype=None, backend="gloo")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One DDP worker: stream its shard of the training images, score the held-out set, checkpoint."""
    import contextlib

    import ray.train
    import ray.train.torch
    import torch
    from torch import nn

    from workloads.image_train.model import (
        MODEL_FILE,
        OPTIMIZER_FILE,
        ImageModelMeta,
        build_model,
        read_meta,
        write_model_dir,
    )
    from workloads.model_store import checkpoint_dir_name, newest_checkpoint

    settings: TrainSettings = config["settings"]
    labels: list[str] = config["labels"]
    channels: int = config["channels"]
    devices = device_settings(use_gpu=settings.use_gpu)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    quiet_training_reports()
    _say(f"worker rank {rank}/{world_size} pid {os.getpid()} device {device}")

    torch.manual_seed(settings.seed)
    model = build_model(num_classes=len(labels), channels=channels)
    optimizer_state: dict[str, Any] | None = None
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    found = newest_checkpoint(settings.run_dir, require=(OPTIMIZER_FILE,))
    if found is not None and (checkpoint is None or _checkpoint_epoch(checkpoint) < found[0]):
        checkpoint = ray.train.Checkpoint(str(found[1]))
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start_epoch = read_meta(Path(directory)).epoch
            model.load_state_dict(torch.load(Path(directory) / MODEL_FILE, weights_only=True))
            optimizer_state = torch.load(Path(directory) / OPTIMIZER_FILE, weights_only=True)
        if rank == 0:
            _say(f"resumed from checkpoint epoch {start_epoch}")
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    loss_fn = nn.CrossEntropyLoss()
    unwrapped: nn.Module = getattr(model, "module", model)
    autocast_dtype = getattr(torch, devices.autocast_dtype) if devices.autocast_dtype else None

    def autocast() -> Any:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=devices.device_type, dtype=autocast_dtype)

    train_shard = ray.train.get_dataset_shard("train")
    test_shard = ray.train.get_dataset_shard("test")

    def held_out_accuracy() -> float:
        unwrapped.eval()
        correct = total = 0
        with torch.no_grad(), autocast():
            for batch in test_shard.iter_torch_batches(batch_size=256, device=device):
                predictions = unwrapped(batch["image"]).argmax(dim=1)
                correct += int((predictions == batch["label"]).sum().item())
                total += len(batch["label"])
        unwrapped.train()
        return correct / max(total, 1)

    if start_epoch >= settings.epochs:
        accuracy = held_out_accuracy()
        if rank == 0:
            _say(f"already trained to epoch {start_epoch}; held-out accuracy {accuracy:.4f}")
        ray.train.report({"epoch": start_epoch, "held_out_accuracy": accuracy})
        return

    for epoch in range(start_epoch + 1, settings.epochs + 1):
        started = time.perf_counter()
        model.train()
        total_loss, batches, images = 0.0, 0, 0
        for batch in train_shard.iter_torch_batches(
            batch_size=settings.batch_size,
            device=device,
            local_shuffle_buffer_size=4 * settings.batch_size,
            local_shuffle_seed=settings.seed * 100_003 + epoch * 31 + rank,
        ):
            optimizer.zero_grad()
            with autocast():
                loss = loss_fn(model(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            total_loss += float(loss.item())
            batches += 1
            images += len(batch["label"])
        train_seconds = time.perf_counter() - started
        accuracy = held_out_accuracy()
        metrics = {
            "epoch": epoch,
            "loss": total_loss / max(batches, 1),
            "held_out_accuracy": accuracy,
            "train_seconds": train_seconds,
            "images_per_second": world_size * images / max(train_seconds, 1e-9),
        }
        if rank == 0:
            with tempfile.TemporaryDirectory() as directory:
                write_model_dir(
                    Path(directory),
                    state_dict={k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
                    optimizer_state=optimizer.state_dict(),
                    meta=ImageModelMeta(
                        image_size=settings.image_size,
                        channels=channels,
                        labels=labels,
                        dataset=str(settings.image_data),
                        epoch=epoch,
                        held_out_accuracy=accuracy,
                    ),
                )
                ray.train.report(
                    metrics,
                    checkpoint=ray.train.Checkpoint.from_directory(directory),
                    checkpoint_dir_name=checkpoint_dir_name(epoch),
                )
            _say(
                f"epoch {epoch}/{settings.epochs} loss={metrics['loss']:.4f} "
                f"held_out_accuracy={accuracy:.4f} train_seconds={train_seconds:.1f} "
                f"images_per_second={metrics['images_per_second']:.0f}"
            )
        else:
            ray.train.report(metrics)
        if epoch == settings.pause_after_epoch:
            if rank == 0:
                _say(f"paused after epoch {epoch} for {settings.pause_seconds}s (PAUSE_AFTER_EPOCH)")
            time.sleep(settings.pause_seconds)


def _say(message: str) -> None:
    """One line in the job logs from a Ray Train worker (see :func:`workloads.train_common.say`)."""
    say("workloads.image_train", message)


def _checkpoint_epoch(checkpoint: Any) -> int:
    """The epoch of a Ray Train checkpoint written by this workload (-1 when unreadable)."""
    from workloads.image_train.model import ModelNotFoundError, read_meta

    try:
        with checkpoint.as_directory() as directory:
            return read_meta(Path(directory)).epoch
    except (ModelNotFoundError, OSError, ValueError, TypeError):
        return -1


def run(settings: TrainSettings) -> int:
    """Prepare the data, drive the TorchTrainer, export the model; returns the exit status."""
    import ray
    from ray.train import DataConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from workloads import storage
    from workloads.image_train.data import (
        MARKER_FILE,
        ImageDataError,
        class_labels,
        ensure_digits_png,
        read_split,
    )
    from workloads.image_train.model import MEAN, STD, export_model
    from workloads.model_store import newest_checkpoint

    ray.init()
    print(f"cluster resources: {ray.cluster_resources()}", flush=True)
    try:
        if settings.generate_digits:
            written = ensure_digits_png(
                settings.image_data, seed=settings.seed, image_size=settings.image_size
            )
            if written:
                print(f"wrote {written} digit images to {settings.image_data}", flush=True)
        labels = class_labels(settings.image_data)
    except (ImageDataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    digits = storage.is_file(join(settings.image_data, MARKER_FILE))
    mode = "L" if digits else "RGB"
    datasets = {
        split: read_split(
            settings.image_data,
            split,
            image_size=settings.image_size,
            mode=mode,
            labels=labels,
            mean=MEAN,
            std=STD,
        )
        for split in ("train", "test")
    }
    print(
        f"training resnet18 on {settings.image_data} ({len(labels)} classes, {mode} "
        f"{settings.image_size}px) for {settings.epochs} epochs on {settings.num_workers} workers; "
        f"checkpoints in {settings.run_dir}",
        flush=True,
    )
    announce_resume(newest_checkpoint(settings.run_dir))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"settings": settings, "labels": labels, "channels": 1 if mode == "L" else 3},
        scaling_config=ScalingConfig(
            num_workers=settings.num_workers,
            use_gpu=settings.use_gpu,
            resources_per_worker={"CPU": settings.cpus_per_worker},
        ),
        torch_config=TorchConfig(backend=device_settings(use_gpu=settings.use_gpu).backend),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
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
    meta = export_model(newest, settings.model_path)
    print(f"final held-out accuracy {meta.held_out_accuracy:.4f} at epoch {meta.epoch}", flush=True)
    print(f"model exported to {settings.model_path}", flush=True)
    return 0


def main() -> int:
    """Entry point of ``python -m workloads.image_train.train``."""
    try:
        settings = TrainSettings.from_env()
    except SettingsError as error:
        exit_on_settings_error(error)
    return run(settings)


if __name__ == "__main__":
    raise SystemExit(main())

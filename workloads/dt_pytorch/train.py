"""dt-pytorch: train an MLP classifier with Ray Train's TorchTrainer (DDP across NUM_WORKERS).

Reads only the env contract: NUM_WORKERS, CPUS_PER_WORKER, USE_GPU, EPOCHS, BATCH_SIZE,
LEARNING_RATE, DATASET, DATA_DIR, DATA_REPEATS, SEED, RUN_NAME, STORAGE_PATH, CHECKPOINT_DIR,
MAX_FAILURES, MODEL_PATH, PAUSE_AFTER_EPOCH, PAUSE_SECONDS, CHECKPOINT_EVERY.

* Every CHECKPOINT_EVERY epochs (and after the last one), rank 0 writes a checkpoint
  ``CHECKPOINT_DIR/RUN_NAME/epoch_NNNN`` (model, optimizer, held-out accuracy) through
  ``ray.train.report``; the epochs in between report nothing to Ray Train. Why: a report is put on
  a one-slot queue per worker that Ray Train's controller empties only when it polls the worker
  group, so once one report is unread the next one waits for the poll. Ray's default poll interval
  (2 s) stretched every epoch of the default run to ~2 s; the job polls every 0.25 s
  (:data:`workloads.train_common.HEALTH_CHECK_INTERVAL_S`, unless ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``
  is set), and fewer reports also mean fewer checkpoint writes. The
  epoch line logs ``report_seconds`` (checkpoint write + report) and ``epoch_seconds``.
* A failed worker makes Ray Train restart the worker group (``FailureConfig(max_failures)``); a
  fresh job with the same RUN_NAME starts a new one. Either way every worker starts from the newest
  *complete* checkpoint: Ray Train's own (``ray.train.get_checkpoint()``) or the newest one in the
  run directory, whichever is later. The run directory matters after a kill: ``report`` returns once
  the checkpoint is stored, but the controller registers it only when it next polls the worker, so
  a worker killed in between would otherwise be restarted from the previous epoch. Rank 0 logs
  ``resumed from checkpoint epoch N``.
* PAUSE_AFTER_EPOCH (fault injection): after that epoch's checkpoint is stored, the workers print
  ``paused after epoch N`` and wait PAUSE_SECONDS. A test waits for that line and kills a worker:
  a checkpoint provably exists and epochs provably remain, however loaded the machine is. A
  resumed group starts after that epoch, so it never pauses again.
* At the end the newest checkpoint's model is exported to MODEL_PATH for serve / batch-inference.

Run: ``python -m workloads.dt_pytorch.train`` (inside a Ray job; connects to the running cluster).
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

HIDDEN_DIM = 128


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """dt-pytorch parameters, parsed from the env contract."""

    num_workers: int
    cpus_per_worker: float
    use_gpu: bool
    epochs: int
    batch_size: int
    learning_rate: float
    dataset: str
    data_dir: Path
    data_repeats: int = 1
    seed: int
    run_name: str
    checkpoint_dir: Location
    max_failures: int
    model_path: Location
    pause_after_epoch: int = 0
    pause_seconds: int = 0
    checkpoint_every: int = 1

    def checkpoints_after(self, epoch: int) -> bool:
        """Whether ``epoch`` ends with a checkpoint (and a ``ray.train.report``) on every rank.

        Every ``checkpoint_every``-th epoch, the last one, and PAUSE_AFTER_EPOCH (the pause
        promises a stored checkpoint).
        """
        return epoch % self.checkpoint_every == 0 or epoch in (self.epochs, self.pause_after_epoch)

    @property
    def run_dir(self) -> Location:
        """Directory of this run's checkpoints (local path or s3:// URI)."""
        return join(self.checkpoint_dir, self.run_name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainSettings:
        """Parse and validate; raises :class:`SettingsError` naming the bad variable."""
        from workloads.dt_pytorch.data import DATASETS

        env = EnvReader(environ)
        run_name = env.plain_name("RUN_NAME")
        dataset = env.choice("DATASET", DATASETS)
        return cls(
            num_workers=env.integer("NUM_WORKERS", minimum=1),
            cpus_per_worker=env.positive_float("CPUS_PER_WORKER"),
            use_gpu=env.boolean("USE_GPU"),
            epochs=env.integer("EPOCHS", minimum=1),
            batch_size=env.integer("BATCH_SIZE", minimum=1),
            learning_rate=env.positive_float("LEARNING_RATE"),
            dataset=dataset,
            data_dir=env.path("DATA_DIR", derived=env.data_subdir("datasets", dataset)),
            data_repeats=env.integer("DATA_REPEATS", minimum=1),
            seed=env.integer("SEED", minimum=0),
            run_name=run_name,
            checkpoint_dir=env.location("CHECKPOINT_DIR", derived=env.storage_subdir("checkpoints")),
            max_failures=env.integer("MAX_FAILURES", minimum=0),
            model_path=env.location("MODEL_PATH", derived=env.storage_subdir("models", "latest")),
            pause_after_epoch=env.integer("PAUSE_AFTER_EPOCH", minimum=0),
            pause_seconds=env.integer("PAUSE_SECONDS", minimum=0),
            checkpoint_every=env.integer("CHECKPOINT_EVERY", minimum=1),
        )


def train_one_epoch(
    model: Any,
    optimizer: Any,
    loss_fn: Any,
    x_train: Any,
    y_train: Any,
    *,
    batch_size: int,
    generator: Any,
    device: Any,
) -> tuple[float, int]:
    """One pass over ``x_train`` in a seeded random order; returns (summed loss, batches).

    Module-level so that the training-overhead benchmark's plain PyTorch loop runs the very same
    steps as the Ray Train workers.
    """
    import torch

    permutation = torch.randperm(len(x_train), generator=generator)
    model.train()
    total_loss, batches = 0.0, 0
    for start in range(0, len(permutation), batch_size):
        index = permutation[start : start + batch_size]
        inputs, labels = x_train[index].to(device), y_train[index].to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.item())
        batches += 1
    return total_loss, batches


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One DDP worker: train on its shard, evaluate on the held-out set, checkpoint each epoch."""
    import numpy as np
    import ray.train
    import ray.train.torch
    import torch
    from torch import nn

    from workloads.dt_pytorch.data import load_dataset
    from workloads.dt_pytorch.model import (
        MODEL_FILE,
        OPTIMIZER_FILE,
        ModelMeta,
        build_model,
        checkpoint_dir_name,
        newest_checkpoint,
        read_meta,
        write_model_dir,
    )

    settings: TrainSettings = config["settings"]
    quiet_training_reports()
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    # Visible to the fault-injection test and to operators: which process is which rank.
    _say(f"worker rank {rank}/{world_size} pid {os.getpid()}")

    split = load_dataset(
        settings.dataset, seed=settings.seed, data_dir=settings.data_dir, repeats=settings.data_repeats
    )
    scale = split.feature_scale
    # Equal-sized shards: DDP needs every rank to run the same number of steps.
    per_rank = len(split.x_train) // world_size
    order = np.random.default_rng(settings.seed).permutation(len(split.x_train))
    shard = order[rank * per_rank : (rank + 1) * per_rank]
    x_train = torch.as_tensor(split.x_train[shard] / scale, dtype=torch.float32)
    y_train = torch.as_tensor(split.y_train[shard])
    x_test = torch.as_tensor(split.x_test / scale, dtype=torch.float32).to(device)
    y_test = torch.as_tensor(split.y_test).to(device)

    torch.manual_seed(settings.seed)
    model = build_model(input_dim=split.num_features, hidden_dim=HIDDEN_DIM, num_classes=split.num_classes)
    optimizer_state: dict[str, Any] | None = None
    start_epoch = 0
    # Ray Train's own checkpoint or the newest complete one in the run directory, whichever is
    # later (see the module docstring: a stored checkpoint may not be registered yet).
    checkpoint = ray.train.get_checkpoint()
    found = newest_checkpoint(settings.run_dir, require=(OPTIMIZER_FILE,))
    if found is not None and (checkpoint is None or _checkpoint_epoch(checkpoint) < found[0]):
        checkpoint = ray.train.Checkpoint(str(found[1]))  # a local path or an s3:// URI
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

    def held_out_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            predictions = model(x_test).argmax(dim=1)
        model.train()
        return float((predictions == y_test).float().mean().item())

    if start_epoch >= settings.epochs:
        accuracy = held_out_accuracy()
        if rank == 0:
            _say(f"already trained to epoch {start_epoch}; held-out accuracy {accuracy:.4f}")
        ray.train.report({"epoch": start_epoch, "held_out_accuracy": accuracy})
        return

    for epoch in range(start_epoch + 1, settings.epochs + 1):
        generator = torch.Generator().manual_seed(settings.seed * 100_003 + epoch * 31 + rank)
        started = time.perf_counter()
        total_loss, batches = train_one_epoch(
            model,
            optimizer,
            loss_fn,
            x_train,
            y_train,
            batch_size=settings.batch_size,
            generator=generator,
            device=device,
        )
        train_seconds = time.perf_counter() - started
        accuracy = held_out_accuracy()
        metrics = {
            "epoch": epoch,
            "loss": total_loss / max(batches, 1),
            "held_out_accuracy": accuracy,
            "train_seconds": train_seconds,
            # Every worker trains an equal shard, so the whole group processes world_size shards.
            "samples_per_second": world_size * len(x_train) / max(train_seconds, 1e-9),
        }
        reported = time.perf_counter()
        if not settings.checkpoints_after(epoch):
            pass  # no report: it would wait for the controller's next poll (module docstring)
        elif rank == 0:
            with tempfile.TemporaryDirectory() as directory:
                write_model_dir(
                    Path(directory),
                    state_dict={k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
                    optimizer_state=optimizer.state_dict(),
                    meta=ModelMeta(
                        input_dim=split.num_features,
                        hidden_dim=HIDDEN_DIM,
                        num_classes=split.num_classes,
                        feature_scale=scale,
                        dataset=settings.dataset,
                        epoch=epoch,
                        held_out_accuracy=accuracy,
                    ),
                )
                ray.train.report(
                    metrics,
                    checkpoint=ray.train.Checkpoint.from_directory(directory),
                    checkpoint_dir_name=checkpoint_dir_name(epoch),
                )
        else:
            ray.train.report(metrics)
        if rank == 0:
            finished = time.perf_counter()
            _say(
                f"epoch {epoch}/{settings.epochs} loss={metrics['loss']:.4f} "
                f"held_out_accuracy={accuracy:.4f} train_seconds={train_seconds:.3f} "
                f"samples_per_second={metrics['samples_per_second']:.0f} "
                f"report_seconds={finished - reported:.3f} epoch_seconds={finished - started:.3f}"
            )
        if epoch == settings.pause_after_epoch:
            # Only a group that trained this epoch gets here; a resumed one starts after it.
            if rank == 0:
                _say(f"paused after epoch {epoch} for {settings.pause_seconds}s (PAUSE_AFTER_EPOCH)")
            time.sleep(settings.pause_seconds)


def _say(message: str) -> None:
    """One line in the job logs from a Ray Train worker (see :func:`workloads.train_common.say`)."""
    say("workloads.dt_pytorch", message)


def _checkpoint_epoch(checkpoint: Any) -> int:
    """The epoch of a Ray Train checkpoint written by this workload (-1 when unreadable)."""
    from workloads.dt_pytorch.model import ModelNotFoundError, read_meta

    try:
        with checkpoint.as_directory() as directory:
            return read_meta(Path(directory)).epoch
    except (ModelNotFoundError, OSError, ValueError):
        return -1


def run(settings: TrainSettings) -> int:
    """Drive the TorchTrainer; returns the process exit status."""
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from workloads.dt_pytorch.data import DatasetError, ensure_fashion_mnist
    from workloads.dt_pytorch.model import export_model, newest_checkpoint

    ray.init()
    print(f"cluster resources: {ray.cluster_resources()}", flush=True)
    print(
        f"training {settings.dataset} for {settings.epochs} epochs on {settings.num_workers} workers; "
        f"checkpoints in {settings.run_dir}",
        flush=True,
    )
    if settings.dataset == "fashion-mnist":
        try:
            ensure_fashion_mnist(settings.data_dir)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return 1

    announce_resume(newest_checkpoint(settings.run_dir))

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"settings": settings},
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
    meta = export_model(newest, settings.model_path)
    print(f"final held-out accuracy {meta.held_out_accuracy:.4f} at epoch {meta.epoch}", flush=True)
    print(f"model exported to {settings.model_path}", flush=True)
    return 0


def main() -> int:
    """Entry point of ``python -m workloads.dt_pytorch.train``."""
    try:
        settings = TrainSettings.from_env()
    except SettingsError as error:
        exit_on_settings_error(error)
    return run(settings)


if __name__ == "__main__":
    raise SystemExit(main())

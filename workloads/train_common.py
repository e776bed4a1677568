"""What the Ray Train jobs of the catalog (dt-pytorch, image-train, llm-finetune) share.

The driver side of each job is the same story: say whether a run directory already holds a
checkpoint (the job resumes from it), run a ``TorchTrainer`` with the same run, failure and
logging settings, turn a failed ``fit`` into one error line, and export the newest checkpoint.
The worker side shares how it logs (once, through the root logger) and how Ray Train's per-report
log line is kept quiet. Ray is imported inside the functions: the catalog lists this file for jobs
whose module-level imports must stay light.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from workloads.settings import default_ray_env, positive_number
from workloads.storage import Location

CHECKPOINTS_KEPT = 3
"""Checkpoints Ray Train keeps per run (``CheckpointConfig.num_to_keep``)."""


def announce_resume(found: tuple[int, Location] | None) -> None:
    """Print (driver) that the run directory holds a checkpoint the job resumes from, and the way out."""
    if found is not None:
        print(
            f"found checkpoint epoch {found[0]} at {found[1]}; training resumes from it "
            f"(pass --env RUN_NAME=<new name> to start afresh)",
            flush=True,
        )


def run_config(*, run_name: str, checkpoint_dir: Location, max_failures: int) -> Any:
    """The ``RunConfig`` of every catalog training job.

    Ray Train's own INFO lines ("Reporting training result N", "Checkpoint successfully created")
    drown the per-epoch lines, so only its warnings are logged.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig

    return RunConfig(
        name=run_name,
        storage_path=str(checkpoint_dir),
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        logging_config=LoggingConfig(log_level="WARNING"),
    )


HEALTH_CHECK_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_INTERVAL_S = 0.25
"""How often Ray Train's controller polls the worker group (Ray 2.60's default: 2 s).

The poll is also what takes a worker's ``ray.train.report`` off its one-slot queue, so with the
default every report after an unread one waited up to 2 s: an epoch of the default dt-pytorch run
(tens of milliseconds of compute) took ~1.6-1.95 s (bench/RESULTS.md, training). A poll is one small
actor task per worker; a worker that misses polls is declared dead only after
``RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S`` (10 min), whatever the interval
(``ray/train/v2/_internal/execution/controller/controller.py``, ``worker_group.poll_status``)."""


def fit(trainer: Any) -> bool:
    """``trainer.fit()``; a failure (Ray Train wraps worker errors) becomes one error line and False.

    Unless the job's environment sets it, the controller polls every :data:`HEALTH_CHECK_INTERVAL_S`:
    Ray Train hands ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` from the driver's environment to the
    controller it starts in ``fit`` (``ENV_VARS_TO_PROPAGATE``).
    """
    interval = default_ray_env(HEALTH_CHECK_INTERVAL_ENV, str(HEALTH_CHECK_INTERVAL_S))
    if positive_number(interval) is None:
        # Ray's controller would fail on it inside its actor, after the job had started.
        print(
            f"error: {HEALTH_CHECK_INTERVAL_ENV}={interval!r} in the job's environment is not a number of "
            f"seconds > 0; unset it (the job uses {HEALTH_CHECK_INTERVAL_S}) or set e.g. 0.5",
            file=sys.stderr,
            flush=True,
        )
        return False
    try:
        trainer.fit()
    except Exception as error:
        print(f"error: training failed: {error}", file=sys.stderr, flush=True)
        return False
    return True


def final_checkpoint(found: tuple[int, Location] | None, run_dir: Location) -> Location | None:
    """The newest checkpoint after training, or ``None`` with an error line when there is none."""
    if found is None:
        print(f"error: training finished without a checkpoint in {run_dir}", file=sys.stderr, flush=True)
        return None
    return found[1]


def quiet_training_reports() -> None:
    """Drop Ray Train's per-report INFO line ("Reporting training result N: TrainingReport(...)").

    ray 2.60 logs it from ``ray/train/v2/_internal/execution/context.py`` through
    ``logging.getLogger(__file__)``, a logger named by the file's path, so neither
    ``LoggingConfig(log_level=...)`` (which filters ``ray.train*`` names) nor the ``ray.train``
    logger's level reaches it; the root logger prints it, with every metric, for every rank.
    """
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray version: nothing to quiet
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def say(logger: str, message: str) -> None:
    """One line in the job logs from a Ray Train worker.

    Ray Train v2 patches ``print`` on its workers into the root logger *and* tees it to the worker's
    stdout, which Ray has replaced (``ray/train/v2/_internal/logging/patch_print.py``), so every
    printed line reached the job logs twice. The root logger's console handler prints it once.
    """
    logging.getLogger(logger).info(message)

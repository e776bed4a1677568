"""batch-inference: Ray Data batch predictions over the held-out set with the trained model.

Reads BATCH_SIZE, DATASET, DATA_DIR, SEED, STORAGE_PATH, MODEL_PATH and OUTPUT_PATH. Writes
parquet files (columns ``id``, ``label``, ``prediction``) to ``OUTPUT_PATH/batch-inference`` and
``OUTPUT_PATH/batch-inference-summary.json``, and prints the accuracy.
Run: ``python -m workloads.batch_inference.predict`` (inside a Ray job).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workloads import storage
from workloads.settings import EnvReader, SettingsError, exit_on_settings_error
from workloads.storage import Location, join

RESULT_DIR_NAME = "batch-inference"
SUMMARY_FILE = "summary.json"
ROWS_BLOCKS = 8
"""At most this many input blocks (a few per actor of the pool)."""
MIN_BLOCK_ROWS = 4096
"""Fewer rows than this per block are not worth a separate block."""
RAY_BATCH_ROWS = 8192
"""Rows per batch that Ray Data hands a :class:`Predictor` (BATCH_SIZE when larger). Ray Data spends
about 1 ms per batch (slicing the block, converting it to numpy, concatenating the outputs; measured
with ``Dataset.stats()`` on 2 CPUs) while the digits model's forward of 32 rows takes ~0.15 ms, so the
predictor takes large batches and runs the model on BATCH_SIZE rows at a time."""
PARQUET_MIN_ROWS_PER_FILE = 100_000
"""Rows per written parquet file, at least (Ray Data's ``min_rows_per_file``; the last file may hold
fewer). Without it every block is a file and a write task of its own (~150 ms CPU per 25,000 rows on
2 CPUs, measured with ``Dataset.stats()``), and readers of the result get many small files."""


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """batch-inference parameters, parsed from the env contract."""

    batch_size: int
    dataset: str
    data_dir: Path
    seed: int
    model_path: Location
    output_path: Location

    @property
    def result_dir(self) -> Location:
        """Directory of the parquet predictions."""
        return join(self.output_path, RESULT_DIR_NAME)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BatchSettings:
        """Parse and validate; raises :class:`SettingsError` naming the bad variable."""
        from workloads.dt_pytorch.data import DATASETS

        env = EnvReader(environ)
        dataset = env.choice("DATASET", DATASETS)
        return cls(
            batch_size=env.integer("BATCH_SIZE", minimum=1),
            dataset=dataset,
            data_dir=env.path("DATA_DIR", derived=env.data_subdir("datasets", dataset)),
            seed=env.integer("SEED", minimum=0),
            model_path=env.location("MODEL_PATH", derived=env.storage_subdir("models", "latest")),
            output_path=env.location("OUTPUT_PATH", derived=env.storage_subdir("predictions")),
        )


class Predictor:
    """Ray Data callable class: one model per actor, predictions per batch, ``rows_per_forward`` rows
    per forward (the whole batch when ``None``)."""

    def __init__(self, model_path: str, rows_per_forward: int | None = None) -> None:
        from workloads.dt_pytorch.model import load_model

        self._model, self._meta = load_model(model_path if "://" in model_path else Path(model_path))
        self._rows_per_forward = rows_per_forward

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from workloads.dt_pytorch.model import predict

        features = batch["features"]
        if features.dtype == object:  # rows of unequal type: one array per row
            features = np.stack([np.asarray(row, dtype=np.float32) for row in features])
        predictions = predict(self._model, self._meta, features, rows_per_forward=self._rows_per_forward)
        return {"id": batch["id"], "label": batch["label"], "prediction": predictions}


def rows_dataset(features: np.ndarray, labels: np.ndarray) -> Any:
    """A Ray Dataset of ``id``, ``features`` (a tensor column: batches get one 2-D array) and ``label``.

    Built from columns, not from one Python dict per row, so the driver does no per-row work and
    :class:`Predictor` receives ``(batch, features)`` arrays without restacking them.

    The blocks go in with ``ray.data.from_blocks``, which reads their row counts and schema in the
    driver. ``ray.data.from_arrow`` runs one remote task per block for that instead and waits for them
    before the pipeline starts, so the actor pool started only after worker processes had been found
    and had imported Ray Data (Ray 2.60 ``read_api.from_arrow_refs``; on 2 CPUs ~1.4 s of a 6 s job by
    Ray's task events, 0.3-0.6 s on warm workers: bench/RESULTS.md). ``from_blocks`` is a
    DeveloperAPI; Ray is pinned in one place (requirements.txt) and the batch-inference tests run it.
    """
    import pyarrow as pa
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    table = pa.table(
        {
            "id": np.arange(len(labels), dtype=np.int64),
            "features": ArrowTensorArray.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
            "label": np.asarray(labels, dtype=np.int64),
        }
    )
    # Blocks are what Ray Data hands to the actors: several, so that every actor has work.
    blocks = max(1, min(ROWS_BLOCKS, len(labels) // MIN_BLOCK_ROWS))
    step = max(1, -(-len(labels) // blocks))
    return ray.data.from_blocks([table.slice(start, step) for start in range(0, len(labels), step)])


def predictions_dataset(rows: Any, *, model_path: Location, batch_size: int, actors: int = 2) -> Any:
    """``rows`` mapped through :class:`Predictor` on a pool of 1 to ``actors`` actors (one model load
    each), the model run on ``batch_size`` rows at a time within batches of at least
    :data:`RAY_BATCH_ROWS`.

    The pool starts with one actor and Ray Data adds more, up to ``actors``, while inputs queue
    (``ActorPoolStrategy(min_size, max_size)``): every actor imports torch and loads the model before
    its first row, and on 2 CPUs two actors doing that at once took longer than one actor needed for
    the whole job (200,000 rows: 7.6 s with a fixed pool of 2, 5.0 s starting from 1; bench/RESULTS.md).
    """
    import ray.data

    if actors < 1:
        raise ValueError(f"actors must be an integer >= 1 (the actor pool's largest size), got {actors}")
    return rows.map_batches(
        Predictor,
        fn_constructor_kwargs={"model_path": str(model_path), "rows_per_forward": batch_size},
        batch_size=max(batch_size, RAY_BATCH_ROWS),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        num_cpus=0.5,
    )


def write_predictions(predictions: Any, result_dir: Location) -> None:
    """Write ``predictions`` as parquet files of at least :data:`PARQUET_MIN_ROWS_PER_FILE` rows."""
    predictions.write_parquet(str(result_dir), min_rows_per_file=PARQUET_MIN_ROWS_PER_FILE)


def run(settings: BatchSettings) -> int:
    """Predict, write the results, print the accuracy; returns the exit status."""
    import ray

    from workloads.dt_pytorch.data import DatasetError, load_dataset
    from workloads.dt_pytorch.model import ModelNotFoundError, read_meta

    try:
        meta = read_meta(settings.model_path)
        if meta.dataset != settings.dataset:
            print(
                f"error: the model at {settings.model_path} was trained on {meta.dataset!r}, "
                f"DATASET is {settings.dataset!r}",
                file=sys.stderr,
            )
            return 1
        split = load_dataset(settings.dataset, seed=settings.seed, data_dir=settings.data_dir)
    except (ModelNotFoundError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    ray.init()
    print(f"model epoch {meta.epoch} from {settings.model_path}; {len(split.y_test)} rows", flush=True)
    predictions = predictions_dataset(
        rows_dataset(split.x_test, split.y_test),
        model_path=settings.model_path,
        batch_size=settings.batch_size,
    )
    storage.delete_dir(settings.result_dir)
    write_predictions(predictions, settings.result_dir)

    written = ray.data.read_parquet(str(settings.result_dir))
    total = written.count()
    correct_column = written.map_batches(
        lambda batch: {"correct": (batch["prediction"] == batch["label"]).astype(np.int64)}
    )
    correct: int = int(correct_column.sum("correct") or 0)
    accuracy = correct / total if total else 0.0
    summary = {"rows": total, "correct": correct, "accuracy": accuracy, "model_epoch": meta.epoch}
    summary_file = join(settings.output_path, f"{RESULT_DIR_NAME}-{SUMMARY_FILE}")
    storage.write_bytes(summary_file, json.dumps(summary, indent=2).encode())
    print(f"batch-inference accuracy {accuracy:.4f} ({correct}/{total}); written to {settings.result_dir}")
    if total != len(split.y_test):
        print(f"error: wrote {total} predictions for {len(split.y_test)} rows", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    """Entry point of ``python -m workloads.batch_inference.predict``."""
    try:
        settings = BatchSettings.from_env()
    except SettingsError as error:
        exit_on_settings_error(error)
    return run(settings)


if __name__ == "__main__":
    raise SystemExit(main())

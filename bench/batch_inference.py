"""Batch inference: Ray Data rows/s (the ``batch-inference`` workload's pipeline) vs a plain loop.

Both predict the same rows (the digits held-out set tiled to ``--rows`` rows) with the same model
(a ``dt-pytorch`` model directory written once, random weights: speed does not depend on them)
and write the predictions (``id``, ``label``, ``prediction``) as parquet:

* Ray Data: ``workloads.batch_inference.predict``'s ``rows_dataset`` -> ``predictions_dataset``
  (``map_batches`` over an actor pool of :class:`Predictor`, one model load per actor) ->
  ``write_parquet``, on a local head with 2 CPUs that this process connects to once;
* plain: ``load_model`` once, then ``predict`` batch by batch in this process, one parquet file.

Each measurement is rows / wall seconds from the rows in memory to the parquet on disk (the actor
pool's start and model loads included: they are part of every batch job). A third measurement
iterates the same Ray pipeline on the driver and splits it into start-up (to the first output
batch) and steady rows/s (the rest), to say what dominates. Plain and Ray runs are interleaved;
medians. Verdict: Ray Data rows/s >= 0.8 x plain, expressed as the equivalent
``plain rows/s / Ray rows/s <= 1.25`` (the report's targets are upper limits).

Run: ``python -m bench.batch_inference [--repeat 5] [--rows 200000] [--batch-sizes 32,1024]``
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/batch_inference.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common
from bench import _ray

NAME = "batch_inference"
MIN_SPEED = 0.8  # Ray Data rows/s >= 0.8 x plain
LIMIT = round(1 / MIN_SPEED, 4)  # the same target as an upper limit on plain / Ray


def verdict(
    ray_rows_s: list[float], plain_rows_s: list[float], *, min_speed: float = MIN_SPEED
) -> dict[str, Any]:
    """Ray Data rows/s relative to the plain loop's, and the target on it.

    ``speed`` = median Ray rows/s / median plain rows/s (>= ``min_speed`` passes); the target is
    recorded as ``1 / speed <= 1 / min_speed`` because report targets are upper limits.
    """
    ray_summary, plain_summary = common.summarize(ray_rows_s), common.summarize(plain_rows_s)
    speed = common.ratio(ray_summary["median"], plain_summary["median"])
    slowdown = None if not speed else 1 / speed
    return {
        "ray_rows_s": ray_summary,
        "plain_rows_s": plain_summary,
        "speed_vs_plain": speed,
        "slowdown_vs_plain": slowdown,
        "meets_min_speed": None if speed is None else speed >= min_speed,
        "target": common.target(
            f"plain rows/s / Ray Data rows/s (Ray >= {min_speed}x plain)", slowdown, round(1 / min_speed, 4)
        ),
    }


def make_rows(rows: int) -> tuple[Any, Any]:
    """The digits held-out features (raw 0..16) and labels, tiled to ``rows`` rows."""
    import numpy as np

    from workloads.dt_pytorch.data import load_digits

    split = load_digits(seed=0)
    reps = -(-rows // len(split.y_test))
    return np.tile(split.x_test, (reps, 1))[:rows], np.tile(split.y_test, reps)[:rows]


def write_model(directory: Path) -> None:
    """A dt-pytorch model directory (random weights) for both loops to load."""
    import torch

    from workloads.dt_pytorch.model import ModelMeta, build_model, write_model_dir
    from workloads.dt_pytorch.train import HIDDEN_DIM

    torch.manual_seed(0)
    model = build_model(input_dim=64, hidden_dim=HIDDEN_DIM, num_classes=10)
    write_model_dir(
        directory,
        state_dict=model.state_dict(),
        meta=ModelMeta(
            input_dim=64,
            hidden_dim=HIDDEN_DIM,
            num_classes=10,
            feature_scale=16.0,
            dataset="digits",
            epoch=0,
            held_out_accuracy=0.0,
        ),
    )


def plain_once(features: Any, labels: Any, *, model_dir: Path, batch_size: int, out: Path) -> float:
    """Rows/s of a plain loop: load the model, predict batch by batch, write one parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workloads.dt_pytorch.model import load_model, predict

    started = time.perf_counter()
    model, meta = load_model(model_dir)
    parts = [predict(model, meta, features[i : i + batch_size]) for i in range(0, len(labels), batch_size)]
    table = pa.table({"id": np.arange(len(labels)), "label": labels, "prediction": np.concatenate(parts)})
    pq.write_table(table, out / "predictions.parquet")
    return len(labels) / (time.perf_counter() - started)


def ray_once(features: Any, labels: Any, *, model_dir: Path, batch_size: int, out: Path) -> float:
    """Rows/s of the workload's Ray Data pipeline, rows in memory -> parquet on disk."""
    from workloads.batch_inference.predict import predictions_dataset, rows_dataset

    started = time.perf_counter()
    predictions = predictions_dataset(
        rows_dataset(features, labels), model_path=model_dir, batch_size=batch_size
    )
    predictions.write_parquet(str(out))
    return len(labels) / (time.perf_counter() - started)


def ray_steady_once(features: Any, labels: Any, *, model_dir: Path, batch_size: int) -> dict[str, float]:
    """The same pipeline iterated on the driver: start-up (to the first batch) and steady rows/s.

    Steady = rows after the first output batch / time from the first to the last batch: what the
    actors sustain once started, without the pool's start-up and model loads.
    """
    from workloads.batch_inference.predict import predictions_dataset, rows_dataset

    started = time.perf_counter()
    predictions = predictions_dataset(
        rows_dataset(features, labels), model_path=model_dir, batch_size=batch_size
    )
    first_at: float | None = None
    first_rows = seen = 0
    for batch in predictions.iter_batches(batch_size=None, batch_format="numpy"):
        seen += len(batch["prediction"])
        if first_at is None:
            first_at, first_rows = time.perf_counter(), seen
    finished = time.perf_counter()
    if first_at is None or seen != len(labels):
        raise RuntimeError(f"the pipeline returned {seen} of {len(labels)} rows")
    span = finished - first_at
    return {
        "startup_s": first_at - started,
        "steady_rows_s": (seen - first_rows) / span if span > 0 and seen > first_rows else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    args_parser = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=5)
    args_parser.add_argument("--rows", type=int, default=200_000, help="rows to predict (default 200000)")
    args_parser.add_argument(
        "--batch-sizes",
        default="32,1024",
        help="comma-separated batch sizes, each measured (default 32,1024)",
    )
    args = args_parser.parse_args(argv)
    rows = 2000 if args.quick else max(1, args.rows)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    repeat = max(1, args.repeat)
    run = common.Run(NAME, "Batch inference (Ray Data vs plain loop)", __doc__.split("\n\n")[0], args)
    features, labels = make_rows(rows)
    measured: dict[int, dict[str, list[float]]] = {
        b: {"ray": [], "plain": [], "ray_steady": [], "startup": []} for b in batch_sizes
    }
    loads: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        root = Path(scratch)
        model_dir = root / "model"
        write_model(model_dir)
        common.progress(NAME, "starting the local Ray head")
        head = _ray.LocalHead(root / "local", num_cpus=2)
        try:
            head.start()
            # Ray rewrites a 127.0.0.1 address to this machine's routable IP before connecting, where
            # the loopback-only head does not listen; this makes the driver keep the loopback address.
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            import ray

            ray.init(address=head._running().gcs_address, logging_level="WARNING", log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
            counter = 0
            for index in range(repeat):
                loads.append(list(common.machine()["loadavg_1m_5m_15m"]))
                for batch_size in batch_sizes:
                    for kind, once in (("plain", plain_once), ("ray", ray_once)):
                        counter += 1
                        out = root / f"out-{counter}"
                        out.mkdir()
                        common.progress(NAME, f"run {index + 1}/{repeat}: {kind} batch {batch_size}")
                        measured[batch_size][kind].append(
                            once(features, labels, model_dir=model_dir, batch_size=batch_size, out=out)
                        )
                    common.progress(NAME, f"run {index + 1}/{repeat}: ray steady batch {batch_size}")
                    timing = ray_steady_once(features, labels, model_dir=model_dir, batch_size=batch_size)
                    measured[batch_size]["startup"].append(timing["startup_s"])
                    measured[batch_size]["ray_steady"].append(timing["steady_rows_s"])
            ray.shutdown()
        finally:
            common.progress(NAME, "stopping the local Ray head")
            head.stop()

    results: dict[str, Any] = {"rows": rows, "loadavg_per_round": loads, "batch_sizes": {}}
    table_rows = []
    targets = []
    for batch_size in batch_sizes:
        outcome = verdict(measured[batch_size]["ray"], measured[batch_size]["plain"])
        results["batch_sizes"][str(batch_size)] = outcome
        outcome["target"]["name"] += f", batch {batch_size}, end to end"
        targets.append(outcome["target"])
        steady = verdict(
            [v for v in measured[batch_size]["ray_steady"] if not math.isnan(v)],
            measured[batch_size]["plain"],
        )
        steady["target"]["name"] += f", batch {batch_size}, steady (after the first batch)"
        targets.append(steady["target"])
        outcome["steady"] = steady
        outcome["startup_s"] = common.summarize(measured[batch_size]["startup"])
        for kind in ("plain", "ray"):
            summary = outcome[f"{kind}_rows_s"]
            table_rows.append(
                [
                    str(batch_size),
                    "plain loop" if kind == "plain" else "Ray Data (workload pipeline)",
                    f"{summary['median']:.0f} ({summary['min']:.0f}-{summary['max']:.0f})",
                    "1.00x" if kind == "plain" else common.fmt_x(outcome["speed_vs_plain"]),
                ]
            )
        summary = steady["ray_rows_s"]
        table_rows.append(
            [
                str(batch_size),
                "Ray Data, steady (after the first batch; start-up "
                + common.fmt_s(outcome["startup_s"]).split(" ")[0]
                + " s)",
                "n/a"
                if summary["median"] is None
                else f"{summary['median']:.0f} ({summary['min']:.0f}-{summary['max']:.0f})",
                common.fmt_x(steady["speed_vs_plain"]),
            ]
        )
    notes = [
        f"{rows} rows (the digits held-out set tiled), 64 features, dt-pytorch MLP; Ray Data on a local head "
        "with 2 CPUs (the workload's pool: 2 actors x 0.5 CPU), plain loop in one process with torch's default "
        "threads. Load average (1/5/15 min) before each round: "
        + "; ".join("/".join(f"{x:.1f}" for x in load) for load in loads)
        + ".",
        "Ray rows/s median per batch size: "
        + ", ".join(
            f"{b}: {statistics.median(measured[b]['ray']):.0f} rows/s"
            for b in batch_sizes
            if measured[b]["ray"]
        )
        + ".",
    ]
    run.write(
        settings={"rows": rows, "batch_sizes": batch_sizes, "num_cpus": 2, "actors": 2},
        targets=targets,
        table={"columns": ["batch size", "loop", "rows/s median (min-max)", "vs plain"], "rows": table_rows},
        notes=notes,
        results=results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training overhead: Ray Train (``dt-pytorch``, 1 worker) wall per epoch vs a plain PyTorch loop.

Both train the same model (``build_model``), on the same data (digits enlarged with
``DATA_REPEATS`` shifted copies, so one epoch is seconds of compute), with the same batch size,
epochs, seed and per-epoch step function (``workloads.dt_pytorch.train.train_one_epoch``), each
epoch followed by the held-out evaluation and, every CHECKPOINT_EVERY epochs, a checkpoint
(``write_model_dir``). The plain loop runs in its own process with one torch thread (a 1-CPU Ray
worker gets ``OMP_NUM_THREADS=1``) and writes its checkpoints straight to a local directory.
The Ray Train run is ``python -m workloads run dt-pytorch`` on a local head started for the run;
its rank 0 logs ``epoch_seconds`` (training + evaluation + checkpoint + ``ray.train.report``).

Runs are interleaved (plain, Ray, plain, Ray, ...) so machine load hits both alike. Epoch 1 is
warm-up and excluded; each run contributes the median of its other epochs. Verdict: median Ray
epoch / median plain epoch <= 1.25.

Run: ``python -m bench.training_overhead [--repeat 3] [--epochs 5] [--data-repeats 30]``
"""

from __future__ import annotations

import json
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/training_overhead.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common
from bench import _ray
from workloads import train_common

NAME = "training_overhead"
WORKLOAD = "dt-pytorch"
LIMIT = 1.25  # Ray Train wall per epoch <= 1.25 x plain
EPOCH_LINE = re.compile(
    r"epoch (\d+)/(\d+) .*train_seconds=([0-9.]+) .*report_seconds=([0-9.]+) epoch_seconds=([0-9.]+)"
)
SEED = 0
BATCH_SIZE = 32


def steady(epochs: dict[int, float]) -> list[float]:
    """The per-epoch times without epoch 1 (warm-up: first allocations, first checkpoint)."""
    rest = [seconds for epoch, seconds in sorted(epochs.items()) if epoch != 1]
    return rest or list(epochs.values())


def verdict(ray_runs: list[float], plain_runs: list[float], *, limit: float = LIMIT) -> dict[str, Any]:
    """Ratio of the median Ray Train epoch to the median plain epoch, and the target on it.

    ``ray_runs`` / ``plain_runs``: one steady epoch time (seconds) per run. Also the ratio of each
    interleaved pair (run i of both), whose spread shows how much the load moved the ratio.
    """
    ray_summary, plain_summary = common.summarize(ray_runs), common.summarize(plain_runs)
    ratio = common.ratio(ray_summary["median"], plain_summary["median"])
    pairs = [r / p for r, p in zip(ray_runs, plain_runs, strict=False) if p > 0]
    return {
        "ray_epoch_s": ray_summary,
        "plain_epoch_s": plain_summary,
        "ratio": ratio,
        "pair_ratios": common.summarize(pairs),
        "target": common.target("Ray Train wall per epoch / plain PyTorch (1 worker)", ratio, limit),
    }


# --- the plain PyTorch loop (run in a subprocess: `--plain-worker`) ---


def plain_run(*, epochs: int, data_repeats: int, checkpoint_every: int, out_dir: Path) -> dict[str, Any]:
    """The dt-pytorch epoch loop without Ray; returns per-epoch seconds (same phases as rank 0)."""
    import numpy as np
    import torch
    from torch import nn

    from workloads.dt_pytorch.data import load_dataset
    from workloads.dt_pytorch.model import ModelMeta, build_model, checkpoint_dir_name, write_model_dir
    from workloads.dt_pytorch.train import HIDDEN_DIM, train_one_epoch

    torch.set_num_threads(1)  # as a 1-CPU Ray Train worker (OMP_NUM_THREADS=1)
    split = load_dataset("digits", seed=SEED, repeats=data_repeats)
    scale = split.feature_scale
    order = np.random.default_rng(SEED).permutation(len(split.x_train))  # the 1-rank "shard"
    x_train = torch.as_tensor(split.x_train[order] / scale, dtype=torch.float32)
    y_train = torch.as_tensor(split.y_train[order])
    x_test = torch.as_tensor(split.x_test / scale, dtype=torch.float32)
    y_test = torch.as_tensor(split.y_test)
    torch.manual_seed(SEED)
    model = build_model(input_dim=split.num_features, hidden_dim=HIDDEN_DIM, num_classes=split.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    loss_fn = nn.CrossEntropyLoss()
    device = torch.device("cpu")
    epoch_s: dict[int, float] = {}
    accuracy = 0.0
    for epoch in range(1, epochs + 1):
        generator = torch.Generator().manual_seed(SEED * 100_003 + epoch * 31)
        started = time.perf_counter()
        train_one_epoch(
            model,
            optimizer,
            loss_fn,
            x_train,
            y_train,
            batch_size=BATCH_SIZE,
            generator=generator,
            device=device,
        )
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x_test).argmax(dim=1) == y_test).float().mean().item())
        if epoch % checkpoint_every == 0 or epoch == epochs:
            write_model_dir(
                out_dir / checkpoint_dir_name(epoch),
                state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                optimizer_state=optimizer.state_dict(),
                meta=ModelMeta(
                    input_dim=split.num_features,
                    hidden_dim=HIDDEN_DIM,
                    num_classes=split.num_classes,
                    feature_scale=scale,
                    dataset="digits",
                    epoch=epoch,
                    held_out_accuracy=accuracy,
                ),
            )
        epoch_s[epoch] = time.perf_counter() - started
    return {"epoch_s": epoch_s, "samples_per_epoch": len(x_train), "final_accuracy": accuracy}


def plain_once(*, epochs: int, data_repeats: int, checkpoint_every: int) -> dict[str, Any]:
    """One plain-loop run in a fresh process (one torch thread); returns its per-epoch times."""
    with tempfile.TemporaryDirectory(prefix="bench-plain-") as scratch:
        argv = [
            sys.executable,
            "-m",
            f"bench.{NAME}",
            "--plain-worker",
            "--epochs",
            str(epochs),
            "--data-repeats",
            str(data_repeats),
            "--checkpoint-every",
            str(checkpoint_every),
            "--output-dir",
            scratch,
        ]
        env = {**_ray.client_env(), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(argv, cwd=common.REPO, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the plain loop failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["epoch_s"] = {int(k): v for k, v in result["epoch_s"].items()}
    return result


def ray_once(
    local_dir: Path,
    storage: Path,
    dashboard_url: str,
    *,
    epochs: int,
    data_repeats: int,
    checkpoint_every: int,
    run_prefix: str,
) -> dict[str, Any]:
    """One dt-pytorch run with 1 worker; returns rank 0's per-epoch times (raises when it fails)."""
    run_name = f"{run_prefix}-{secrets.token_hex(3)}"  # fresh: nothing resumes
    env = {
        "NUM_WORKERS": "1",
        "EPOCHS": str(epochs),
        "BATCH_SIZE": str(BATCH_SIZE),
        "SEED": str(SEED),
        "DATA_REPEATS": str(data_repeats),
        "CHECKPOINT_EVERY": str(checkpoint_every),
        "STORAGE_PATH": str(storage),
        "RUN_NAME": run_name,
    }
    argv = [sys.executable, "-m", "workloads", "--local-dir", str(local_dir), "run", WORKLOAD]
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    done = _ray.timed(argv, cwd=common.REPO, env=_ray.client_env(), timeout_s=1800)
    if done.returncode != 0:
        reason = _ray.job_failure_reason(dashboard_url, done.output)
        raise RuntimeError(f"dt-pytorch failed ({reason}):\n{done.output[-3000:]}")
    epoch_s: dict[int, float] = {}
    train_s: dict[int, float] = {}
    report_s: dict[int, float] = {}
    for _, line in done.lines:
        match = EPOCH_LINE.search(line)
        if match:
            epoch = int(match.group(1))
            train_s[epoch], report_s[epoch] = float(match.group(3)), float(match.group(4))
            epoch_s[epoch] = float(match.group(5))
    if len(epoch_s) < epochs:
        raise RuntimeError(f"saw {len(epoch_s)} of {epochs} epoch lines:\n{done.output[-3000:]}")
    return {"epoch_s": epoch_s, "train_s": train_s, "report_s": report_s, "wall_s": done.wall_s}


def main(argv: list[str] | None = None) -> int:
    args_parser = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=3)
    args_parser.add_argument("--epochs", type=int, default=5, help="EPOCHS per run (default 5; --quick: 2)")
    args_parser.add_argument(
        "--data-repeats",
        type=int,
        default=30,
        help="DATA_REPEATS (default 30: seconds per epoch; --quick: 2)",
    )
    args_parser.add_argument(
        "--checkpoint-every", type=int, default=1, help="CHECKPOINT_EVERY for both loops (default 1)"
    )
    args_parser.add_argument("--plain-worker", action="store_true", help=__import__("argparse").SUPPRESS)
    args = args_parser.parse_args(argv)
    epochs = 2 if args.quick else max(2, args.epochs)
    data_repeats = 2 if args.quick else max(1, args.data_repeats)
    if args.plain_worker:
        result = plain_run(
            epochs=epochs,
            data_repeats=data_repeats,
            checkpoint_every=args.checkpoint_every,
            out_dir=args.output_dir,
        )
        print(json.dumps(result))
        return 0
    _ray.require_workloads_cli()
    run = common.Run(
        NAME, "Training overhead (Ray Train vs plain PyTorch, 1 worker)", __doc__.split("\n\n")[0], args
    )
    repeat = max(1, args.repeat)
    plain: list[dict[str, Any]] = []
    ray_runs: list[dict[str, Any]] = []
    failures: list[str] = []
    loads: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as scratch:
        local_dir, storage = Path(scratch) / "local", Path(scratch) / "storage"
        common.progress(NAME, "starting the local Ray head")
        head = _ray.LocalHead(local_dir, num_cpus=2)
        try:
            head.start()
            for index in range(repeat):
                loads.append(list(common.machine()["loadavg_1m_5m_15m"]))
                common.progress(NAME, f"run {index + 1}/{repeat}: plain PyTorch")
                plain.append(
                    plain_once(
                        epochs=epochs, data_repeats=data_repeats, checkpoint_every=args.checkpoint_every
                    )
                )
                common.progress(NAME, f"run {index + 1}/{repeat}: Ray Train")
                ray_runs.append(
                    _ray.with_retries(
                        partial(
                            ray_once,
                            local_dir,
                            storage,
                            head.dashboard_url,
                            epochs=epochs,
                            data_repeats=data_repeats,
                            checkpoint_every=args.checkpoint_every,
                            run_prefix=f"overhead-{index}",
                        ),
                        failures,
                    )
                )
        finally:
            common.progress(NAME, "stopping the local Ray head")
            head.stop()

    plain_steady = [statistics.median(steady(r["epoch_s"])) for r in plain]
    ray_steady = [statistics.median(steady(r["epoch_s"])) for r in ray_runs]
    ray_train = [statistics.median(steady(r["train_s"])) for r in ray_runs]
    ray_report = [statistics.median(steady(r["report_s"])) for r in ray_runs]
    outcome = verdict(ray_steady, plain_steady)
    results = {
        **outcome,
        "ray_train_s": common.summarize(ray_train),
        "ray_report_s": common.summarize(ray_report),
        "samples_per_epoch": plain[0]["samples_per_epoch"],
        "loadavg_per_pair": loads,
        "runs": {"plain": plain, "ray": ray_runs},
        "failures": failures,
    }
    rows = [
        ["plain PyTorch loop", common.fmt_s(outcome["plain_epoch_s"]), "-", "-", "1.00x"],
        [
            "Ray Train (dt-pytorch)",
            common.fmt_s(outcome["ray_epoch_s"]),
            common.fmt_s(results["ray_train_s"]),
            common.fmt_s(results["ray_report_s"]),
            common.fmt_x(outcome["ratio"]),
        ],
    ]
    pair = outcome["pair_ratios"]
    notes = [
        f"Ratio of medians {common.fmt_x(outcome['ratio'])}; per interleaved pair "
        + (
            "n/a"
            if pair["median"] is None
            else f"{pair['median']:.2f}x ({pair['min']:.2f}-{pair['max']:.2f})"
        )
        + f"; target <= {LIMIT}x. Load average (1/5/15 min) before each pair: "
        + "; ".join("/".join(f"{x:.1f}" for x in load) for load in loads)
        + ".",
        f"{plain[0]['samples_per_epoch']} training samples per epoch (digits x DATA_REPEATS={data_repeats}), "
        f"batch {BATCH_SIZE}, {epochs} epochs, CHECKPOINT_EVERY={args.checkpoint_every}; epoch 1 excluded.",
        "Ray's epoch = rank 0's `epoch_seconds` (training + held-out evaluation + checkpoint write + "
        "`ray.train.report`, whose checkpoint copy and wait for the controller are `report_seconds`); the "
        "plain epoch = the same training + evaluation + checkpoint write to a local directory. Job "
        "submission and worker-group start-up are outside both (see the training benchmark for those).",
        "Where a report's time goes (ray 2.60, ray/train/v2/_internal/execution/context.py `report`): a "
        "barrier on the synchronization actor (`broadcast_from_rank_zero`, agreeing on the checkpoint "
        "directory name), the checkpoint copy into the run directory (`persist_current_checkpoint`, pyarrow), "
        "then `put` on the worker's one-slot result queue (worker.py `queue.Queue(maxsize=1)`), which the "
        "controller drains only when it polls (`_poll_workers`, at least RAY_TRAIN_HEALTH_CHECK_INTERVAL_S "
        "apart: Ray's default is 2 s, the catalog's training jobs set "
        f"{train_common.HEALTH_CHECK_INTERVAL_S} s). An epoch longer than the poll interval always finds the "
        "slot drained, so its report costs the barrier and the copy (the `report s` column); an epoch shorter "
        "than it waits for the next poll once the slot is full: with the plain digits set (about 30 ms of "
        "compute) every epoch took about 1.6 s at 2 s and 0.22 s at 0.25 s (bench.training). "
        "CHECKPOINT_EVERY=N reports only every N epochs (the epochs between do not call "
        "`ray.train.report`, since a report without a checkpoint queues the same way); the default stays 1 "
        "(a failure loses no finished epoch).",
    ]
    if failures:
        notes.append(
            f"{len(failures)} Ray run(s) failed and were retried; first: {failures[0].splitlines()[0]}"
        )
    run.write(
        settings={
            "workload": WORKLOAD,
            "epochs": epochs,
            "data_repeats": data_repeats,
            "checkpoint_every": args.checkpoint_every,
            "batch_size": BATCH_SIZE,
            "num_workers": 1,
            "num_cpus": 2,
        },
        targets=[outcome["target"]],
        table={
            "columns": [
                "loop",
                "s/epoch median (min-max)",
                "train s (Ray rank 0)",
                "report s (Ray rank 0)",
                "ratio vs plain",
            ],
            "rows": rows,
        },
        notes=notes,
        results=results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

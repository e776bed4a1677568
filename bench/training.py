"""Training throughput: ``dt-pytorch`` samples/s with 1 and 2 Ray Train workers, time to first checkpoint.

One local Ray head (``--num-cpus=2``) is started for the run and reused by
``python -m workloads --local-dir <dir> run dt-pytorch --env NUM_WORKERS=<n> --env EPOCHS=<e> ...``
(a fresh RUN_NAME per run, so nothing resumes). The workload prints no throughput, so this script
watches the run's checkpoint directory (``STORAGE_PATH/checkpoints/RUN_NAME/epoch_NNNN``, one per
epoch, written by rank 0 after the epoch's training and held-out evaluation) every 20 ms:

* time to first checkpoint = command start -> ``epoch_0001``'s files written (CLI, job start,
  Ray Train worker group start, data load, one epoch);
* samples/s = samples per epoch x (E - 1) / (write time of ``epoch_E`` - of ``epoch_0001``): steady
  state, start-up excluded, per-epoch evaluation and checkpointing included. Write times are the
  files' modification times (ns clock); should an early checkpoint be pruned (``num_to_keep``)
  before it is seen, the first observed epoch is used instead. Samples per epoch =
  the per-rank shard (train split // NUM_WORKERS) x NUM_WORKERS, as the training loop computes it.
* unthrottled samples/s = samples per epoch / (``epoch_0002`` - ``epoch_0001``): the second epoch
  never waits for Ray Train's report queue (see the notes), so it is the compute-bound rate;
* scaling efficiency = samples/s(2 workers) / (2 x samples/s(1 worker)), for both rates.

Run: ``python -m bench.training [--repeat 3] [--epochs 10]``
"""

from __future__ import annotations

import re
import secrets
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/training.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common
from bench import _ray

NAME = "training"
WORKLOAD = "dt-pytorch"
WORKER_COUNTS = (1, 2)
TRAIN_POLL_INTERVAL_S = 2.0  # Ray Train v2 DEFAULT_HEALTH_CHECK_INTERVAL_S (ray 2.60)
EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
ACCURACY = re.compile(r"final held-out accuracy ([0-9.]+)")


class CheckpointWatcher(threading.Thread):
    """Records, for each ``epoch_NNNN`` directory under ``run_dir``, when its files were written.

    The time is the newest file modification time in the directory (nanosecond clock, unlike the
    polling interval): older checkpoints are deleted (``num_to_keep``) so each is read when first seen.
    """

    def __init__(self, run_dir: Path, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.interval_s = interval_s
        self.written: dict[int, float] = {}  # epoch -> time.time() of its newest file
        self._stop_event = threading.Event()

    def _scan(self) -> None:
        try:
            children = list(self.run_dir.iterdir())
        except OSError:
            return  # the run directory does not exist yet
        for child in children:
            match = EPOCH_DIR.match(child.name)
            if not match or int(match.group(1)) in self.written:
                continue
            try:
                files = [f for f in child.rglob("*") if f.is_file()]
                if files:
                    self.written[int(match.group(1))] = max(f.stat().st_mtime_ns for f in files) / 1e9
            except OSError:
                continue  # deleted or still being written: read it on the next scan

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._scan()
            self._stop_event.wait(self.interval_s)
        self._scan()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def samples_per_epoch(num_workers: int) -> int:
    """Training samples one epoch processes across all ranks (equal shards, as the loop cuts them)."""
    from workloads.dt_pytorch.data import load_digits

    split = load_digits(seed=0)
    return (len(split.x_train) // num_workers) * num_workers


def train_once(
    local_dir: Path, storage: Path, dashboard_url: str, *, num_workers: int, epochs: int, run_prefix: str
) -> dict[str, Any]:
    """One dt-pytorch run; returns its timings (raises when the job fails)."""
    run_name = f"{run_prefix}-{secrets.token_hex(3)}"  # fresh per attempt: a retry must not resume
    argv = [
        sys.executable,
        "-m",
        "workloads",
        "--local-dir",
        str(local_dir),
        "run",
        WORKLOAD,
        "--env",
        f"NUM_WORKERS={num_workers}",
        "--env",
        f"EPOCHS={epochs}",
        "--env",
        f"STORAGE_PATH={storage}",
        "--env",
        f"RUN_NAME={run_name}",
    ]
    watcher = CheckpointWatcher(storage / "checkpoints" / run_name)
    watcher.start()
    started = time.time()
    try:
        done = _ray.timed(argv, cwd=common.REPO, env=_ray.client_env(), timeout_s=1800)
    finally:
        watcher.stop()
    if done.returncode != 0:
        reason = _ray.job_failure_reason(dashboard_url, done.output)
        raise RuntimeError(f"dt-pytorch with {num_workers} workers failed ({reason}):\n{done.output[-3000:]}")
    written = {epoch: at - started for epoch, at in sorted(watcher.written.items())}
    if len(written) < 2:
        raise RuntimeError(f"fewer than two epoch checkpoints were observed: {sorted(written)}")
    first, last = min(written), max(written)
    per_epoch = samples_per_epoch(num_workers)
    span = written[last] - written[first]
    accuracy = ACCURACY.search(done.output)
    return {
        "wall_s": done.wall_s,
        "first_checkpoint_epoch": first,
        "first_checkpoint_s": written[first],
        "samples_per_epoch": per_epoch,
        "samples_per_s": per_epoch * (last - first) / span if span > 0 else None,
        "epoch_s": span / (last - first),
        # Epoch 2 is persisted before any report waits (see the module docstring): compute-bound.
        "unthrottled_samples_per_s": (
            per_epoch / (written[2] - written[1])
            if 1 in written and 2 in written and written[2] > written[1]
            else None
        ),
        "checkpoint_times_s": {str(k): v for k, v in written.items()},
        "final_accuracy": float(accuracy.group(1)) if accuracy else None,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def main(argv: list[str] | None = None) -> int:
    args_parser = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=3)
    args_parser.add_argument("--epochs", type=int, default=10, help="EPOCHS per run (default 10; --quick: 2)")
    args = args_parser.parse_args(argv)
    _ray.require_workloads_cli()
    run = common.Run(NAME, "Training throughput (dt-pytorch, local Ray)", __doc__.split("\n\n")[0], args)
    epochs = 2 if args.quick else max(2, args.epochs)
    repeat = max(1, args.repeat)
    samples: dict[int, list[dict[str, Any]]] = {n: [] for n in WORKER_COUNTS}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        local_dir, storage = Path(scratch) / "local", Path(scratch) / "storage"
        common.progress(NAME, "starting the local Ray head")
        head = _ray.LocalHead(local_dir, num_cpus=2)
        try:
            head.start()
            for index in range(repeat):
                for workers in WORKER_COUNTS:
                    common.progress(NAME, f"run {index + 1}/{repeat}: NUM_WORKERS={workers} EPOCHS={epochs}")
                    samples[workers].append(
                        _ray.with_retries(
                            partial(
                                train_once,
                                local_dir,
                                storage,
                                head.dashboard_url,
                                num_workers=workers,
                                epochs=epochs,
                                run_prefix=f"bench-{workers}w-{index}",
                            ),
                            failures,
                        )
                    )
        finally:
            common.progress(NAME, "stopping the local Ray head")
            head.stop()

    results: dict[str, Any] = {}
    rows = []
    for workers in WORKER_COUNTS:
        throughput = common.summarize([s["samples_per_s"] for s in samples[workers] if s["samples_per_s"]])
        unthrottled = common.summarize(
            [s["unthrottled_samples_per_s"] for s in samples[workers] if s["unthrottled_samples_per_s"]]
        )
        first = common.summarize([s["first_checkpoint_s"] for s in samples[workers]])
        wall = common.summarize([s["wall_s"] for s in samples[workers]])
        epoch_s = common.summarize([s["epoch_s"] for s in samples[workers]])
        accuracy = [s["final_accuracy"] for s in samples[workers]]
        results[str(workers)] = {
            "samples_per_s": throughput,
            "unthrottled_samples_per_s": unthrottled,
            "first_checkpoint_s": first,
            "wall_s": wall,
            "epoch_s": epoch_s,
            "samples_per_epoch": samples[workers][0]["samples_per_epoch"],
            "final_accuracy": accuracy,
        }
        rows.append(
            [
                str(workers),
                str(samples[workers][0]["samples_per_epoch"]),
                "n/a"
                if throughput["median"] is None
                else f"{throughput['median']:.0f} ({throughput['min']:.0f}-{throughput['max']:.0f})",
                "n/a"
                if unthrottled["median"] is None
                else f"{unthrottled['median']:.0f} ({unthrottled['min']:.0f}-{unthrottled['max']:.0f})",
                common.fmt_s(epoch_s),
                common.fmt_s(first),
                common.fmt_s(wall),
                ", ".join("n/a" if a is None else f"{a:.3f}" for a in accuracy),
            ]
        )
    speedup = common.ratio(results["2"]["samples_per_s"]["median"], results["1"]["samples_per_s"]["median"])
    efficiency = None if speedup is None else speedup / 2
    raw_speedup = common.ratio(
        results["2"]["unthrottled_samples_per_s"]["median"],
        results["1"]["unthrottled_samples_per_s"]["median"],
    )
    raw_efficiency = None if raw_speedup is None else raw_speedup / 2
    results["speedup_2_vs_1"] = speedup
    results["scaling_efficiency"] = efficiency
    results["unthrottled_speedup_2_vs_1"] = raw_speedup
    results["unthrottled_scaling_efficiency"] = raw_efficiency
    epoch_medians = [results[str(n)]["epoch_s"]["median"] for n in WORKER_COUNTS]
    poll_bound = all(
        abs(m - TRAIN_POLL_INTERVAL_S) <= 0.2 * TRAIN_POLL_INTERVAL_S for m in epoch_medians if m is not None
    )
    results["bounded_by_train_poll_interval"] = poll_bound
    notes = [
        f"Speedup 2 vs 1 worker, steady (per-epoch reports): {common.fmt_x(speedup)}, scaling efficiency "
        f"{_pct(efficiency)}; unthrottled (compute-bound epoch): {common.fmt_x(raw_speedup)}, scaling "
        f"efficiency {_pct(raw_efficiency)} (ideal 100%). The head has 2 CPUs on a 2-core machine shared with "
        "the Ray head, the job driver and the CLI, so 2 workers compete for the same cores, and the DDP "
        "all-reduce (gloo, CPU) costs more than the halved shard saves on a model this small.",
        "The digits set is tiny (~1.4k training samples, 8x8 inputs): a compute-bound epoch takes tens of "
        "milliseconds, far less than job and worker-group start-up (see first checkpoint), so these numbers "
        "describe framework overhead, not GPU training throughput.",
        (
            f"Steady-state epochs take {', '.join(f'{m:.2f}' for m in epoch_medians if m is not None)} s for "
            f"{', '.join(str(n) for n in WORKER_COUNTS)} workers: "
            + (
                f"pinned to Ray Train v2's controller poll interval ({TRAIN_POLL_INTERVAL_S:.0f} s, "
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S). Each worker's report queue holds one result "
                "(ray/train/v2/_internal/execution/worker_group/worker.py: queue.Queue(maxsize=1)), so once it "
                "is full every `ray.train.report` waits for the next poll: the first two epochs finish "
                "back to back, then one epoch per poll. With epochs this short the measured samples/s is "
                "the reporting cadence, not compute; reporting every N epochs (or a larger data set) "
                "would lift it."
                if poll_bound
                else "not pinned to the Ray Train controller poll interval."
            )
        ),
        "The steady rate is inferred from checkpoint file times. Rank 0 also prints per-epoch "
        "`train_seconds` and `samples_per_second` (global samples / time of the training loop only, also in "
        "the `ray.train.report` metrics): that compute-only rate is what the unthrottled column estimates.",
    ]
    if failures:
        notes.append(
            f"{len(failures)} run(s) failed and were retried (listed in results.failures); first failure: "
            + failures[0].splitlines()[0]
        )
    run.write(
        settings={
            "workload": WORKLOAD,
            "epochs": epochs,
            "worker_counts": list(WORKER_COUNTS),
            "num_cpus": 2,
            "dataset": "digits",
        },
        targets=[],
        table={
            "columns": [
                "NUM_WORKERS",
                "samples/epoch",
                "samples/s steady median (min-max)",
                "samples/s unthrottled median (min-max)",
                "s/epoch steady",
                "first checkpoint s",
                "wall s",
                "final held-out accuracy",
            ],
            "rows": rows,
        },
        notes=notes,
        results={"workers": results, "raw": {str(k): v for k, v in samples.items()}, "failures": failures},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

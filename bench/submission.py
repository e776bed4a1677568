"""Job submission overhead: ``python -m workloads run quickstart`` vs Ray's own ``ray job submit``.

One local Ray head (``ray start --head --num-cpus=2``, free ports, own temp dir) is started for the
run. It is recorded in a scratch ``--local-dir`` the way the workloads CLI records the head it
starts, so ``python -m workloads --local-dir <dir> run quickstart`` takes its "reuse the running
head" path. The same workload files are staged once (``workloads.jobs.stage_files``, the catalog
``files``) for the baseline::

    ray job submit --address http://127.0.0.1:<dashboard> --working-dir <staging> \
        -- python -m workloads.quickstart.main

``python -m workloads submit quickstart --address <dashboard>`` (the deployed-cluster path) is timed
as a third variant. Each variant runs once untimed (working_dir upload cache, worker start), then
the variants alternate ``--repeat`` times; every run must exit 0 and print ``quickstart OK``.
Target: median(workloads run) / median(ray job submit) <= 1.2. The head is stopped by its process
group in a ``finally`` (not ``ray stop``, which would stop other users' Ray on the machine).

``--quick`` (smoke test): no warm-up, no third variant, one run each.

Run: ``python -m bench.submission [--repeat 5]``
"""

from __future__ import annotations

import json
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/submission.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common
from bench import _ray

NAME = "submission"
TARGET_RATIO = 1.2
WORKLOAD = "quickstart"
SUCCESS_LINE = "quickstart OK"
# Moments in each command's output (seconds from start): when the job was handed to the cluster.
SUBMITTED_MARKERS = {
    "workloads run": "submitting quickstart as",
    "workloads submit": "submitting quickstart as",
    "ray job submit": "submitted successfully",
}


def commands(head: _ray.LocalHead, local_dir: Path, staging: Path) -> dict[str, list[str]]:
    """The three command lines, keyed by variant."""
    from workloads.catalog import get_workload, workload_env

    workload = get_workload(WORKLOAD)
    ray_submit = [
        _ray.ray_executable(),
        "job",
        "submit",
        "--address",
        head.dashboard_url,
        "--working-dir",
        str(staging),
    ]
    env = workload_env(workload, {})
    if env:  # the CLI sends the contract env as runtime_env env_vars; so must the baseline
        ray_submit += ["--runtime-env-json", json.dumps({"env_vars": env})]
    ray_submit += ["--", *workload.entrypoint().split()]
    cli = [sys.executable, "-m", "workloads", "--local-dir", str(local_dir)]
    return {
        "workloads run": [*cli, "run", WORKLOAD],
        "ray job submit": ray_submit,
        "workloads submit": [*cli, "submit", WORKLOAD, "--address", head.dashboard_url],
    }


def _display(argv: list[str], scratch: str, head: _ray.LocalHead) -> str:
    """The command as a reader would type it: venv tools by name, scratch paths and ports generic."""
    text = (
        " ".join(argv).replace(sys.executable, "python").replace(str(Path(sys.executable).parent) + "/", "")
    )
    return text.replace(scratch, "<scratch>").replace(str(head.dashboard_port), "<dashboard-port>")


def run_checked(variant: str, argv: list[str], dashboard_url: str) -> _ray.TimedRun:
    """One timed command that must succeed and show the workload's success line."""
    done = _ray.timed(argv, cwd=common.REPO, env=_ray.client_env(), timeout_s=600)
    if done.returncode != 0 or SUCCESS_LINE not in done.output:
        reason = _ray.job_failure_reason(dashboard_url, done.output)
        raise RuntimeError(f"{variant} failed (exit {done.returncode}; {reason}):\n{done.output[-3000:]}")
    if variant == "workloads run" and "reusing local Ray head" not in done.output:
        raise RuntimeError(f"`workloads run` did not reuse the benchmark's head:\n{done.output[-2000:]}")
    return done


def main(argv: list[str] | None = None) -> int:
    args = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=5).parse_args(argv)
    _ray.require_workloads_cli()
    run = common.Run(NAME, "Job submission overhead (local Ray head)", __doc__.split("\n\n")[0], args)
    repeat = max(1, args.repeat)
    from workloads.catalog import get_workload
    from workloads.jobs import stage_files

    samples: dict[str, list[dict[str, Any]]] = {}
    shown: dict[str, str] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as scratch:
        local_dir = Path(scratch) / "local"
        staging = stage_files(get_workload(WORKLOAD), Path(scratch) / "staging")
        common.progress(NAME, "starting the local Ray head")
        head = _ray.LocalHead(local_dir, num_cpus=2)
        try:
            head.start()
            variants = commands(head, local_dir, staging)
            samples = {variant: [] for variant in variants}
            shown = {variant: _display(argv_, scratch, head) for variant, argv_ in variants.items()}
            if args.quick:  # smoke test: the two compared commands once each, no warm-up
                variants = {k: v for k, v in variants.items() if k != "workloads submit"}
                samples = {variant: [] for variant in variants}
            else:
                for variant, argv_ in variants.items():
                    common.progress(NAME, f"warm-up: {variant}")
                    _ray.with_retries(partial(run_checked, variant, argv_, head.dashboard_url), failures)
            for index in range(repeat):
                for variant, argv_ in variants.items():
                    common.progress(NAME, f"run {index + 1}/{repeat}: {variant}")
                    done = _ray.with_retries(
                        partial(run_checked, variant, argv_, head.dashboard_url), failures
                    )
                    samples[variant].append(
                        {"wall_s": done.wall_s, "submitted_s": done.first(SUBMITTED_MARKERS[variant])}
                    )
        finally:
            common.progress(NAME, "stopping the local Ray head")
            head.stop()

    baseline = common.summarize([s["wall_s"] for s in samples["ray job submit"]])
    rows = []
    results: dict[str, Any] = {}
    for variant in samples:
        wall = common.summarize([s["wall_s"] for s in samples[variant]])
        submitted = common.summarize(
            [s["submitted_s"] for s in samples[variant] if s["submitted_s"] is not None]
        )
        ratio = common.ratio(wall["median"], baseline["median"])
        results[variant] = {
            "command": shown[variant],
            "wall_s": wall,
            "submitted_s": submitted,
            "ratio": ratio,
        }
        rows.append(
            [
                variant,
                common.fmt_s(wall),
                common.fmt_x(ratio),
                common.fmt_s(submitted),
                f"`{shown[variant]}`",
            ]
        )
    run_ratio = results["workloads run"]["ratio"]
    targets = [common.target("workloads run / ray job submit (wall, median)", run_ratio, TARGET_RATIO)]
    notes = [
        "Wall = the whole command until it exits after the job finished (both follow the job to the end). "
        "'until submitted' = time to the command's own submit line (`[workloads] submitting ...`, printed "
        "just before the Jobs API call; `Job '...' submitted successfully`, printed just after it).",
        "Both upload the same staged files (same content hash, so the cluster reuses the package after the "
        "warm-up) and run the same entrypoint on the same head.",
    ]
    cli_follow = results["workloads run"]["wall_s"]["median"] - (
        results["workloads run"]["submitted_s"]["median"] or 0
    )
    ray_follow = baseline["median"] - (results["ray job submit"]["submitted_s"]["median"] or 0)
    notes.append(
        f"Median time after submission until exit: workloads run {cli_follow:.2f} s, ray job submit {ray_follow:.2f} s "
        "(`workloads` polls status + logs every 1 s; `ray job submit` tails the log stream)."
    )
    if failures:
        notes.append(
            f"{len(failures)} run(s) failed and were retried (listed in results.failures); first failure: "
            + failures[0].splitlines()[0]
        )
    if targets[0]["met"] is False:
        notes.append(
            "Target MISSED: the breakdown above shows where the extra time goes (before submission = CLI start, "
            "imports and staging; after = following the job)."
        )
    run.write(
        settings={"workload": WORKLOAD, "num_cpus": 2},
        targets=targets,
        table={
            "columns": [
                "variant",
                "wall s median (min-max)",
                "vs ray job submit",
                "until submitted s",
                "command",
            ],
            "rows": rows,
        },
        notes=notes,
        results={"variants": results, "raw": samples, "failures": failures},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

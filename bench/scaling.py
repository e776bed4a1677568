"""Scaling: program evaluation time with 1, 10 and 100 RayJobs and 1, 10 and 100 worker groups.

The real ``__main__.py`` runs under mocks (``tests.pulumi_harness.run_program("dev", overrides, crd_schemas=True)``)
in THIS process after a warm-up run, so imports are paid once and only the per-item cost remains.
Sizes and repetitions are interleaved. For each dimension the result file gives the per-item cost
as the least-squares slope of median time over size, and the ratio

    per-item(10 -> 100) / per-item(1 -> 10)

which is ~1 for linear growth and ~10 for quadratic growth; above 2 the run is flagged
superlinear. RayJobs reference the ``quickstart`` workload; worker group names are unique DNS labels.

Run: ``python -m bench.scaling [--repeat 7]``
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/scaling.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common

NAME = "scaling"
SIZES = (1, 10, 100)
QUICK_SIZES = (1, 3, 10)
SUPERLINEAR_RATIO = 2.0
STACK = "dev"


def ray_jobs(count: int) -> dict[str, Any]:
    """``count`` RayJobs running the quickstart workload on the shared cluster."""
    return {"rayJobs": [{"name": f"job-{index:03d}", "workload": "quickstart"} for index in range(count)]}


def worker_groups(count: int) -> dict[str, Any]:
    """``count`` small CPU worker groups with unique DNS-label names."""
    return {
        "workerGroups": [
            {
                "name": f"wg-{index:03d}",
                "instanceType": "m6i.2xlarge",
                "replicas": 0,
                "minReplicas": 0,
                "maxReplicas": 1,
                "cpu": "1",
                "memory": "4Gi",
            }
            for index in range(count)
        ]
    }


DIMENSIONS: dict[str, Callable[[int], dict[str, Any]]] = {"rayJobs": ray_jobs, "workerGroups": worker_groups}


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``y`` over ``x``."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    denominator = sum((x - mean_x) ** 2 for x, _ in points)
    if denominator == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / denominator


def growth_ratio(sizes: tuple[int, ...], medians: dict[int, float], noise_s: float) -> float | None:
    """Per-item cost over the upper interval divided by the per-item cost over the lower one.

    ``None`` when the growth is below the noise: the whole small -> large increase is no larger than
    ``noise_s`` (the spread of repeated runs at one size), or either interval did not grow at all.
    """
    small, middle, large = sizes
    if medians[large] - medians[small] <= noise_s:
        return None
    lower = (medians[middle] - medians[small]) / (middle - small)
    upper = (medians[large] - medians[middle]) / (large - middle)
    return common.ratio(upper, lower) if lower > 0 and upper > 0 else None


def _verdict(ratio: float | None, superlinear: bool) -> str:
    if ratio is None:
        return "below noise"
    return "SUPERLINEAR" if superlinear else "linear"


def measure(overrides: dict[str, Any]) -> tuple[float, int]:
    """Seconds for one program run and the number of resources it registered."""
    from tests.pulumi_harness import run_program

    gc.collect()
    start = time.perf_counter()
    run = run_program(STACK, overrides, crd_schemas=True)
    elapsed = time.perf_counter() - start
    if run.error is not None:
        raise RuntimeError(f"__main__.py failed with {sorted(overrides)} overrides: {run.error!r}")
    return elapsed, len(run.resources)


def main(argv: list[str] | None = None) -> int:
    args = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=7).parse_args(argv)
    run = common.Run(NAME, "Scaling with RayJobs and worker groups", __doc__.split("\n\n")[0], args)
    sizes = QUICK_SIZES if args.quick else SIZES
    repeat = max(1, args.repeat)
    if str(common.REPO) not in sys.path:
        sys.path.insert(0, str(common.REPO))
    measure({})  # warm-up: imports and first-run caches are not part of the per-item cost

    times: dict[str, dict[int, list[float]]] = {dim: {size: [] for size in sizes} for dim in DIMENSIONS}
    resources: dict[str, dict[int, int]] = {dim: {} for dim in DIMENSIONS}
    for index in range(repeat):
        for dimension, build in DIMENSIONS.items():
            for size in sizes:
                common.progress(NAME, f"run {index + 1}/{repeat}: {size} {dimension}")
                elapsed, count = measure(build(size))
                times[dimension][size].append(elapsed)
                resources[dimension][size] = count

    results: dict[str, Any] = {}
    rows: list[list[str]] = []
    targets: list[dict[str, Any]] = []
    notes: list[str] = []
    for dimension in DIMENSIONS:
        summaries = {size: common.summarize(times[dimension][size]) for size in sizes}
        medians = {size: float(summaries[size]["median"]) for size in sizes}
        per_item = slope([(float(size), medians[size]) for size in sizes])
        noise = max(float(summaries[size]["max"]) - float(summaries[size]["min"]) for size in sizes)
        ratio = growth_ratio(sizes, medians, noise)
        added = resources[dimension][sizes[-1]] - resources[dimension][sizes[0]]
        resources_per_item = added / (sizes[-1] - sizes[0])
        superlinear = ratio is not None and ratio > SUPERLINEAR_RATIO
        results[dimension] = {
            "sizes": list(sizes),
            "time_s": {str(size): summaries[size] for size in sizes},
            "resources": {str(size): resources[dimension][size] for size in sizes},
            "resources_per_item": resources_per_item,
            "per_item_s": per_item,
            "growth_ratio": ratio,
            "superlinear": superlinear,
            "noise_s": noise,
        }
        targets.append(
            common.target(
                f"{dimension}: per-item(10->100) / per-item(1->10)",
                ratio,
                SUPERLINEAR_RATIO,
                unmeasured="below noise (no measurable per-item cost)",
            )
        )
        for size in sizes:
            rows.append(
                [
                    dimension,
                    str(size),
                    str(resources[dimension][size]),
                    common.fmt_s(summaries[size]),
                    ""
                    if size != sizes[-1]
                    else (f"{per_item * 1000:.2f} ms" if per_item is not None else "n/a"),
                    "" if size != sizes[-1] else common.fmt_x(ratio),
                    "" if size != sizes[-1] else _verdict(ratio, superlinear),
                ]
            )
        if resources_per_item == 0:
            notes.append(
                f"{dimension}: the program registers the same number of resources at every size "
                f"({resources[dimension][sizes[0]]}); today {dimension} only pass config validation, so this "
                "measures validation, not resource creation. Rerun once the component that consumes them "
                "is merged."
            )
        else:
            notes.append(f"{dimension}: {resources_per_item:.2f} resources registered per item.")
        if ratio is None:
            notes.append(
                f"{dimension}: going from {sizes[0]} to {sizes[-1]} items adds "
                f"{(medians[sizes[-1]] - medians[sizes[0]]) * 1000:.1f} ms, within the run-to-run spread "
                f"({noise * 1000:.1f} ms): no measurable per-item cost, so no growth ratio."
            )
        elif superlinear:
            notes.append(
                f"{dimension}: per-item cost grows {ratio:.1f}x from the lower to the upper interval: "
                "quadratic-looking behaviour; profile `run_program` with this many items."
            )
    run.write(
        settings={"stack": STACK, "sizes": list(sizes), "superlinear_above": SUPERLINEAR_RATIO},
        targets=targets,
        table={
            "columns": [
                "dimension",
                "items",
                "resources",
                "eval s median (min-max)",
                "per item (LSQ slope)",
                "per-item 10->100 / 1->10",
                "verdict",
            ],
            "rows": rows,
        },
        notes=notes,
        results=results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

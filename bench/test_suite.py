"""Test suite wall time: the unit tests (``-m "not integration"``) and the integration tests.

Each suite runs in a fresh ``pytest`` process (``python -m pytest -q -p no:cacheprovider``), the
suites alternating ``--repeat`` times; the median wall time is reported with the pytest summary line
(passed / failed / skipped counts), so a fast-but-broken suite cannot pass for a fast one.
``tests/bench`` is left out: its smoke test runs the benchmark scripts, this one included.

Target (issue 15): the unit suite within ``UNIT_LIMIT_S`` (60 s) on 2 cores, twice: ``unit`` is the
README's unit command with Python's default bytecode cache, ``unit_cold`` the same command as a fresh
clone runs it where PYTHONDONTWRITEBYTECODE is set (:data:`COLD_SUITES`); both on both cores with
pytest-xdist (``-n 2 --dist worksteal``: an idle worker takes queued tests from the busy one; a
mocked run two tests share may then be made in both workers, at ~0.25 s each); ``unit_serial`` is the
same selection in one process, for information. To say where the unit suite's time goes, the unit
runs set ``RAY_ON_EKS_HARNESS_LOG`` (tests/pulumi_harness.py):
every mocked run of ``__main__.py`` and every copy of a memoized run is logged with its seconds and
test, and the result counts them, sums them and names the test files that spend the most in them
(the serial run's profile is the one quoted); each pytest process also logs its garbage collector's
seconds (tests/conftest.py sets the thresholds: ``GC_THRESHOLDS``).

``--quick`` (smoke test) only times ``tests/components/test_versions.py`` and collects, without
running, the integration tests; its numbers say nothing about the suites.

``--suites`` times a subset (the integration suite takes ~15 min a repeat); the suites it leaves out
are carried over from the previous result file in ``--output-dir``, marked with that run's date.

Run: ``python -m bench.test_suite [--repeat 3] [--suites unit unit_serial integration]``
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/test_suite.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common

NAME = "test_suite"
# -rfE: pytest's short summary names each failed / erroring test (kept in the result).
PYTEST = (sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--ignore=tests/bench")
UNIT_WORKERS = 2  # the machine's cores (pytest-xdist workers)
PARALLEL = ("-n", str(UNIT_WORKERS), "--dist", "worksteal")
SUITES: dict[str, tuple[str, ...]] = {
    "unit": ("-m", "not integration", *PARALLEL),
    "unit_cold": ("-m", "not integration", *PARALLEL),
    "unit_serial": ("-m", "not integration"),
    "integration": ("-m", "integration"),
}
QUICK_SUITES: dict[str, tuple[str, ...]] = {
    "unit": ("-m", "not integration", *PARALLEL, "tests/components/test_versions.py"),
    "unit_cold": ("-m", "not integration", *PARALLEL, "tests/components/test_versions.py"),
    "unit_serial": ("-m", "not integration", "tests/components/test_versions.py"),
    "integration": ("-m", "integration", "--collect-only"),
}
# How many processes each suite runs its tests in (for the harness profile's share of the time).
WORKERS = {"unit": UNIT_WORKERS, "unit_cold": UNIT_WORKERS, "unit_serial": 1, "integration": 1}
COLD_SUITES = frozenset({"unit_cold"})
"""Suites timed as a fresh clone runs where the environment sets PYTHONDONTWRITEBYTECODE (this
project's CI machine does): no bytecode cache of the project's modules, none written, so every
process compiles them and pytest rewrites every test module it imports. The other suites run with
Python's default (bytecode cached in ``__pycache__``; the suites' first repetition warms it)."""
NO_BYTECODE_ENV = "PYTHONDONTWRITEBYTECODE"
_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|tests? collected)")
NO_TESTS_COLLECTED = 5  # pytest's exit status when nothing matched the marker
UNIT_LIMIT_S = 60.0
HARNESS_LOG_ENV = "RAY_ON_EKS_HARNESS_LOG"  # tests/pulumi_harness.py (not imported: it imports pulumi)


def summary_counts(output: str) -> dict[str, int]:
    """``{"passed": 120, "skipped": 2, ...}`` from pytest's last summary line."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    counts: dict[str, int] = {}
    for line in reversed(lines[-3:]):
        found = _SUMMARY.findall(line)
        if found:
            for number, word in found:
                key = (
                    "collected"
                    if "collected" in word
                    else word.rstrip("s")
                    if word.startswith("error")
                    else word
                )
                counts[key] = counts.get(key, 0) + int(number)
            break
    return counts


def harness_profile(lines: list[str], wall_s: float, *, top: int = 6, workers: int = 1) -> dict[str, Any]:
    """What the harness log says: mocked program runs (those that evaluated the whole program and
    those that stopped at a config error), runs repeating an input already evaluated, copies of
    memoized runs, their seconds and share of the suite's process time (wall x ``workers``), the
    test files spending the most in them, and the garbage collector's seconds and collections summed
    over the pytest processes (``gc`` events, one per process, from tests/conftest.py)."""
    events = [json.loads(line) for line in lines if line.strip()]
    by_file: Counter[str] = Counter()
    runs_by_file: Counter[str] = Counter()
    full: list[float] = []
    failed: list[float] = []
    repeated: list[float] = []
    copies: list[float] = []
    seen: set[str] = set()
    collector = [event for event in events if event["event"] == "gc"]
    for event in events:
        if event["event"] == "gc":
            continue
        test_file = event.get("test", "").split("::")[0] or "(outside a test)"
        by_file[test_file] += event["seconds"]
        if event["event"] == "copy":
            copies.append(event["seconds"])
            continue
        runs_by_file[test_file] += 1
        if not event.get("ok", True):
            failed.append(event["seconds"])
            continue
        full.append(event["seconds"])
        key = event.get("input")
        if key is not None and key in seen:
            repeated.append(event["seconds"])
        elif key is not None:
            seen.add(key)
    total = sum(by_file.values())
    return {
        "full_runs": len(full),
        "full_run_s": round(sum(full), 3),
        "full_run_median_s": round(statistics.median(full), 3) if full else None,
        "failed_runs": len(failed),
        "failed_run_s": round(sum(failed), 3),
        "repeated_runs": len(repeated),
        "repeated_run_s": round(sum(repeated), 3),
        "copies": len(copies),
        "copy_s": round(sum(copies), 3),
        "share_of_wall": round(total / (wall_s * workers), 3) if wall_s > 0 else None,
        # tests/conftest.py: each pytest process's garbage-collection time (none logged: None)
        "gc_s": round(sum(event["seconds"] for event in collector), 3) if collector else None,
        "gc_processes": len(collector),
        "gc_collections": sum(event.get("collections", 0) for event in collector),
        "gc_full_collections": sum(event.get("full_collections", 0) for event in collector),
        "gc_thresholds": sorted({tuple(event["thresholds"]) for event in collector if "thresholds" in event}),
        "workers": workers,
        "top_files": [
            {"file": name, "seconds": round(spent, 2), "runs": runs_by_file[name]}
            for name, spent in by_file.most_common(top)
        ],
    }


def profile_note(profile: dict[str, Any], wall_s: float) -> str:
    """One sentence from :func:`harness_profile` for the notes."""
    files = "; ".join(f"{f['file']} {f['seconds']:.1f} s ({f['runs']} runs)" for f in profile["top_files"])
    share = profile["share_of_wall"]
    return (
        f"unit suite profile: {profile['full_runs']} mocked runs of the whole __main__.py took "
        f"{profile['full_run_s']:.1f} s (median {profile['full_run_median_s']} s each; "
        f"{profile['repeated_runs']} of them, {profile['repeated_run_s']:.1f} s, repeat an input already "
        f"run), {profile['failed_runs']} runs stopped by a config error {profile['failed_run_s']:.1f} s, "
        f"{profile['copies']} copies of memoized runs {profile['copy_s']:.1f} s: "
        f"{100 * (share or 0):.0f}% of the {wall_s:.0f} s wall"
        + (f" x {profile['workers']} workers" if profile.get("workers", 1) > 1 else "")
        + f". Most time in them: {files or 'none'}"
        + (
            ""
            if profile.get("gc_s") is None
            else f". Garbage collection: {profile['gc_s']:.1f} s in {profile['gc_processes']} pytest "
            f"process(es), {profile['gc_collections']} collections of which {profile['gc_full_collections']} "
            "full (tests/conftest.py GC_THRESHOLDS)"
        )
    )


def failed_tests(output: str, *, limit: int = 20) -> list[str]:
    """The ``FAILED ...`` / ``ERROR ...`` lines of pytest's short summary (``-rfE``), at most ``limit``."""
    lines = [line.strip() for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return [line[:300] for line in lines[:limit]]


def project_bytecode_dirs(repo: Path) -> list[Path]:
    """The ``__pycache__`` directories of the project's own code: under ``repo``, outside hidden
    directories (``.git``, ``.venv``) and any virtual environment (a directory with ``pyvenv.cfg``)."""
    found: list[Path] = []
    for top in sorted(repo.iterdir()):
        if top.name.startswith(".") or not top.is_dir() or (top / "pyvenv.cfg").exists():
            continue
        if top.name == "__pycache__":
            found.append(top)
            continue
        found.extend(sorted(p for p in top.rglob("__pycache__") if p.is_dir()))
    return found


def suite_env(environ: Mapping[str, str], *, cold: bool) -> dict[str, str]:
    """The environment a suite's pytest runs with: ``cold`` sets PYTHONDONTWRITEBYTECODE, the others
    leave it out (Python's default: bytecode is cached)."""
    env = {key: value for key, value in environ.items() if key != NO_BYTECODE_ENV}
    if cold:
        env[NO_BYTECODE_ENV] = "1"
    return env


def run_suite(
    arguments: tuple[str, ...], *, harness_log: bool = False, workers: int = 1, cold: bool = False
) -> dict[str, Any]:
    """One fresh pytest process: wall time, exit status, summary counts and last line (and, with
    ``harness_log``, the harness profile of its mocked program runs). ``cold``: the project's bytecode
    caches are removed first and none are written (:data:`COLD_SUITES`)."""
    if cold:
        for directory in project_bytecode_dirs(common.REPO):
            shutil.rmtree(directory, ignore_errors=True)
    env = suite_env(os.environ, cold=cold)
    log_path = None
    if harness_log:
        handle, log_path = tempfile.mkstemp(prefix="harness-", suffix=".jsonl")
        os.close(handle)
        env[HARNESS_LOG_ENV] = log_path
    start = time.perf_counter()
    done = subprocess.run(
        [*PYTEST, *arguments], cwd=common.REPO, capture_output=True, text=True, check=False, env=env
    )
    wall = time.perf_counter() - start
    tail = [line for line in done.stdout.strip().splitlines() if line.strip()][-1:] or [""]
    result: dict[str, Any] = {
        "wall_s": wall,
        "returncode": done.returncode,
        "counts": summary_counts(done.stdout),
        "summary": tail[0].strip("= "),
        "failures": failed_tests(done.stdout),
    }
    if log_path is not None:
        with open(log_path, encoding="utf-8") as log:
            result["harness"] = harness_profile(log.read().splitlines(), wall, workers=workers)
        os.unlink(log_path)
    return result


def carried_suites(
    previous: dict[str, Any] | None, timed: list[str]
) -> tuple[dict[str, Any], list[list[str]]]:
    """Results and table rows of the suites a previous result file timed and this run does not, each
    marked with the previous run's start time (``carried_from``)."""
    if not previous or previous.get("benchmark") != NAME or previous.get("settings", {}).get("quick"):
        return {}, []
    when = str(previous.get("started_at", "an earlier run"))
    results: dict[str, Any] = {}
    rows: list[list[str]] = []
    for row in previous.get("table", {}).get("rows", []):
        suite = row[0]
        if suite in timed or suite not in SUITES or suite not in previous.get("results", {}):
            continue
        carried = dict(previous["results"][suite])
        carried["carried_from"] = carried.get("carried_from", when)
        results[suite] = carried
        status = str(row[-1]).split(" (carried", 1)[0]
        rows.append([*row[:-1], f"{status} (carried from {carried['carried_from']})"])
    return results, rows


def unit_target(wall_s: float | None, *, cold: bool = False) -> dict[str, Any]:
    """The issue's limit on the unit suite's median wall time (``cold``: as a fresh clone, see
    :data:`COLD_SUITES`)."""
    name = "unit suite wall time (-m 'not integration')" + (
        ", fresh clone, no bytecode cache" if cold else ""
    )
    return common.target(name, wall_s, UNIT_LIMIT_S, unit=" s")


def main(argv: list[str] | None = None) -> int:
    args_parser = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=3)
    args_parser.add_argument(
        "--suites",
        nargs="+",
        choices=sorted(SUITES),
        default=list(SUITES),
        help="which suites to time (default: all)",
    )
    args = args_parser.parse_args(argv)
    run = common.Run(NAME, "Test suite wall time", __doc__.split("\n\n")[0], args)
    suites = {
        name: arguments
        for name, arguments in (QUICK_SUITES if args.quick else SUITES).items()
        if name in args.suites
    }
    repeat = max(1, args.repeat)
    samples: dict[str, list[dict[str, Any]]] = {suite: [] for suite in suites}
    for index in range(repeat):
        for suite, arguments in suites.items():
            common.progress(NAME, f"run {index + 1}/{repeat}: {suite}")
            samples[suite].append(
                run_suite(
                    arguments,
                    harness_log=suite.startswith("unit"),
                    workers=WORKERS[suite],
                    cold=suite in COLD_SUITES,
                )
            )

    rows: list[list[str]] = []
    results: dict[str, Any] = {}
    notes: list[str] = []
    targets: list[dict[str, Any]] = []
    for suite, arguments in suites.items():
        wall = common.summarize([sample["wall_s"] for sample in samples[suite]])
        last = samples[suite][-1]
        ok = all(sample["returncode"] in (0, NO_TESTS_COLLECTED) for sample in samples[suite])
        results[suite] = {
            "command": " ".join(["python", *PYTEST[1:], *arguments]),
            "wall_s": wall,
            "ok": ok,
            "counts": last["counts"],
            "summary": last["summary"],
            "returncodes": [sample["returncode"] for sample in samples[suite]],
        }
        rows.append(
            [
                suite,
                f"`pytest {shlex.join(arguments)}`",
                common.fmt_s(wall),
                last["summary"] or "(no summary)",
                "ok" if ok else "FAILED",
            ]
        )
        if not ok:
            failures = sorted({f for sample in samples[suite] for f in sample.get("failures", [])})
            results[suite]["failures"] = failures
            notes.append(
                f"{suite}: pytest exited with {results[suite]['returncodes']}; "
                + ("; ".join(failures) if failures else "see the summary.")
            )
        if "harness" in last:
            results[suite]["harness"] = last["harness"]
        if suite in ("unit", "unit_cold"):
            targets.append(
                unit_target(wall.get("median") if not args.quick else None, cold=suite in COLD_SUITES)
            )
    # The profile note: the serial run's when there is one (one process: its attribution is exact).
    for suite in ("unit_serial", "unit"):
        if "harness" in results.get(suite, {}):
            notes.append(f"{suite}: " + profile_note(results[suite]["harness"], samples[suite][-1]["wall_s"]))
            break
    if args.quick:
        notes.append("--quick: one small test file and an integration collect-only; not the suites' times.")
    previous_path = args.output_dir / f"{NAME}.json"
    previous = json.loads(previous_path.read_text()) if previous_path.is_file() and not args.quick else None
    carried, carried_rows = carried_suites(previous, list(suites))
    results.update(carried)
    rows += carried_rows
    if carried:
        notes.append(
            f"Not timed in this run (--suites): {', '.join(carried)}, carried over from the result of "
            + ", ".join(sorted({str(r["carried_from"]) for r in carried.values()}))
            + "."
        )
    skipped = sorted(set(SUITES) - set(suites) - set(carried))
    if skipped:
        notes.append(f"Not timed in this run: {', '.join(skipped)} (--suites).")
    notes.append("`tests/bench` is excluded (its smoke test runs these benchmark scripts).")
    if any(suite in COLD_SUITES for suite in suites) or NO_BYTECODE_ENV in os.environ:
        notes.append(
            "Bytecode: unit_cold removes the project's `__pycache__` directories before each run and sets "
            f"{NO_BYTECODE_ENV}=1, as a fresh clone runs on a machine whose environment sets it (this "
            "project's CI machine does): every process compiles the project's modules and pytest rewrites "
            "every test module it imports. The other suites run with Python's default, bytecode cached "
            f"({NO_BYTECODE_ENV} removed from their environment; this run's own environment "
            + ("sets it" if NO_BYTECODE_ENV in os.environ else "does not")
            + ")."
        )
    run.write(
        settings={
            "pytest": " ".join(["python", *PYTEST[1:]]),
            "suites": {k: list(v) for k, v in suites.items()},
        },
        targets=targets,
        table={
            "columns": ["suite", "selection", "wall s median (min-max)", "pytest summary", "status"],
            "rows": rows,
        },
        notes=notes,
        results=results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

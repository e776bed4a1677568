"""Test suite wall time: the unit tests (``-m "not integration"``) and the integration tests.

Each suite runs in a fresh ``pytest`` process (``python -m pytest -q -p no:cacheprovider``), the
two alternating ``--repeat`` times; the median wall time is reported with the pytest summary line
(passed / failed / skipped counts), so a fast-but-broken suite cannot pass for a fast one.
``tests/bench`` is left out: its smoke test runs the benchmark scripts, this one included.

``--quick`` (smoke test) only times ``tests/components/test_versions.py`` and collects, without
running, the integration tests; its numbers say nothing about the suites.

Run: ``python -m bench.test_suite [--repeat 3] [--suites unit integration]``
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/test_suite.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common

NAME = "test_suite"
PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ignore=tests/bench")
SUITES: dict[str, tuple[str, ...]] = {
    "unit": ("-m", "not integration"),
    "integration": ("-m", "integration"),
}
QUICK_SUITES: dict[str, tuple[str, ...]] = {
    "unit": ("-m", "not integration", "tests/components/test_versions.py"),
    "integration": ("-m", "integration", "--collect-only"),
}
_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|tests? collected)")
NO_TESTS_COLLECTED = 5  # pytest's exit status when nothing matched the marker


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


def run_suite(arguments: tuple[str, ...]) -> dict[str, Any]:
    """One fresh pytest process: wall time, exit status, summary counts and last line."""
    start = time.perf_counter()
    done = subprocess.run([*PYTEST, *arguments], cwd=common.REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    tail = [line for line in done.stdout.strip().splitlines() if line.strip()][-1:] or [""]
    return {
        "wall_s": wall,
        "returncode": done.returncode,
        "counts": summary_counts(done.stdout),
        "summary": tail[0].strip("= "),
    }


def main(argv: list[str] | None = None) -> int:
    args_parser = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=3)
    args_parser.add_argument(
        "--suites",
        nargs="+",
        choices=sorted(SUITES),
        default=list(SUITES),
        help="which suites to time (default: both)",
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
            samples[suite].append(run_suite(arguments))

    rows: list[list[str]] = []
    results: dict[str, Any] = {}
    notes: list[str] = []
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
            notes.append(f"{suite}: pytest exited with {results[suite]['returncodes']}; see the summary.")
    if args.quick:
        notes.append("--quick: one small test file and an integration collect-only; not the suites' times.")
    skipped = sorted(set(SUITES) - set(suites))
    if skipped:
        notes.append(f"Not timed in this run: {', '.join(skipped)} (--suites).")
    notes.append("`tests/bench` is excluded (its smoke test runs these benchmark scripts).")
    run.write(
        settings={
            "pytest": " ".join(["python", *PYTEST[1:]]),
            "suites": {k: list(v) for k, v in suites.items()},
        },
        targets=[],
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

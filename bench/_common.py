"""Shared plumbing of the benchmark scripts: arguments, machine facts, statistics, result files.

Every benchmark measures the things it compares side by side in one run and reports ratios:
absolute seconds on a shared 2-core machine are noise, the ratio of two interleaved measurements
is not. Each script writes ``bench/results/<name>.json`` (the same top-level fields for all) and
``bench/report.py`` renders ``bench/RESULTS.md`` from those files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
SCHEMA_VERSION = 1

# Fields every result file has (the smoke test checks them; report.py renders them).
COMMON_FIELDS = (
    "schema_version",
    "benchmark",
    "title",
    "description",
    "command",
    "started_at",
    "duration_s",
    "settings",
    "machine",
    "versions",
    "targets",
    "table",
    "notes",
    "results",
)


def parser(name: str, description: str, *, default_repeat: int) -> argparse.ArgumentParser:
    """The argument parser every benchmark shares (``--repeat``, ``--quick``, ``--output-dir``)."""
    result = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    result.add_argument(
        "--repeat",
        type=int,
        default=default_repeat,
        help=f"measurements per variant; the median is reported (default {default_repeat})",
    )
    result.add_argument(
        "--quick",
        action="store_true",
        help="smallest settings (for the smoke test): fewer sizes / epochs; numbers are not meaningful",
    )
    result.add_argument(
        "--output-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where <name>.json is written (default {RESULTS_DIR.relative_to(REPO)})",
    )
    return result


def machine() -> dict[str, Any]:
    """CPU count, memory, CPU model, OS and load: what the numbers were measured on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu_model": model,
        "platform": platform.platform(),
        # The load when the run started: a busy machine makes the absolute numbers meaningless.
        "loadavg_1m_5m_15m": [round(value, 2) for value in load],
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Python and the packages the benchmarks exercise."""
    return {
        "python": platform.python_version(),
        "pulumi": _version("pulumi"),
        "pulumi_aws": _version("pulumi-aws"),
        "pulumi_kubernetes": _version("pulumi-kubernetes"),
        "pulumi_eks": _version("pulumi-eks"),
        "pydantic": _version("pydantic"),
        "ray": _version("ray"),
        "torch": _version("torch"),
        "pytest": _version("pytest"),
    }


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw samples (seconds or whatever unit the caller uses)."""
    values = [float(value) for value in samples]
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "samples": []}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": values,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, ``None`` when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def target(
    name: str, value: float | None, limit: float, *, unit: str = "x", unmeasured: str = "not measured"
) -> dict[str, Any]:
    """A target ``value <= limit``; ``met`` is ``None`` (verdict ``unmeasured``) without a value."""
    met = None if value is None else value <= limit
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "unit": unit,
        "met": met,
        "verdict": unmeasured if met is None else ("met" if met else "MISSED"),
    }


def fmt_s(summary: dict[str, Any]) -> str:
    """``median (min-max)`` in seconds for a table cell."""
    if not summary or summary.get("median") is None:
        return "n/a"
    return f"{summary['median']:.3f} ({summary['min']:.3f}-{summary['max']:.3f})"


def fmt_x(value: float | None, digits: int = 2) -> str:
    """A ratio for a table cell."""
    return "n/a" if value is None else f"{value:.{digits}f}x"


class Run:
    """One benchmark run: collects settings and results, then writes the JSON file."""

    def __init__(self, name: str, title: str, description: str, args: argparse.Namespace) -> None:
        self.name = name
        self.title = title
        self.description = description
        self.args = args
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.machine = machine()
        self.versions = versions()

    def command(self) -> str:
        """The exact command that reproduces this run (from the repo root)."""
        return shlex.join(["python", "-m", f"bench.{self.name}", *sys.argv[1:]])

    def write(
        self,
        *,
        settings: dict[str, Any],
        targets: list[dict[str, Any]],
        table: dict[str, Any],
        notes: list[str],
        results: dict[str, Any],
        extra_tables: list[dict[str, Any]] | None = None,
    ) -> Path:
        """Write ``<output-dir>/<name>.json`` and print where it went."""
        document = {
            "schema_version": SCHEMA_VERSION,
            "benchmark": self.name,
            "title": self.title,
            "description": self.description,
            "command": self.command(),
            "started_at": self.started_at,
            "duration_s": round(time.monotonic() - self.started, 2),
            "settings": {"repeat": self.args.repeat, "quick": self.args.quick, **settings},
            "machine": self.machine,
            "versions": self.versions,
            "targets": targets,
            "table": table,
            "extra_tables": extra_tables or [],
            "notes": notes,
            "results": results,
        }
        out_dir: Path = self.args.output_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
        for item in targets:
            verdict = item["verdict"]
            print(f"[bench.{self.name}] target {item['name']}: {item['value']} <= {item['limit']}: {verdict}")
        print(f"[bench.{self.name}] wrote {path}")
        return path


def progress(name: str, message: str) -> None:
    """A progress line on stderr (stdout stays for the summary)."""
    print(f"[bench.{name}] {message}", file=sys.stderr, flush=True)

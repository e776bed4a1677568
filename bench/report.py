"""Render ``bench/RESULTS.md`` from the result files ``bench/results/<name>.json``.

The document is generated, never edited by hand: rerun a benchmark, then ``python -m bench.report``.
Every number in it comes from a result file, with the command, machine and versions it was
measured with; a missed target is printed as MISSED next to the evidence the benchmark recorded.

Run: ``python -m bench.report [--results-dir bench/results] [--output bench/RESULTS.md]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/report.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common

ORDER = (
    "program_eval",
    "deploy_path",
    "scaling",
    "submission",
    "training",
    "training_overhead",
    "batch_inference",
    "test_suite",
    "serving",
)
RERUN = {
    "program_eval": "python -m bench.program_eval --repeat 7",
    "deploy_path": "python -m bench.deploy_path",
    "scaling": "python -m bench.scaling --repeat 7",
    "submission": "python -m bench.submission --repeat 5",
    "training": "python -m bench.training --repeat 3",
    "training_overhead": "python -m bench.training_overhead --repeat 3",
    "batch_inference": "python -m bench.batch_inference --repeat 5",
    "test_suite": "python -m bench.test_suite --repeat 3",
    "serving": "python -m bench.serving --repeat 3 --profile",
}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _verdict(item: dict[str, Any]) -> str:
    if item["met"] is None:
        return str(item.get("verdict") or "not measured")
    return "met" if item["met"] else "**MISSED**"


def _value(item: dict[str, Any]) -> str:
    value = item.get("value")
    if value is None:
        return "n/a"
    return f"{value:.2f}{item.get('unit', '')}"


def render_one(doc: dict[str, Any]) -> list[str]:
    """The section of one benchmark."""
    machine, versions = doc["machine"], doc["versions"]
    lines = [f"## {doc['title']}", "", doc["description"], ""]
    lines.append(f"- command: `{doc['command']}` (from the repo root, venv python)")
    lines.append(
        f"- measured {doc['started_at']} in {doc['duration_s']:.0f} s on {machine['nproc']} CPUs "
        f"({machine['cpu_model']}), {machine['memory_gib']} GiB, load average at start "
        f"{' / '.join(str(x) for x in machine['loadavg_1m_5m_15m'])}"
    )
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    lines.append(f"- versions: {shown}")
    lines.append(
        f"- repetitions: {doc['settings'].get('repeat')}"
        + (" (**--quick: not meaningful**)" if doc["settings"].get("quick") else "")
    )
    lines.append("")
    lines += table(doc["table"]["columns"], doc["table"]["rows"])
    for extra in doc.get("extra_tables") or []:
        lines += ["", f"**{extra['title']}**", ""]
        lines += table(extra["columns"], extra["rows"])
    if doc["targets"]:
        lines += ["", "Targets:", ""]
        lines += table(
            ["target", "measured", "limit", "verdict"],
            [
                [t["name"], _value(t), f"<= {t['limit']}{t.get('unit', '')}", _verdict(t)]
                for t in doc["targets"]
            ],
        )
    if doc["notes"]:
        lines += ["", "Notes:", ""]
        lines += [f"- {note}" for note in doc["notes"]]
    profile = (doc.get("results") or {}).get("profile") or {}
    if profile:
        lines += ["", f"<details><summary>Profile of <code>{profile.get('stack', '')}</code></summary>", ""]
        if profile.get("extra_imports"):
            lines += ["Imports beyond the SDK baseline (`python -X importtime`, cumulative):", ""]
            lines += table(
                ["module", "depth", "cumulative ms"],
                [[i["module"], i.get("depth", ""), i["cumulative_ms"]] for i in profile["extra_imports"]],
            )
        if profile.get("cprofile_top"):
            lines += [
                "",
                "cProfile of `run_program` (cumulative):",
                "",
                "```",
                profile["cprofile_top"].strip(),
                "```",
            ]
        lines += ["", "</details>"]
    lines.append("")
    return lines


def render(results_dir: Path) -> str:
    """The whole RESULTS.md text."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(results_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        docs[doc["benchmark"]] = doc
    names = [n for n in ORDER if n in docs] + sorted(n for n in docs if n not in ORDER)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.report` from `bench/results/*.json`; do not edit by hand.",
        "Each benchmark measures the variants it compares interleaved in ONE run and quotes ratios:",
        "absolute seconds on a shared machine are noise. Medians (min-max) over the stated repetitions.",
        "",
        "Rerun everything from the repo root with the venv python, then regenerate this file:",
        "",
        "```sh",
        *[RERUN.get(n, f"python -m bench.{n}") for n in ORDER],
        "python -m bench.report",
        "```",
        "",
    ]
    summary_rows = []
    for name in names:
        for item in docs[name]["targets"]:
            summary_rows.append(
                [
                    name,
                    item["name"],
                    _value(item),
                    f"<= {item['limit']}{item.get('unit', '')}",
                    _verdict(item),
                ]
            )
    if summary_rows:
        lines += ["## Targets at a glance", ""]
        lines += table(["benchmark", "target", "measured", "limit", "verdict"], summary_rows)
        lines.append("")
    missing = [n for n in ORDER if n not in docs]
    if missing:
        lines += [f"Not measured yet (no result file): {', '.join(missing)}.", ""]
    for name in names:
        lines += render_one(docs[name])
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--output", type=Path, default=common.REPO / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    text = render(args.results_dir)
    args.output.write_text(text)
    print(f"[bench.report] wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

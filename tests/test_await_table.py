"""The README's await table ("What `pulumi up` waits for") is what the program renders, and every await
is sized to the real duration.

* Every resource the program renders that pulumi-kubernetes awaits (the kinds below, from
  provider/pkg/await/awaiters.go of pulumi-kubernetes 4.34.2, the entries with an ``await``), every
  resource with a ``pulumi.com/`` await annotation and every Helm release matches one table row: same
  kind, a listed name (or ``*``), and exactly the row's "Program's choice".
* Every row is rendered by some stack or variant (no stale rows).
* Where the typical time on AWS exceeds the provider's limit, the program overrides it, and every
  explicit limit is at least the typical worst case (issue 11, defect 1: the FSx claim's 5-minute await).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import STACKS
from tests.pulumi_harness import REPO, ProgramRun, Registered, run_ok

# pulumi-kubernetes provider/pkg/await/awaiters.go: kinds with a built-in create awaiter.
PROVIDER_AWAITED_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Pod",
    "ReplicationController",
    "ResourceQuota",
    "Secret",
    "Service",
    "ServiceAccount",
    "Ingress",
}
AWAIT_ANNOTATIONS = ("pulumi.com/waitFor", "pulumi.com/timeoutSeconds", "pulumi.com/skipAwait")
RELEASE = "kubernetes:helm.sh/v3:Release"
STATIC_FSX = {
    "enabled": True,
    "mode": "static",
    "fileSystemId": "fs-0123456789abcdef0",
    "dnsName": "fs-0123456789abcdef0.fsx.us-west-2.amazonaws.com",
    "mountName": "abcdefgh",
}


@dataclass(frozen=True)
class Row:
    kind: str
    names: tuple[str, ...]
    provider_limit_minutes: float | None
    typical_minutes: float
    choice: dict[str, str]
    text: str

    def covers(self, kind: str, name: str) -> bool:
        return kind == self.kind and ("*" in self.names or name in self.names)


def _minutes(text: str) -> list[float]:
    """Every duration in ``text`` ("5 min", "300 s", "5-15 min" with an en dash -> 5 and 15), in minutes."""
    found: list[float] = []
    for low, high, unit in re.findall(r"(\d+)(?:\s*[\u2013-]\s*(\d+))?\s*(min|s)\b", text):
        factor = 1.0 if unit == "min" else 1 / 60
        found += [int(low) * factor] + ([int(high) * factor] if high else [])
    return found


def parse_table() -> list[Row]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### What `pulumi up` waits for", 1)[1].split("\n#", 1)[0]
    rows: list[Row] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        resource, _, limit, typical, choice = cells
        kind, *names = re.findall(r"`([^`]+)`", resource)
        limits = _minutes(limit)
        rows.append(
            Row(
                kind=kind,
                names=tuple(names),
                provider_limit_minutes=limits[0] if limits else None,
                typical_minutes=max(_minutes(typical)),
                choice=dict(token.split("=", 1) for token in re.findall(r"`([^`]+=[^`]+)`", choice)),
                text=line,
            )
        )
    return rows


def rendered(resource: Registered) -> tuple[str, str, dict[str, str]] | None:
    """(kind, name, await settings) of a resource the table must cover, else None."""
    if resource.type == RELEASE:
        choice = {"timeout": str(resource.inputs.get("timeout"))} if "timeout" in resource.inputs else {}
        if resource.inputs.get("skipAwait"):
            choice["skipAwait"] = "true"
        return "Release", str(resource.inputs.get("name") or resource.name), choice
    if not resource.type.startswith("kubernetes:") or not resource.custom:
        return None
    kind = resource.type.rsplit(":", 1)[1]
    metadata: dict[str, Any] = resource.inputs.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    choice = {k: str(v) for k, v in annotations.items() if k in AWAIT_ANNOTATIONS}
    if kind not in PROVIDER_AWAITED_KINDS and not choice:
        return None
    return kind, str(metadata.get("name") or resource.name), choice


@pytest.fixture(scope="module")
def runs(stack_runs: dict[str, ProgramRun]) -> list[ProgramRun]:
    return [*stack_runs.values(), run_ok("dev", {"fsx": STATIC_FSX})]


def test_table_parses() -> None:
    rows = parse_table()
    assert len(rows) >= 5
    assert {r.kind for r in rows} >= {"PersistentVolumeClaim", "RayCluster", "Release"}


def test_every_awaited_resource_matches_its_row(runs: list[ProgramRun]) -> None:
    rows = parse_table()
    problems = []
    for run in runs:
        for resource in run.resources:
            found = rendered(resource)
            if found is None:
                continue
            kind, name, choice = found
            candidates = [row for row in rows if row.covers(kind, name)]
            if not candidates:
                problems.append(f"{run.stack}: {kind} {name} ({choice}) has no row in the README await table")
            elif not any(row.choice == choice for row in candidates):
                problems.append(
                    f"{run.stack}: {kind} {name} renders {choice}, the table says "
                    f"{[row.choice for row in candidates]}"
                )
    assert not problems, "\n".join(problems)


def test_every_row_is_rendered(runs: list[ProgramRun]) -> None:
    seen = [found for run in runs for r in run.resources if (found := rendered(r)) is not None]
    for row in parse_table():
        for name in row.names:
            assert any(
                row.covers(kind, n) and name in ("*", n) and choice == row.choice for kind, n, choice in seen
            ), f"README await table row is not what any stack renders: {row.text}"


@pytest.mark.parametrize("row", parse_table(), ids=lambda r: f"{r.kind}-{'-'.join(r.names)}")
def test_awaits_are_sized_to_the_real_duration(row: Row) -> None:
    limit = row.choice.get("pulumi.com/timeoutSeconds") or row.choice.get("timeout")
    if limit is not None:
        assert int(limit) >= row.typical_minutes * 60, f"{row.text}: limit below the typical worst case"
    elif row.provider_limit_minutes is not None:
        assert row.provider_limit_minutes >= row.typical_minutes, (
            f"{row.text}: the provider gives up before the typical worst case; set an explicit await"
        )
    if row.provider_limit_minutes is not None and row.provider_limit_minutes < row.typical_minutes:
        assert "pulumi.com/waitFor" in row.choice or "timeout" in row.choice, row.text


def test_stack_runs_cover_every_stack(runs: list[ProgramRun]) -> None:
    assert {run.stack for run in runs} >= set(STACKS)

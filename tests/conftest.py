"""Shared fixtures: the real program run under Pulumi mocks for every stack file, and the vendored
schemas; and the test processes' garbage-collector thresholds (:data:`GC_THRESHOLDS`)."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pulumi_harness import (
    HARNESS_LOG_ENV,
    REPO,
    ProgramRun,
    log_event,
    run_shared,
    stack_files,
    stack_name,
)

GC_THRESHOLDS = (20_000, 20, 100)
"""The garbage collector's thresholds in every test process (CPython's default is (700, 10, 10)).

An xdist worker holds ~1M objects (torch, Ray, the Pulumi SDKs, the shared program runs) and the
mocked program runs allocate heavily, so with the default thresholds CPython scanned that whole heap
~15 times per worker. Interleaved A/B of the unit suite (``-n 2``, tests/bench left out, three rounds
each, 2026-12-03): garbage collection 15.8-16.6 s over the three pytest processes (42-44 full
collections) -> 3.5-4.0 s (one), wall 40-42 s -> 33-34 s; peak RSS per worker unchanged (1.2-1.5 GB).
``python -m bench.test_suite`` reports each run's collection time (bench/RESULTS.md). Only the
thresholds change: unreachable cycles are still collected, less often. Set when pytest configures,
before collection (which imports all of that)."""
_GC_STATS: dict[str, float] = {"seconds": 0.0, "collections": 0, "full_collections": 0, "started": 0.0}


def _count_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _GC_STATS["started"] = time.perf_counter()
        return
    _GC_STATS["seconds"] += time.perf_counter() - _GC_STATS["started"]
    _GC_STATS["collections"] += 1
    _GC_STATS["full_collections"] += info["generation"] == 2


def pytest_configure(config: pytest.Config) -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    if os.environ.get(HARNESS_LOG_ENV):  # bench.test_suite: log this process's collection time
        gc.callbacks.append(_count_collection)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _count_collection not in gc.callbacks:
        return
    gc.callbacks.remove(_count_collection)
    log_event(
        "gc",
        "",
        round(_GC_STATS["seconds"], 3),
        process=os.environ.get("PYTEST_XDIST_WORKER", "main"),
        collections=int(_GC_STATS["collections"]),
        full_collections=int(_GC_STATS["full_collections"]),
        thresholds=list(gc.get_threshold()),
    )


SCHEMAS = REPO / "tests" / "schemas"
STACKS = [stack_name(path) for path in stack_files()]
# Stacks on EKS / HyperPod (AWS lookups, aws:region) and on any Kubernetes (clusterType kubernetes).
KUBERNETES_STACKS = [
    stack_name(path)
    for path in stack_files()
    if (yaml.safe_load(path.read_text())["config"] or {}).get("ray-on-eks:clusterType") == "kubernetes"
]
AWS_STACKS = [stack for stack in STACKS if stack not in KUBERNETES_STACKS]


@pytest.fixture(scope="session")
def stack_runs() -> dict[str, ProgramRun]:
    """``__main__.py`` run once per ``Pulumi.<stack>.yaml`` (each must succeed).

    The runs are :func:`run_shared`'s: a test that calls ``run_shared(stack)`` with the same environment
    gets a copy of the same run instead of running the program again. Like every run that does not ask
    for ``crd_schemas``, they register the KubeRay CRDs with stand-in schemas (the same files in every
    stack); the tests about the CRDs' content run ``run_shared("dev", crd_schemas=True)``.
    """
    return {stack: run_shared(stack) for stack in STACKS}


@pytest.fixture(params=STACKS)
def stack_run(request: pytest.FixtureRequest, stack_runs: dict[str, ProgramRun]) -> ProgramRun:
    """One stack's run; tests using it run once per stack file."""
    return stack_runs[request.param]


@pytest.fixture(params=AWS_STACKS)
def aws_stack_run(request: pytest.FixtureRequest, stack_runs: dict[str, ProgramRun]) -> ProgramRun:
    """One EKS or HyperPod stack's run (the stack files with an aws:region)."""
    return stack_runs[request.param]


@pytest.fixture(params=KUBERNETES_STACKS)
def kubernetes_stack_run(request: pytest.FixtureRequest, stack_runs: dict[str, ProgramRun]) -> ProgramRun:
    """One clusterType kubernetes stack's run (Pulumi.kind.yaml)."""
    return stack_runs[request.param]


@pytest.fixture(scope="session")
def delete_run() -> ProgramRun:
    """``Pulumi.dev.yaml`` with ``retainData: false`` (shared by the storage and policy tests)."""
    return run_shared("dev", {"retainData": False})


@pytest.fixture(scope="session")
def schemas() -> Path:
    """``tests/schemas``: upstream CRDs and chart values vendored in the repo (see its README.md).

    Present in every clone, so schema tests always run; a missing file fails the test that reads it.
    """
    assert SCHEMAS.is_dir(), f"{SCHEMAS} is missing: it is part of the repository (git checkout it)"
    return SCHEMAS

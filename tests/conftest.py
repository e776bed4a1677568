"""Shared fixtures: the real program run under Pulumi mocks for every stack file, and the vendored schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.pulumi_harness import REPO, ProgramRun, run_shared, stack_files, stack_name

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

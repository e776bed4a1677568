"""Fixtures for the workload tests: a real local Ray head (integration) and a trained model.

The head is started through the CLI's own :mod:`workloads.local_cluster` in a temporary local dir
and always stopped at the end of the session (by process group and marker), even on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workloads import local_cluster
from workloads.cli import RunResult, run_local
from workloads.local_cluster import LocalCluster, LocalClusterSpec

TRAIN_EPOCHS = 10  # test_workloads_integration.py asserts on this value too
JOB_TIMEOUT_S = 600.0


def pytest_configure(config: pytest.Config) -> None:
    """Silence Ray's own pydantic deprecation warnings (not ours to fix)."""
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="session")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI's --local-dir for the session (state file + STORAGE_PATH)."""
    return tmp_path_factory.mktemp("ray-on-eks")


@pytest.fixture(scope="session")
def ray_cluster(local_dir: Path) -> Iterator[LocalCluster]:
    """A local Ray head (4 logical CPUs, auth disabled) for the whole session."""
    cluster = local_cluster.start(local_dir, LocalClusterSpec(num_cpus=4), print)
    try:
        yield cluster
    finally:
        local_cluster.stop(cluster)


@pytest.fixture(scope="session")
def storage_path(local_dir: Path, ray_cluster: LocalCluster) -> Path:
    """STORAGE_PATH the CLI gives local runs."""
    return local_cluster.storage_dir(local_dir)


@pytest.fixture(scope="session")
def trained(local_dir: Path, ray_cluster: LocalCluster) -> RunResult:
    """dt-pytorch run once through the CLI's run path (default env, explicit epochs)."""
    return run_local(
        "dt-pytorch",
        {"EPOCHS": str(TRAIN_EPOCHS)},
        local_dir=local_dir,
        timeout_s=JOB_TIMEOUT_S,
    )

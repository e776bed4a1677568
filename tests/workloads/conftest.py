"""Fixtures for the workload tests: a real local Ray head (integration), a trained model and a real
S3-compatible server.

The head is started through the CLI's own :mod:`workloads.local_cluster` in a temporary local dir
and always stopped at the end of the session (by process group and marker), even on failure.
The S3 server is moto in server mode (a real HTTP endpoint, not an in-process mock), started
before the head so that the head and every Ray worker inherit the standard ``AWS_ENDPOINT_URL``
and dummy credentials, exactly as a user would run against MinIO or another S3-compatible store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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


S3_BUCKET = "ray-on-eks-test"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free loopback port with bucket :data:`S3_BUCKET`; yields its URL.

    ``AWS_ENDPOINT_URL`` and dummy credentials are set in this process's environment for the
    session (restored afterwards), so the Ray head started after it passes them to every worker.
    """
    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    settings = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"moto server did not start: {log.read_text()}"
                time.sleep(0.2)
        boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
        yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_bucket(s3_server: str) -> str:
    """The bucket created on the session's S3 server."""
    return S3_BUCKET


@pytest.fixture(scope="session")
def ray_cluster(local_dir: Path, s3_server: str) -> Iterator[LocalCluster]:
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

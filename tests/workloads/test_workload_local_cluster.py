"""Unit tests of the local-head bookkeeping that need no running Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from workloads import local_cluster
from workloads.local_cluster import LocalCluster, LocalClusterError, LocalClusterSpec


def recorded(pid: int, token: str | None = None) -> LocalCluster:
    return LocalCluster(
        cluster_id="abc",
        pid=pid,
        gcs_port=1,
        dashboard_port=local_cluster.free_port(),
        serve_port=3,
        temp_dir="/tmp/none",
        log_file="/tmp/none.log",
        token=token,
    )


def test_urls_are_loopback() -> None:
    cluster = recorded(1)
    assert cluster.dashboard_url == f"http://127.0.0.1:{cluster.dashboard_port}"
    assert cluster.serve_url == "http://127.0.0.1:3" and cluster.gcs_address == "127.0.0.1:1"


def test_state_of_a_dead_head_is_ignored(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(finished.stdout)
    local_cluster.state_file(tmp_path).write_text(json.dumps(asdict(recorded(dead_pid))))
    assert local_cluster.read_state(tmp_path) is None
    assert local_cluster.down(tmp_path) is False
    assert not local_cluster.state_file(tmp_path).exists()


def test_garbage_state_is_ignored(tmp_path: Path) -> None:
    local_cluster.state_file(tmp_path).write_text("{not json")
    assert local_cluster.read_state(tmp_path) is None


def test_reuse_refuses_a_head_without_the_requested_token_auth(tmp_path: Path) -> None:
    # A live pid (this test process) recorded as a head without token auth.
    local_cluster.state_file(tmp_path).write_text(json.dumps(asdict(recorded(os.getpid()))))
    assert local_cluster.read_state(tmp_path) is not None
    with pytest.raises(LocalClusterError, match="different auth setting"):
        local_cluster.ensure(tmp_path, LocalClusterSpec(token_auth=True))


def test_storage_dir_is_absolute(tmp_path: Path) -> None:
    assert local_cluster.storage_dir(tmp_path) == (tmp_path / "storage").resolve()
    assert local_cluster.storage_dir(tmp_path).is_absolute()


def test_free_ports_are_distinct() -> None:
    ports = local_cluster.free_ports(40)
    assert len(set(ports)) == 40 and all(1024 < port < 65536 for port in ports)

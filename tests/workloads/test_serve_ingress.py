"""workloads/serve_ingress.py: the Serve ingress environment of RayServices and local heads."""

from __future__ import annotations

import os
from pathlib import Path

from ray.serve._private import constants

from workloads import local_cluster
from workloads.serve_ingress import (
    HAPROXY_FILE_ENVS,
    HAPROXY_MAX_SOCKET_PATH,
    HIGH_THROUGHPUT_ENV,
    local_head_env,
    ray_service_env,
)


def test_every_variable_is_one_ray_serve_reads() -> None:
    """A renamed or dropped variable in a Ray upgrade fails here, not silently on the cluster."""
    env = local_head_env(stats_port=1, metrics_port=2, haproxy_dir="/tmp/roe-x/haproxy")
    source = Path(constants.__file__).read_text(encoding="utf-8")
    for name in env:
        assert f'"{name}"' in source, f"Ray {constants.__name__} no longer reads {name}"


def test_local_head_moves_haproxy_ports_and_replays() -> None:
    env = local_head_env(stats_port=40001, metrics_port=40002, haproxy_dir="/tmp/roe-x/haproxy")
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "40001"
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] == "40002"
    assert env["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure empty-response"
    assert HIGH_THROUGHPUT_ENV.items() <= env.items()


def test_ray_service_env_replays_only_idempotent_apps() -> None:
    assert ray_service_env(high_throughput=False, idempotent=True) == {}
    assert ray_service_env(high_throughput=True, idempotent=False) == dict(HIGH_THROUGHPUT_ENV)
    assert "RAY_SERVE_HAPROXY_RETRY_ON" in ray_service_env(high_throughput=True, idempotent=True)


def test_local_head_keeps_haproxys_files_in_its_own_dir() -> None:
    """Ray's default /tmp/haproxy-serve/<node id>/ outlives every head; the head's temp dir does not."""
    # As workloads.local_cluster.start names it (tempfile.mkdtemp adds 8 characters).
    temp_dir = os.path.join(local_cluster.TEMP_ROOT, local_cluster.TEMP_PREFIX + "abcdefgh")
    haproxy_dir = os.path.join(temp_dir, local_cluster.HAPROXY_DIR_NAME)
    env = local_head_env(stats_port=1, metrics_port=2, haproxy_dir=haproxy_dir)
    assert env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == haproxy_dir
    for name in HAPROXY_FILE_ENVS:
        assert Path(env[name]).parent == Path(haproxy_dir), name
    # Ray puts each file in <dir>/<node id>/ (a 56-hex-digit id); HAProxy refuses longer socket paths.
    node_id = "f" * 56
    for name in ("RAY_SERVE_HAPROXY_SOCKET_PATH", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
        directory, file = os.path.split(env[name])
        assert len(os.path.join(directory, node_id, file).encode()) <= HAPROXY_MAX_SOCKET_PATH, name

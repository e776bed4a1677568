"""workloads/serve_ingress.py: the Serve ingress environment of RayServices and local heads."""

from __future__ import annotations

from pathlib import Path

from ray.serve._private import constants

from workloads.serve_ingress import HIGH_THROUGHPUT_ENV, local_head_env, ray_service_env


def test_every_variable_is_one_ray_serve_reads() -> None:
    """A renamed or dropped variable in a Ray upgrade fails here, not silently on the cluster."""
    env = local_head_env(stats_port=1, metrics_port=2)
    source = Path(constants.__file__).read_text(encoding="utf-8")
    for name in env:
        assert f'"{name}"' in source, f"Ray {constants.__name__} no longer reads {name}"


def test_local_head_moves_haproxy_ports_and_replays() -> None:
    env = local_head_env(stats_port=40001, metrics_port=40002)
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "40001"
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] == "40002"
    assert env["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure empty-response"
    assert HIGH_THROUGHPUT_ENV.items() <= env.items()


def test_ray_service_env_replays_only_idempotent_apps() -> None:
    assert ray_service_env(high_throughput=False, idempotent=True) == {}
    assert ray_service_env(high_throughput=True, idempotent=False) == dict(HIGH_THROUGHPUT_ENV)
    assert "RAY_SERVE_HAPROXY_RETRY_ON" in ray_service_env(high_throughput=True, idempotent=True)

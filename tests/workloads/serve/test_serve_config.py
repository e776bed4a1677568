"""Unit tests of the Serve config document (serveConfigV2 content)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from workloads.catalog import WORKLOADS, workload_env
from workloads.serve.config import APP_NAME, DEPLOYMENT_NAME, IMPORT_PATH, build_serve_config


def test_document_shape_matches_serve_config_v2() -> None:
    env = workload_env(WORKLOADS["serve"], {"STORAGE_PATH": "/fsx"})
    document = build_serve_config(env=env, num_replicas=2, route_prefix="/digits")
    assert list(document) == ["applications"]  # no http_options unless asked for
    [application] = document["applications"]
    assert application == {
        "name": APP_NAME,
        "route_prefix": "/digits",
        "import_path": "workloads.serve.app:app",
        "runtime_env": {"env_vars": {"STORAGE_PATH": "/fsx"}},
        "deployments": [{"name": DEPLOYMENT_NAME, "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}}],
    }
    assert json.loads(json.dumps(document)) == document


def test_env_is_copied_not_shared() -> None:
    env = {"MODEL_PATH": "/fsx/models/latest"}
    document = build_serve_config(env=env)
    env["MODEL_PATH"] = "changed"
    assert document["applications"][0]["runtime_env"]["env_vars"] == {"MODEL_PATH": "/fsx/models/latest"}


def test_optional_parts_appear_only_when_given() -> None:
    document = build_serve_config(
        env={},
        working_dir="gcs://_ray_pkg_abc.zip",
        pip=("torch==2.14.1",),
        http_host="127.0.0.1",
        http_port=8123,
    )
    runtime_env = document["applications"][0]["runtime_env"]
    assert runtime_env == {"env_vars": {}, "working_dir": "gcs://_ray_pkg_abc.zip", "pip": ["torch==2.14.1"]}
    assert document["http_options"] == {"host": "127.0.0.1", "port": 8123}


def test_import_path_points_at_a_shipped_module() -> None:
    module, _, attribute = IMPORT_PATH.partition(":")
    assert attribute == "app"
    assert f"{module.replace('.', '/')}.py" in WORKLOADS["serve"].files
    assert importlib.util.find_spec(module) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_replicas": 0}, "num_replicas"),
        ({"route_prefix": "digits"}, "route_prefix"),
        ({"num_cpus_per_replica": 0}, "num_cpus_per_replica"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_serve_config(env={}, **kwargs)  # type: ignore[arg-type]


def test_serve_config_validates_against_rays_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    document = build_serve_config(env={"STORAGE_PATH": "/fsx"}, http_host="0.0.0.0", http_port=8000)
    parsed = ServeDeploySchema.model_validate(document)
    assert parsed.applications[0].import_path == IMPORT_PATH

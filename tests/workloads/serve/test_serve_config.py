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


def test_every_catalog_service_has_its_own_serve_application() -> None:
    services = [workload for workload in WORKLOADS.values() if workload.kind == "service"]
    apps = [workload.serve_app for workload in services]
    assert all(app is not None for app in apps), "a catalog service without serve_app cannot be deployed"
    names = [app.app_name for app in apps if app]
    prefixes = [app.route_prefix for app in apps if app]
    # Locally every service shares one Serve instance: names and route prefixes must not collide.
    assert len(set(names)) == len(names)
    assert len(set(prefixes)) == len(prefixes)
    for workload in services:
        app = workload.serve_app
        assert app is not None
        module, _, attribute = app.import_path.partition(":")
        assert attribute, app.import_path
        assert f"{module.replace('.', '/')}.py" in workload.files
        assert importlib.util.find_spec(module) is not None
    assert all(workload.serve_app is None for workload in WORKLOADS.values() if workload.kind == "job")


def test_document_follows_the_given_app() -> None:
    from workloads.catalog import ServeApp

    app = ServeApp(
        app_name="other",
        import_path="pkg.mod:app",
        deployment_name="Other",
        route_prefix="/other",
        num_cpus_per_replica=1.5,
    )
    [application] = build_serve_config(env={}, app=app, num_replicas=3)["applications"]
    assert application["name"] == "other"
    assert application["route_prefix"] == "/other"
    assert application["import_path"] == "pkg.mod:app"
    assert application["deployments"] == [
        {"name": "Other", "num_replicas": 3, "ray_actor_options": {"num_cpus": 1.5}}
    ]
    assert app.url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/other"
    root = ServeApp(app_name="r", import_path="m:app", deployment_name="R")
    assert root.url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"

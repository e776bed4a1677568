"""The Ray Serve config document (``serveConfigV2``) of the serve workload (standard library only).

The same document goes into a RayService's ``serveConfigV2`` on the cluster and is deployed by the
local CLI through Serve's REST API (``PUT /api/serve/applications/``). The only local addition is a
``working_dir`` (the staged catalog files uploaded to the local cluster), because a local head has
no ConfigMap mounted at ``/opt/ray-on-eks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from workloads.catalog import WORKLOADS, ServeApp

_CLASSIFIER = WORKLOADS["serve"].serve_app
assert _CLASSIFIER is not None
CLASSIFIER: ServeApp = _CLASSIFIER
"""The digits classifier's Serve application (the ``serve`` catalog entry)."""
APP_NAME = CLASSIFIER.app_name
IMPORT_PATH = CLASSIFIER.import_path
DEPLOYMENT_NAME = CLASSIFIER.deployment_name
PREDICT_PATH = "/predict"
HEALTH_PATH = CLASSIFIER.health_path


def build_serve_config(
    *,
    env: Mapping[str, str],
    app: ServeApp = CLASSIFIER,
    num_replicas: int = 1,
    route_prefix: str | None = None,
    app_name: str | None = None,
    num_cpus_per_replica: float | None = None,
    working_dir: str | None = None,
    pip: Sequence[str] = (),
    http_host: str | None = None,
    http_port: int | None = None,
    import_path: str | None = None,
) -> dict[str, Any]:
    """The Serve config document of a catalog service ``app`` (or, with ``import_path``, the user's own app).

    ``route_prefix``, ``app_name`` and ``num_cpus_per_replica`` default to ``app``'s. An own app gets no ``deployments`` overrides: its deployment names are its own (Serve refuses
    overrides for a deployment the application does not define).

    ``env`` becomes the application's ``runtime_env.env_vars`` (use ``workload_env``).
    ``working_dir`` / ``pip`` are added to the runtime_env only when given; ``http_options`` only
    when ``http_host`` or ``http_port`` is given.
    """
    route_prefix = app.route_prefix if route_prefix is None else route_prefix
    app_name = app.app_name if app_name is None else app_name
    num_cpus_per_replica = app.num_cpus_per_replica if num_cpus_per_replica is None else num_cpus_per_replica
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
    if not route_prefix.startswith("/"):
        raise ValueError(f"route_prefix must start with '/', got {route_prefix!r}")
    if not num_cpus_per_replica > 0:
        raise ValueError(f"num_cpus_per_replica must be > 0, got {num_cpus_per_replica}")
    runtime_env: dict[str, Any] = {"env_vars": {str(k): str(v) for k, v in env.items()}}
    if working_dir is not None:
        runtime_env["working_dir"] = working_dir
    if pip:
        runtime_env["pip"] = list(pip)
    application: dict[str, Any] = {
        "name": app_name,
        "route_prefix": route_prefix,
        "import_path": import_path or app.import_path,
        "runtime_env": runtime_env,
    }
    if import_path is None:
        application["deployments"] = [
            {
                "name": app.deployment_name,
                "num_replicas": num_replicas,
                "ray_actor_options": {"num_cpus": num_cpus_per_replica},
            }
        ]
    document: dict[str, Any] = {"applications": [application]}
    http_options: dict[str, Any] = {}
    if http_host is not None:
        http_options["host"] = http_host
    if http_port is not None:
        http_options["port"] = http_port
    if http_options:
        document["http_options"] = http_options
    return document

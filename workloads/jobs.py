"""Job submission through the Ray Jobs API, shared by ``run`` (local) and ``submit`` (cluster).

A submission carries the catalog entrypoint, a ``working_dir`` staged with exactly the workload's
catalog ``files`` (the ConfigMap layout) and ``env_vars`` from :func:`workloads.catalog.workload_env`,
so a local run exercises the same contract as the RayJob on the cluster. The user's own code (a
script or a directory) goes through the same :func:`submit_entrypoint`, after
:func:`check_upload_size` has refused a package the dashboard would reject.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workloads.catalog import Workload

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

REPO_ROOT = Path(__file__).resolve().parent.parent
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
LOG_TAIL_LINES = 25

Output = Callable[[str], None]


class SubmissionError(RuntimeError):
    """A user-facing failure: unreachable cluster, refused auth, failed job... (no traceback)."""


@dataclass(frozen=True, kw_only=True)
class Target:
    """A Ray dashboard to talk to."""

    address: str
    """Dashboard HTTP address, e.g. ``http://127.0.0.1:8265``."""
    token: str | None = None
    """Ray auth token, sent as ``Authorization: Bearer``; ``None`` when token auth is off."""

    def headers(self) -> dict[str, str]:
        """HTTP headers for the dashboard APIs."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """How a followed job ended."""

    job_id: str
    status: str
    logs: str

    @property
    def succeeded(self) -> bool:
        """Whether the job SUCCEEDED."""
        return self.status == "SUCCEEDED"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` log lines."""
        return "\n".join(self.logs.splitlines()[-lines:])


def _translate(error: Exception, target: Target) -> SubmissionError:
    """Map Ray SDK / HTTP errors to one-line user errors."""
    from ray.exceptions import AuthenticationError

    if isinstance(error, AuthenticationError):
        hint = (
            "the token was rejected"
            if target.token
            else "the cluster requires a token: set RAY_AUTH_TOKEN (or use --stack)"
        )
        first_line = str(error.message).strip().splitlines()[0]
        return SubmissionError(f"authentication failed at {target.address}: {first_line} ({hint})")
    if isinstance(error, ConnectionError):
        return SubmissionError(f"no reachable Ray cluster at {target.address}: {error}")
    if isinstance(error, RuntimeError):  # the SDK's "Request failed with status code ...: ..."
        return SubmissionError(str(error).rstrip("."))
    return SubmissionError(f"{type(error).__name__}: {error}")


def job_client(target: Target) -> JobSubmissionClient:
    """A connected Jobs API client; raises :class:`SubmissionError` when unreachable or refused."""
    import requests
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(target.address, headers=target.headers())
        client.list_jobs()  # surfaces auth failures now rather than at the first real call
    except (ConnectionError, AuthenticationError, requests.RequestException, RuntimeError) as error:
        raise _translate(error, target) from None
    return client


def call(target: Target, action: Callable[[], Any]) -> Any:
    """Run one SDK call, turning its failures into :class:`SubmissionError`."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        return action()
    except (ConnectionError, AuthenticationError, requests.RequestException, RuntimeError) as error:
        raise _translate(error, target) from None


def stage_files(workload: Workload, destination: Path, *, source_root: Path = REPO_ROOT) -> Path:
    """Copy exactly the workload's catalog ``files`` into ``destination`` (ConfigMap layout)."""
    if destination.exists():
        shutil.rmtree(destination)
    for relative in workload.files:
        source = source_root / relative
        if not source.is_file():
            raise SubmissionError(
                f"catalog file {relative} of {workload.name} is missing under {source_root}"
            )
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def new_submission_id(name: str) -> str:
    """A readable, unique job id: ``<name>-<UTC time>-<random>``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "job"
    return f"{safe}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def upload_limit_bytes() -> int:
    """The largest working_dir package a Ray dashboard accepts.

    Two limits apply (ray 2.60): the dashboard's HTTP server refuses request bodies over
    ``ray_constants.DASHBOARD_CLIENT_MAX_SIZE`` (100 MiB, aiohttp ``client_max_size`` in
    ``dashboard/http_server_head.py``), and the GCS stores packages below
    ``packaging.GCS_STORAGE_MAX_SIZE`` (the gRPC message limit, 512 MiB).
    """
    from ray._private import ray_constants
    from ray._private.runtime_env import packaging

    return min(int(ray_constants.DASHBOARD_CLIENT_MAX_SIZE), int(packaging.GCS_STORAGE_MAX_SIZE))


def check_upload_size(working_dir: Path, *, limit: int | None = None) -> int:
    """Zip ``working_dir`` as Ray will (same excludes, ``.gitignore`` honoured) and check its size.

    Returns the package size; raises :class:`SubmissionError` naming the size, the limit and the
    fix before anything is uploaded.
    """
    import logging
    import os
    import tempfile

    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE
    from ray._private.runtime_env.packaging import create_package

    maximum = upload_limit_bytes() if limit is None else limit
    include_gitignore = os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"
    with tempfile.TemporaryDirectory(prefix="ray-on-eks-size-") as scratch:
        package = Path(scratch) / "package.zip"
        quiet = logging.getLogger("workloads.jobs.size_check")  # Ray's INFO lines once, at upload
        quiet.propagate, quiet.disabled = False, True
        create_package(str(working_dir), package, include_gitignore=include_gitignore, logger=quiet)
        size = package.stat().st_size
    if size >= maximum:
        raise SubmissionError(
            f"{working_dir} zips to {size / 2**20:.1f} MiB, over Ray's upload limit of "
            f"{maximum / 2**20:.0f} MiB; list large files or data in a .gitignore or .rayignore there "
            "(or keep data in STORAGE_PATH and read it from the job)"
        )
    return size


def runtime_env(
    workload: Workload, *, env: Mapping[str, str], working_dir: Path, with_pip: bool
) -> dict[str, Any]:
    """The job runtime_env: staged ``working_dir``, contract ``env_vars`` and optionally ``pip``."""
    return code_runtime_env(env=env, working_dir=working_dir, pip=workload.pip if with_pip else ())


def code_runtime_env(*, env: Mapping[str, str], working_dir: Path, pip: Sequence[str]) -> dict[str, Any]:
    """The runtime_env of any submission: ``working_dir``, ``env_vars`` and ``pip`` when given."""
    result: dict[str, Any] = {"working_dir": str(working_dir), "env_vars": dict(env)}
    if pip:
        result["pip"] = list(pip)
    return result


def submit(
    target: Target,
    workload: Workload,
    *,
    env: Mapping[str, str],
    staging_dir: Path,
    with_pip: bool,
    output: Output,
    on_submitted: Callable[[str], None] | None = None,
) -> str:
    """Stage the files and submit ``workload``; returns the job id."""
    if workload.kind != "job":
        raise SubmissionError(f"{workload.name} is a {workload.kind}, not a job")
    job_client(target)  # an unreachable cluster fails before anything is staged
    stage_files(workload, staging_dir)
    return submit_entrypoint(
        target,
        name=workload.name,
        entrypoint=workload.entrypoint(),
        working_dir=staging_dir,
        env=env,
        pip=workload.pip if with_pip else (),
        output=output,
        on_submitted=on_submitted,
    )


def submit_entrypoint(
    target: Target,
    *,
    name: str,
    entrypoint: str,
    working_dir: Path,
    env: Mapping[str, str],
    pip: Sequence[str],
    output: Output,
    on_submitted: Callable[[str], None] | None = None,
) -> str:
    """Submit ``entrypoint`` with ``working_dir`` (size-checked first); returns the job id.

    ``on_submitted`` is called with the job id as soon as the Jobs API accepted it (the CLI uses it
    to tell an interrupted user how to stop the job).
    """
    client = job_client(target)
    check_upload_size(working_dir)
    job_id = new_submission_id(name)
    output(f"submitting {name} as {job_id}: {entrypoint}")
    call(
        target,
        lambda: client.submit_job(
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env=code_runtime_env(env=env, working_dir=working_dir, pip=pip),
            metadata={"workload": name},
        ),
    )
    if on_submitted is not None:
        on_submitted(job_id)
    return job_id


def follow(
    target: Target,
    job_id: str,
    *,
    output: Output,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
) -> JobOutcome:
    """Stream the job's logs to ``output`` until it ends (or ``timeout_s`` passes)."""
    client = job_client(target)
    printed = 0
    status = "PENDING"
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = str(call(target, lambda: client.get_job_status(job_id)).value)
        logs: str = call(target, lambda: client.get_job_logs(job_id))
        if len(logs) > printed:
            output(logs[printed:].rstrip("\n"))
            printed = len(logs)
        if status in TERMINAL_STATUSES:
            return JobOutcome(job_id=job_id, status=status, logs=logs)
        if deadline is not None and time.monotonic() > deadline:
            raise SubmissionError(f"job {job_id} still {status} after {timeout_s:.0f}s")
        time.sleep(poll_s)


def deploy_serve(
    target: Target,
    workload: Workload,
    *,
    env: Mapping[str, str],
    staging_dir: Path,
    with_pip: bool,
    output: Output,
    http_host: str | None = None,
    http_port: int | None = None,
    num_replicas: int = 1,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Deploy the serve config document via Serve's REST API and wait until it is RUNNING.

    The staged catalog files are uploaded to the cluster and referenced as the application's
    ``working_dir``; everything else is :func:`workloads.serve.config.build_serve_config`.
    Returns the deployed document.
    """
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    from workloads.serve.config import build_serve_config

    if workload.kind != "service" or workload.serve_app is None:
        raise SubmissionError(f"{workload.name} is a {workload.kind}, not a catalog service")
    app = workload.serve_app
    app_name = app.app_name
    client = call(target, lambda: ServeSubmissionClient(target.address, headers=target.headers()))
    stage_files(workload, staging_dir)
    uploaded: dict[str, Any] = {"working_dir": str(staging_dir)}
    output(f"uploading {len(workload.files)} workload files")
    # The SDK's own upload step (as `serve run` / job submission use): local dir -> gcs:// URI.
    call(target, lambda: client._upload_working_dir_if_needed(uploaded))
    document = build_serve_config(
        env=env,
        app=app,
        working_dir=str(uploaded["working_dir"]),
        pip=workload.pip if with_pip else (),
        http_host=http_host,
        http_port=http_port,
        num_replicas=num_replicas,
    )
    # Serve's PUT is declarative: applications missing from the document are deleted. Keep every
    # other application running (each catalog service has its own route prefix) by carrying its
    # deployed config forward unchanged.
    running = (call(target, client.get_serve_details).get("applications") or {}).items()
    others = [
        details["deployed_app_config"]
        for name, details in running
        if name != app_name and isinstance(details, dict) and details.get("deployed_app_config")
    ]
    deployed = {**document, "applications": [*others, *document["applications"]]}
    output(f"deploying Serve application {app_name!r} ({app.import_path})")
    call(target, lambda: client.deploy_applications(deployed))
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        details = call(target, client.get_serve_details)
        application = (details.get("applications") or {}).get(app_name) or {}
        status = str(application.get("status", "NOT_STARTED"))
        if status != last:
            output(f"Serve application {app_name!r}: {status}")
            last = status
        if status == "RUNNING":
            return document
        if status in {"DEPLOY_FAILED", "UNHEALTHY"}:
            message = str(application.get("message", "")).strip()
            raise SubmissionError(f"Serve application {app_name!r} is {status}: {message[-2000:]}")
        if time.monotonic() > deadline:
            raise SubmissionError(
                f"Serve application {app_name!r} not RUNNING after {timeout_s:.0f}s ({status})"
            )
        time.sleep(1.0)

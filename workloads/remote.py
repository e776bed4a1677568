"""Reaching a deployed cluster: Pulumi stack outputs, ``kubectl port-forward`` and the auth token.

Stack output names the CLI reads (exported by the Pulumi program) are the ``OUTPUT_*`` constants
below; only ``namespace`` and ``headServiceName`` are required.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT_NAMESPACE = "namespace"
"""Kubernetes namespace of the RayCluster (required)."""
OUTPUT_HEAD_SERVICE = "headServiceName"
"""Name of the Ray head Service (required)."""
OUTPUT_AUTH_SECRET = "rayAuthTokenSecretName"
"""Secret holding the Ray auth token (optional; absent or empty: token auth off)."""
OUTPUT_AUTH_SECRET_KEY = "rayAuthTokenSecretKey"
"""Key of the token inside that Secret (optional; default :data:`DEFAULT_AUTH_SECRET_KEY`)."""
OUTPUT_KUBECONFIG = "kubeconfig"
"""Kubeconfig for the cluster (optional; default: kubectl's own configuration)."""
OUTPUT_STORAGE_PATH = "storagePath"
"""STORAGE_PATH of the stack's workloads (optional; /fsx/..., s3://<bucket>/..., or unset)."""
OUTPUT_RAY_SERVICES = "rayServices"
"""Per RayService name: ``{"serveService", "port", "portForwardCommand"}`` (optional)."""
DEFAULT_AUTH_SECRET_KEY = "auth_token"
DASHBOARD_PORT = 8265
SERVE_PORT = 8000
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


class RemoteError(RuntimeError):
    """A user-facing failure reaching the deployed cluster."""


@dataclass(frozen=True, kw_only=True)
class StackInfo:
    """What the CLI needs from a stack's outputs."""

    stack: str
    namespace: str
    head_service: str
    auth_secret: str | None
    auth_secret_key: str
    kubeconfig: str | None
    storage_path: str | None = None
    ray_services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _run(command: list[str], *, what: str) -> str:
    executable = shutil.which(command[0])
    if executable is None:
        raise RemoteError(f"`{command[0]}` is not installed or not on PATH (needed to {what})")
    try:
        completed = subprocess.run(
            [executable, *command[1:]], capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        raise RemoteError(f"`{' '.join(command[:3])}` timed out (needed to {what})") from None
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()
        raise RemoteError(f"cannot {what}: {detail[-1] if detail else f'exit {completed.returncode}'}")
    return completed.stdout


def pulumi_command(stack: str) -> list[str]:
    """The command that prints the stack's outputs (secrets included) as JSON."""
    return ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack]


def parse_stack_outputs(stack: str, outputs: Mapping[str, Any]) -> StackInfo:
    """Validate the outputs; missing required keys raise :class:`RemoteError` listing what exists."""

    def text(key: str, *, required: bool) -> str | None:
        value = outputs.get(key)
        if value is None or value == "":
            if required:
                present = ", ".join(sorted(outputs)) or "none"
                raise RemoteError(f"stack {stack!r} has no output {key!r} (outputs: {present})")
            return None
        if isinstance(value, dict | list):
            if key == OUTPUT_KUBECONFIG:
                return json.dumps(value)
            raise RemoteError(f"stack {stack!r} output {key!r} must be a string, got {type(value).__name__}")
        return str(value)

    namespace = text(OUTPUT_NAMESPACE, required=True)
    head_service = text(OUTPUT_HEAD_SERVICE, required=True)
    assert namespace is not None and head_service is not None
    services = outputs.get(OUTPUT_RAY_SERVICES) or {}
    if not isinstance(services, dict) or not all(isinstance(v, dict) for v in services.values()):
        raise RemoteError(f"stack {stack!r} output {OUTPUT_RAY_SERVICES!r} must map service names to objects")
    return StackInfo(
        stack=stack,
        namespace=namespace,
        head_service=head_service,
        auth_secret=text(OUTPUT_AUTH_SECRET, required=False),
        auth_secret_key=text(OUTPUT_AUTH_SECRET_KEY, required=False) or DEFAULT_AUTH_SECRET_KEY,
        kubeconfig=text(OUTPUT_KUBECONFIG, required=False),
        storage_path=text(OUTPUT_STORAGE_PATH, required=False),
        ray_services=services,
    )


def read_stack(stack: str) -> StackInfo:
    """Run ``pulumi stack output`` for ``stack`` and parse it."""
    raw = _run(pulumi_command(stack), what=f"read the outputs of stack {stack!r}")
    try:
        outputs = json.loads(raw or "{}")
    except ValueError:
        raise RemoteError(f"`pulumi stack output` for {stack!r} did not print JSON") from None
    if not isinstance(outputs, dict):
        raise RemoteError(f"`pulumi stack output` for {stack!r} did not print a JSON object")
    return parse_stack_outputs(stack, outputs)


def kubectl_base(kubeconfig_file: Path | None) -> list[str]:
    """``kubectl`` plus ``--kubeconfig`` when the stack exported one."""
    return ["kubectl", *([f"--kubeconfig={kubeconfig_file}"] if kubeconfig_file else [])]


def port_forward_command(
    info: StackInfo,
    local_port: int,
    kubeconfig_file: Path | None,
    *,
    service: str | None = None,
    remote_port: int = DASHBOARD_PORT,
) -> list[str]:
    """``kubectl port-forward`` from 127.0.0.1:<local_port> to a Service (default: the head's dashboard)."""
    return [
        *kubectl_base(kubeconfig_file),
        "port-forward",
        "--address=127.0.0.1",
        "-n",
        info.namespace,
        f"svc/{service or info.head_service}",
        f"{local_port}:{remote_port}",
    ]


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``RAY_AUTH_TOKEN``, else the contents of ``RAY_AUTH_TOKEN_PATH`` (Ray's own variables)."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = env.get(TOKEN_PATH_ENV, "").strip()
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as error:
            raise RemoteError(f"cannot read {TOKEN_PATH_ENV}={path}: {error}") from None
    return None


def read_token(info: StackInfo, kubeconfig_file: Path | None) -> str | None:
    """The token: from the environment first, else from the stack's Secret (via kubectl)."""
    token = token_from_env()
    if token or info.auth_secret is None:
        return token
    encoded = _run(
        [
            *kubectl_base(kubeconfig_file),
            "get",
            "secret",
            "-n",
            info.namespace,
            info.auth_secret,
            "-o",
            f"jsonpath={{.data.{info.auth_secret_key}}}",
        ],
        what=f"read the Ray auth token from Secret {info.namespace}/{info.auth_secret}",
    ).strip()
    if not encoded:
        raise RemoteError(f"Secret {info.namespace}/{info.auth_secret} has no key {info.auth_secret_key!r}")
    try:
        return base64.b64decode(encoded, validate=True).decode().strip()
    except ValueError:
        raise RemoteError(f"Secret {info.namespace}/{info.auth_secret} does not hold base64 data") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True, kw_only=True)
class Connection:
    """An open route to a deployed cluster's dashboard."""

    address: str
    token: str | None
    storage_path: str | None = None
    """The stack's ``storagePath`` output: STORAGE_PATH for workloads submitted there."""


@contextmanager
def connect(stack: str, *, timeout_s: float = 30.0) -> Iterator[Connection]:
    """Port-forward to the stack's head for the duration of the ``with`` block."""
    info = read_stack(stack)
    with _kubeconfig(info) as kubeconfig_file:
        token = read_token(info, kubeconfig_file)
        with _port_forward(info, kubeconfig_file, timeout_s=timeout_s) as port:
            yield Connection(address=f"http://127.0.0.1:{port}", token=token, storage_path=info.storage_path)


@contextmanager
def connect_serve(stack: str, service: str, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Port-forward to RayService ``service``'s Serve port; yields the local URL."""
    info = read_stack(stack)
    entry = info.ray_services.get(service)
    if entry is None:
        known = ", ".join(sorted(info.ray_services)) or "none"
        raise RemoteError(f"stack {stack!r} has no RayService {service!r} (its RayServices: {known})")
    serve_service = str(entry.get("serveService") or f"{service}-serve-svc")
    port = int(entry.get("port") or SERVE_PORT)
    with (
        _kubeconfig(info) as kubeconfig_file,
        _port_forward(
            info, kubeconfig_file, service=serve_service, remote_port=port, timeout_s=timeout_s
        ) as local_port,
    ):
        yield f"http://127.0.0.1:{local_port}"


@contextmanager
def _kubeconfig(info: StackInfo) -> Iterator[Path | None]:
    """The stack's kubeconfig output as a private temporary file (``None`` when absent)."""
    with tempfile.TemporaryDirectory(prefix="ray-on-eks-") as scratch:
        if not info.kubeconfig:
            yield None
            return
        kubeconfig_file = Path(scratch) / "kubeconfig"
        kubeconfig_file.write_text(info.kubeconfig)
        kubeconfig_file.chmod(0o600)
        yield kubeconfig_file


@contextmanager
def _port_forward(
    info: StackInfo,
    kubeconfig_file: Path | None,
    *,
    service: str | None = None,
    remote_port: int = DASHBOARD_PORT,
    timeout_s: float,
) -> Iterator[int]:
    """Run ``kubectl port-forward`` while the block runs; yields the local port."""
    target = f"{info.namespace}/svc/{service or info.head_service}"
    with tempfile.TemporaryDirectory(prefix="ray-on-eks-") as scratch:
        port = _free_port()
        command = port_forward_command(info, port, kubeconfig_file, service=service, remote_port=remote_port)
        if shutil.which(command[0]) is None:
            raise RemoteError("`kubectl` is not installed or not on PATH (needed to reach the cluster)")
        log_path = Path(scratch) / "port-forward.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout_s
            while not _port_open(port):
                if process.poll() is not None:
                    detail = log_path.read_text(errors="replace").strip().splitlines()
                    raise RemoteError(
                        f"kubectl port-forward to {target} failed: "
                        f"{detail[-1] if detail else f'exit {process.returncode}'}"
                    )
                if time.monotonic() > deadline:
                    raise RemoteError(
                        f"kubectl port-forward did not open port {port} within {timeout_s:.0f}s"
                    )
                time.sleep(0.2)
            yield port
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

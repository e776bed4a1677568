"""The local Ray head that ``python -m workloads run`` starts, reuses and stops.

The head runs as ``ray start --head --block`` in its own process group, bound to 127.0.0.1 with
every port chosen free, so it never collides with another Ray on the machine. Its facts (ports,
temp dir, token) live in ``<local-dir>/local-cluster.json`` so a later CLI call reuses it; ``down``
stops it by process group and by a marker variable that every process of the cluster inherits.

With :class:`ExternalRedis` the head keeps its GCS tables (jobs, actors, nodes, internal KV) in a
real Redis, exactly as a RayCluster with ``gcsFaultTolerance`` does (KubeRay sets ``RAY_REDIS_ADDRESS``,
``RAY_external_storage_namespace`` and ``--redis-password`` on the head): a head stopped and started
again on the same Redis and namespace finds its job history and detached actors. The Redis is checked
(reachable, password accepted) before Ray starts, so a wrong password is one clear error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from workloads.serve_ingress import local_head_env

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_DIR = REPO_ROOT / ".ray-on-eks"
STATE_FILE_NAME = "local-cluster.json"
MARKER_ENV = "RAY_ON_EKS_LOCAL_CLUSTER"
"""Set on the head process; every process of the cluster inherits it (used to stop them all)."""
TEMP_ROOT = "/tmp"
TEMP_PREFIX = "roe-"
"""The head's temp dir is ``tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_ROOT)`` (8 characters
added): short, because Ray and HAProxy put unix sockets under it."""
HAPROXY_DIR_NAME = "haproxy"
"""HAProxy's files, in the head's temp dir (workloads/serve_ingress.py ``HAPROXY_FILE_ENVS``)."""

Progress = Callable[[str], None]


class LocalClusterError(RuntimeError):
    """The local cluster could not be started or reached."""


def _quiet(_: str) -> None:
    return None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free right now (held open together)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    return free_ports(1)[0]


REDIS_ADDRESS_ENV = "RAY_REDIS_ADDRESS"
"""Ray's own variable for the external Redis (``host:port``)."""
REDIS_PASSWORD_FILE_ENV = "RAY_REDIS_PASSWORD_FILE"
"""File holding the Redis password (never the password itself in the environment or the CLI)."""
STORAGE_NAMESPACE_ENV = "RAY_external_storage_namespace"
"""Ray's variable for the key prefix of one cluster's tables in the Redis (KubeRay: the cluster UID)."""
DEFAULT_STORAGE_NAMESPACE = "ray-on-eks-local"
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_REDIS_ADDRESS = re.compile(r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$")


@dataclass(frozen=True, kw_only=True)
class ExternalRedis:
    """GCS fault tolerance for the local head: its GCS state lives in this Redis."""

    address: str
    """``host:port`` (the RayCluster's ``gcsFaultTolerance.redisAddress``)."""
    password_file: Path | None = None
    """File whose content (stripped) is the Redis password; ``None`` for a Redis without one."""
    namespace: str = DEFAULT_STORAGE_NAMESPACE
    """Key prefix of this cluster's tables; a restart must use the same one to find its state."""

    def __post_init__(self) -> None:
        if not _REDIS_ADDRESS.match(self.address) or not 0 < int(self.address.rsplit(":", 1)[1]) < 65536:
            raise LocalClusterError(f"Redis address {self.address!r} must be host:port, e.g. 127.0.0.1:6379")
        if not _NAMESPACE.match(self.namespace):
            raise LocalClusterError(
                f"storage namespace {self.namespace!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )

    def password(self) -> str | None:
        """The password from ``password_file`` (read now, never stored)."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().strip() or None
        except OSError as error:
            raise LocalClusterError(
                f"cannot read the Redis password file {self.password_file}: {error.strerror}"
            ) from None


def redis_from_env(environ: Mapping[str, str] | None = None) -> ExternalRedis | None:
    """``RAY_REDIS_ADDRESS`` (+ ``RAY_REDIS_PASSWORD_FILE``, ``RAY_external_storage_namespace``)."""
    env = os.environ if environ is None else environ
    address = env.get(REDIS_ADDRESS_ENV, "").strip()
    if not address:
        return None
    password_file = env.get(REDIS_PASSWORD_FILE_ENV, "").strip()
    return ExternalRedis(
        address=address,
        password_file=Path(password_file) if password_file else None,
        namespace=env.get(STORAGE_NAMESPACE_ENV, "").strip() or DEFAULT_STORAGE_NAMESPACE,
    )


def redis_command(*parts: str) -> bytes:
    """A Redis (RESP) command."""
    encoded = [part.encode() for part in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$" + str(len(part)).encode() + b"\r\n" + part + b"\r\n" for part in encoded
    )


def check_redis(redis: ExternalRedis, *, timeout_s: float = 5.0) -> None:
    """Raise :class:`LocalClusterError` unless the Redis answers and accepts the password."""
    host, port = redis.address.rsplit(":", 1)
    password = redis.password()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as conn:
            reader = conn.makefile("rb")
            if password is not None:
                conn.sendall(redis_command("AUTH", password))
                reply = reader.readline().decode(errors="replace").strip()
                if not reply.startswith("+OK"):
                    raise LocalClusterError(
                        f"Redis at {redis.address} refused the password from {redis.password_file}: "
                        f"{reply.lstrip('-')}; put the Redis password (its requirepass) in that file"
                    )
            conn.sendall(redis_command("PING"))
            reply = reader.readline().decode(errors="replace").strip()
    except OSError as error:
        raise LocalClusterError(
            f"no Redis answers at {redis.address} ({error}); start it or fix {REDIS_ADDRESS_ENV}"
        ) from None
    if reply.startswith("-NOAUTH"):
        raise LocalClusterError(
            f"Redis at {redis.address} requires a password: set {REDIS_PASSWORD_FILE_ENV} to a file holding it"
        )
    if not reply.startswith("+PONG"):
        raise LocalClusterError(f"{redis.address} did not answer like a Redis server: {reply[:80]!r}")


@dataclass(frozen=True, kw_only=True)
class LocalClusterSpec:
    """How to start a local head."""

    num_cpus: int = 4
    object_store_memory: int = 500 * 1024 * 1024
    token_auth: bool = False
    """Start with Ray token authentication (``RAY_AUTH_MODE=token``)."""
    token: str | None = None
    """The token when ``token_auth`` (default: a new random one)."""
    start_timeout_s: float = 120.0
    redis: ExternalRedis | None = None
    """GCS fault tolerance: keep the GCS state in this Redis (default: in the head's memory)."""


@dataclass(frozen=True, kw_only=True)
class LocalCluster:
    """A running local head started by this CLI."""

    cluster_id: str
    pid: int
    """PID of ``ray start --block``; also its process group id."""
    gcs_port: int
    dashboard_port: int
    serve_port: int
    temp_dir: str
    log_file: str
    token: str | None
    redis_address: str | None = None
    """The external Redis holding the GCS state (GCS fault tolerance), if any."""
    storage_namespace: str | None = None

    @property
    def dashboard_url(self) -> str:
        """HTTP address of the dashboard (Jobs API, Serve REST API)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def serve_url(self) -> str:
        """HTTP address Serve applications are exposed at."""
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def gcs_address(self) -> str:
        """``host:port`` for ``ray.init(address=...)``."""
        return f"127.0.0.1:{self.gcs_port}"


def state_file(local_dir: Path) -> Path:
    """Where the running cluster's facts are recorded."""
    return local_dir / STATE_FILE_NAME


def storage_dir(local_dir: Path) -> Path:
    """Local STORAGE_PATH (absolute)."""
    return (local_dir / "storage").resolve()


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, e.g. our own exited child, counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _dashboard_up(url: str, token: str | None) -> bool:
    request = urllib.request.Request(f"{url}/api/version")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def read_state(local_dir: Path) -> LocalCluster | None:
    """The recorded cluster if its head process is alive, else ``None``."""
    path = state_file(local_dir)
    try:
        cluster = LocalCluster(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return cluster if _pid_alive(cluster.pid) else None


def _write_state(local_dir: Path, cluster: LocalCluster) -> None:
    local_dir.mkdir(parents=True, exist_ok=True)
    path = state_file(local_dir)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(cluster), indent=2))
    partial.chmod(0o600)  # may hold the auth token
    partial.replace(path)


def _ray_executable() -> str:
    candidate = Path(sys.executable).parent / "ray"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise LocalClusterError("the `ray` command is not installed next to this Python")
    return found


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(local_dir: Path, spec: LocalClusterSpec, progress: Progress = _quiet) -> LocalCluster:
    """Start a new head (blocking until its dashboard answers) and record it."""
    local_dir.mkdir(parents=True, exist_ok=True)
    redis_password = None
    if spec.redis is not None:
        check_redis(spec.redis)  # before anything starts: a wrong password is one clear error
        redis_password = spec.redis.password()
    cluster_id = secrets.token_hex(6)
    temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_ROOT)
    log_file = str(local_dir / f"ray-head-{cluster_id}.log")
    flags = (
        "port",
        "dashboard-port",
        "ray-client-server-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
        "node-manager-port",
        "object-manager-port",
    )
    *numbers, serve_port, haproxy_stats_port, haproxy_metrics_port = free_ports(len(flags) + 3)
    ports = dict(zip(flags, numbers, strict=True))
    token = (spec.token or secrets.token_hex(32)) if spec.token_auth else None
    command = [
        _ray_executable(),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--num-cpus={spec.num_cpus}",
        f"--object-store-memory={spec.object_store_memory}",
        f"--temp-dir={temp_dir}",
        "--min-worker-port=0",
        "--max-worker-port=0",
        "--disable-usage-stats",
        *(f"--{flag}={port}" for flag, port in ports.items()),
    ]
    if redis_password is not None:
        # As KubeRay does (rayStartParams redis-password); ray start hands it to the GCS server.
        command.append(f"--redis-password={redis_password}")
    env = dict(os.environ)
    env[MARKER_ENV] = cluster_id
    # Keep every Ray address on loopback (Ray otherwise swaps 127.0.0.1 for the node's own IP).
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray's memory monitor compares *machine-wide* usage to its threshold, so on a shared dev box
    # it kills Ray workers for memory other programs use. Leave OOM handling to the kernel.
    env["RAY_memory_monitor_refresh_ms"] = "0"
    # ... and do not make Ray workers the kernel OOM killer's first victims (Ray's default is
    # oom_score_adj=1000): on a dev box the process using the memory should be the one to go.
    env["RAY_worker_oom_score_adjustment"] = "0"
    # Serve through HAProxy + direct ingress, as a RayService does (workloads/serve_ingress.py);
    # RAY_SERVE_* settings already in the caller's environment win (=0 for the Python proxy actor).
    for name, value in local_head_env(
        stats_port=haproxy_stats_port,
        metrics_port=haproxy_metrics_port,
        haproxy_dir=os.path.join(temp_dir, HAPROXY_DIR_NAME),  # removed with the temp dir by stop()
    ).items():
        env.setdefault(name, value)
    env.pop("RAY_ADDRESS", None)
    # Job entrypoints say `python`: make that this interpreter (the one with Ray installed).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    for name in (REDIS_ADDRESS_ENV, REDIS_PASSWORD_FILE_ENV, STORAGE_NAMESPACE_ENV):
        env.pop(name, None)
    if spec.redis is not None:
        env[REDIS_ADDRESS_ENV] = spec.redis.address
        env[STORAGE_NAMESPACE_ENV] = spec.redis.namespace
    if token:
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN"] = token
    else:
        env["RAY_AUTH_MODE"] = "disabled"
        env.pop("RAY_AUTH_TOKEN", None)
    progress(f"starting local Ray head (logs: {log_file})")
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(local_dir),
            start_new_session=True,
        )
    cluster = LocalCluster(
        cluster_id=cluster_id,
        pid=process.pid,
        gcs_port=ports["port"],
        dashboard_port=ports["dashboard-port"],
        serve_port=serve_port,
        temp_dir=temp_dir,
        log_file=log_file,
        token=token,
        redis_address=spec.redis.address if spec.redis else None,
        storage_namespace=spec.redis.namespace if spec.redis else None,
    )
    _write_state(local_dir, cluster)
    deadline = time.monotonic() + spec.start_timeout_s
    next_note = time.monotonic() + 10
    while not _dashboard_up(cluster.dashboard_url, token):
        if process.poll() is not None:
            stop(cluster)
            state_file(local_dir).unlink(missing_ok=True)
            raise LocalClusterError(
                f"local Ray head exited with status {process.returncode}:\n{_tail(log_file)}"
            )
        if time.monotonic() > deadline:
            stop(cluster)
            state_file(local_dir).unlink(missing_ok=True)
            raise LocalClusterError(
                f"local Ray head did not answer within {spec.start_timeout_s:.0f}s:\n{_tail(log_file)}"
            )
        if time.monotonic() > next_note:
            progress("still waiting for the Ray dashboard ...")
            next_note = time.monotonic() + 10
        time.sleep(0.5)
    progress(f"local Ray head up: dashboard {cluster.dashboard_url}")
    return cluster


def ensure(local_dir: Path, spec: LocalClusterSpec, progress: Progress = _quiet) -> LocalCluster:
    """Reuse the recorded cluster when it is alive and answering, else start one."""
    cluster = read_state(local_dir)
    if cluster is not None:
        # A head with token auth is reused as is (the CLI knows its token); asking for token auth
        # (or for a specific token) from a head without it (or with another token) is an error.
        if (spec.token_auth and cluster.token is None) or (
            spec.token is not None and cluster.token is not None and spec.token != cluster.token
        ):
            raise LocalClusterError(
                "the running local Ray head was started with a different auth setting; "
                "stop it with `python -m workloads down` first"
            )
        wanted = (spec.redis.address, spec.redis.namespace) if spec.redis else (None, None)
        if spec.redis is not None and wanted != (cluster.redis_address, cluster.storage_namespace):
            raise LocalClusterError(
                "the running local Ray head keeps its GCS state elsewhere (Redis "
                f"{cluster.redis_address or 'none'}, namespace {cluster.storage_namespace or 'none'}); "
                "stop it with `python -m workloads down` first"
            )
        if _dashboard_up(cluster.dashboard_url, cluster.token):
            progress(f"reusing local Ray head at {cluster.dashboard_url}")
            return cluster
        progress("recorded local Ray head does not answer; replacing it")
        stop(cluster)
    return start(local_dir, spec, progress)


def _marked_pids(cluster_id: str) -> list[int]:
    """PIDs of processes whose environment carries this cluster's marker."""
    needle = f"{MARKER_ENV}={cluster_id}".encode()
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def stop(cluster: LocalCluster, *, timeout_s: float = 3.0) -> None:
    """Stop every process of ``cluster`` and remove its temp dir.

    SIGTERM first, SIGKILL after ``timeout_s``: `ray start --block` and the raylet outlive SIGTERM
    for a long time, and a local head holds nothing that needs a graceful shutdown.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(cluster.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(cluster.pid):
        time.sleep(0.2)
    for _ in range(3):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(cluster.pid, signal.SIGKILL)
        leftovers = _marked_pids(cluster.cluster_id)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not leftovers:
            break
        time.sleep(0.3)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def down(local_dir: Path, progress: Progress = _quiet) -> bool:
    """Stop the recorded cluster; ``False`` when none was running."""
    cluster = read_state(local_dir)
    state_file(local_dir).unlink(missing_ok=True)
    if cluster is None:
        return False
    progress(f"stopping local Ray head (pid {cluster.pid})")
    stop(cluster)
    return True

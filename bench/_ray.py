"""A local Ray head owned by one benchmark run, and a timed subprocess runner.

The head is ``ray start --head --block`` in its own process group, bound to 127.0.0.1 with every
port chosen free and its own short temp dir, so it never collides with another Ray on the machine.
It is stopped by ITS process group and by a marker variable its processes inherit, never with
``ray stop`` (which stops every Ray of the user on the machine, including other people's).

It is also recorded in ``<local-dir>/local-cluster.json`` the way ``python -m workloads`` records
the head it starts, so ``python -m workloads --local-dir <local-dir> run NAME`` reuses this head
(the CLI's documented "started or reused" path) instead of starting its own.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

MARKER_ENV = "RAY_ON_EKS_BENCH_HEAD"
T = TypeVar("T")


class HeadError(RuntimeError):
    """The benchmark's Ray head could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ray_executable() -> str:
    """The ``ray`` CLI next to this Python (the venv's)."""
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


def client_env() -> dict[str, str]:
    """Environment for the head and client commands: venv first on PATH, no inherited Ray address or token."""
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        env.pop(name, None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # As with an activated venv: job entrypoints run `python` from PATH on the head.
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [venv_bin, *(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)]
    )
    return env


class LocalHead:
    """``with LocalHead(num_cpus=2) as head:`` a running head; stopped (by id) on exit."""

    def __init__(self, *, num_cpus: int = 2, object_store_mb: int = 300, timeout_s: float = 180.0) -> None:
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.timeout_s = timeout_s
        self.marker = secrets.token_hex(6)
        # Short path: Ray creates unix sockets under it (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="rb-", dir="/tmp")
        self.log_file = Path(self.temp_dir) / "head.log"
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.serve_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dashboard_url(self) -> str:
        """Jobs API / dashboard address."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _dashboard_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> LocalHead:
        """Start the head and wait until its dashboard (Jobs API) answers."""
        command = [
            ray_executable(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--port={self.gcs_port}",
            f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            f"--temp-dir={self.temp_dir}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
        ]
        env = client_env()
        env[MARKER_ENV] = self.marker
        env["RAY_AUTH_MODE"] = "disabled"
        # As the workloads CLI's head does: Ray's memory monitor compares machine-wide usage with
        # its threshold, so on a shared box it kills this head's workers for memory other programs
        # use (seen here: a 23 GB mypy run got a quickstart JobSupervisor killed). Leave OOM to the
        # kernel, and do not make Ray workers its first victims.
        env["RAY_memory_monitor_refresh_ms"] = "0"
        env["RAY_worker_oom_score_adjustment"] = "0"
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.temp_dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.timeout_s
        while not self._dashboard_up():
            if self.process.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                self.stop()
                raise HeadError(f"ray start exited with {self.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise HeadError(f"the Ray dashboard did not answer within {self.timeout_s:.0f}s")
            time.sleep(0.5)
        return self

    def record_for_cli(self, local_dir: Path) -> None:
        """Write the state file ``python -m workloads --local-dir`` reads, so ``run`` reuses this head."""
        assert self.process is not None
        local_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "cluster_id": self.marker,
            "pid": self.process.pid,
            "gcs_port": self.gcs_port,
            "dashboard_port": self.dashboard_port,
            "serve_port": self.serve_port,
            "temp_dir": self.temp_dir,
            "log_file": str(self.log_file),
            "token": None,
        }
        (local_dir / "local-cluster.json").write_text(json.dumps(state, indent=2))

    def _marked_pids(self) -> list[int]:
        needle = f"{MARKER_ENV}={self.marker}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        """Stop this head's processes only (its process group, then any marked leftovers)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.process.poll() is None:
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for _ in range(3):
            leftovers = self._marked_pids()
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if not leftovers:
                break
            time.sleep(0.3)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalHead:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class TimedRun:
    """A finished command: wall time, exit status and every output line with its arrival time."""

    argv: list[str]
    wall_s: float
    returncode: int
    lines: list[tuple[float, str]] = field(default_factory=list)

    @property
    def output(self) -> str:
        """stdout and stderr, interleaved as they arrived."""
        return "\n".join(line for _, line in self.lines)

    def first(self, needle: str) -> float | None:
        """Seconds from start to the first line containing ``needle``."""
        return next((at for at, line in self.lines if needle in line), None)


def timed(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 900
) -> TimedRun:
    """Run ``argv``, timestamping each output line (stderr merged into stdout)."""
    start = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        stdin=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            if time.perf_counter() - start > timeout_s:
                process.kill()
                break
        returncode = process.wait()
    return TimedRun(argv=list(argv), wall_s=time.perf_counter() - start, returncode=returncode, lines=lines)


def require_workloads_cli() -> None:
    """Fail with a clear message when the workloads CLI (branch ``workloads``) is not in this tree."""
    from bench._common import REPO

    if not (REPO / "workloads" / "cli.py").is_file():
        raise SystemExit(
            "error: workloads/cli.py is missing: this benchmark drives `python -m workloads`; "
            "merge branch `workloads` first"
        )


def with_retries(action: Callable[[], T], failures: list[str], *, attempts: int = 3) -> T:
    """``action()``, retried after a failure (e.g. Ray's OOM killer on a shared machine).

    Every failure is appended to ``failures`` (the result file reports them): a retry must not
    hide that a run failed, only keep one transient failure from discarding the whole benchmark.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except RuntimeError as error:
            failures.append(str(error)[-1500:])
            if attempt == attempts:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


_JOB_ID = re.compile(r"submitting \S+ as (\S+):")


def job_failure_reason(dashboard_url: str, output: str) -> str:
    """The Jobs API's status message for the job a ``workloads`` command submitted (why it failed)."""
    match = _JOB_ID.search(output)
    if match is None:
        return "no job was submitted"
    try:
        from ray.job_submission import JobSubmissionClient

        info = JobSubmissionClient(dashboard_url).get_job_info(match.group(1))
    except Exception as error:  # diagnostics only: never mask the failure being reported
        return f"job {match.group(1)}: status unavailable ({type(error).__name__}: {error})"
    return f"job {match.group(1)} {info.status}: {info.message or 'no message'}"

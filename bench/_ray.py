"""A local Ray head owned by one benchmark run, and a timed subprocess runner.

The head is the workloads CLI's own local head (``workloads.local_cluster``): ``ray start --head
--block`` in its own process group, every port free on 127.0.0.1, its own short temp dir, stopped by
its process group and cluster marker, never with ``ray stop`` (which stops every Ray of the user on
the machine). It is recorded in ``<local-dir>`` exactly as ``python -m workloads`` records the head
it starts, so ``python -m workloads --local-dir <local-dir> run NAME`` reuses it (the CLI's
documented "started or reused" path) instead of starting its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from workloads import local_cluster

T = TypeVar("T")


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
    """``with LocalHead(local_dir, num_cpus=2) as head:`` a running head, stopped on exit.

    It is the workloads CLI's own local head (``workloads.local_cluster``): started in its own process
    group with free loopback ports and a short temp dir, recorded in ``local_dir`` so that
    ``python -m workloads --local-dir <local_dir> run NAME`` reuses it, and stopped by its process
    group and cluster marker only.
    """

    def __init__(
        self, local_dir: Path, *, num_cpus: int = 2, object_store_mb: int = 300, timeout_s: float = 180.0
    ) -> None:
        self.local_dir = local_dir
        self.spec = local_cluster.LocalClusterSpec(
            num_cpus=num_cpus,
            object_store_memory=object_store_mb * 1024 * 1024,
            start_timeout_s=timeout_s,
        )
        self.cluster: local_cluster.LocalCluster | None = None

    def _running(self) -> local_cluster.LocalCluster:
        if self.cluster is None:
            raise RuntimeError("the benchmark head is not running; call start() first")
        return self.cluster

    @property
    def dashboard_url(self) -> str:
        """Jobs API / dashboard address."""
        return self._running().dashboard_url

    @property
    def dashboard_port(self) -> int:
        return self._running().dashboard_port

    def start(self) -> LocalHead:
        """Start the head and wait until its dashboard (Jobs API) answers."""
        self.cluster = local_cluster.start(self.local_dir, self.spec)
        return self

    def stop(self) -> None:
        """Stop this head's processes only, and forget it in ``local_dir``."""
        if self.cluster is not None:
            local_cluster.stop(self.cluster)
            local_cluster.state_file(self.local_dir).unlink(missing_ok=True)
            self.cluster = None

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

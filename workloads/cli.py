"""``python -m workloads``: run the catalog workloads locally or on a deployed cluster.

Commands::

    catalog                                   workloads and the env contract
    run NAME [--env K=V ...]                  local Ray head (started or reused), Jobs API / Serve REST API
    submit NAME (--stack S | --address URL)   the same submission against a deployed cluster
    list | status ID | logs ID [--follow] | stop ID | dashboard   [--stack S | --address URL]
    down                                      stop the local Ray head this CLI started

Without ``--stack``/``--address`` the commands talk to the local head recorded in ``--local-dir``.
Errors are printed as one ``error: ...`` line (no traceback); the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from workloads import local_cluster
from workloads.catalog import ENV_CONTRACT, WORKLOADS, UnknownWorkloadError, get_workload, workload_env
from workloads.jobs import JobOutcome, SubmissionError, Target
from workloads.local_cluster import LocalClusterError, LocalClusterSpec
from workloads.remote import RemoteError

_SAMPLE_DIGIT_TEXT = (  # scikit-learn digits[0], a "0"
    "0 0 5 13 9 1 0 0 0 0 13 15 10 15 5 0 0 3 15 2 0 11 8 0 0 4 12 0 0 8 8 0 "
    "0 5 8 0 0 9 8 0 0 4 11 0 1 12 7 0 0 2 14 5 10 12 0 0 0 0 6 13 10 0 0 0"
)
SAMPLE_DIGIT: tuple[int, ...] = tuple(int(value) for value in _SAMPLE_DIGIT_TEXT.split())


class CliError(RuntimeError):
    """A user-facing error; printed as one line."""


def _progress(message: str) -> None:
    print(f"[workloads] {message}", file=sys.stderr, flush=True)


def _print(text: str) -> None:
    print(text, flush=True)


def parse_env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{"K": "V"}``; raises :class:`CliError` on a pair without ``=``."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--env expects NAME=VALUE, got {pair!r}")
        result[name.strip()] = value
    return result


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """Outcome of ``run``/``submit``: a finished job, or a deployed Serve application."""

    workload: str
    target: Target
    job: JobOutcome | None = None
    job_id: str | None = None
    deployed: bool = False
    """A service deployed and RUNNING."""
    serve_url: str | None = None
    """Where a locally deployed service answers (``None`` on a cluster)."""

    @property
    def ok(self) -> bool:
        """Whether the job succeeded, was submitted (no follow) or the service is RUNNING."""
        if self.job is not None:
            return self.job.succeeded
        return self.deployed or self.job_id is not None


def _resolve_env(name: str, overrides: dict[str, str], storage_default: Path | None) -> dict[str, str]:
    workload = get_workload(name)
    try:
        env = workload_env(workload, overrides)
    except ValueError as error:
        raise CliError(str(error)) from None
    if workload.needs_storage and "STORAGE_PATH" not in env:
        if storage_default is None:
            raise CliError(f"{name} needs STORAGE_PATH: pass --env STORAGE_PATH=/path/on/the/cluster")
        storage_default.mkdir(parents=True, exist_ok=True)
        env["STORAGE_PATH"] = str(storage_default)
    return env


def execute(
    name: str,
    target: Target,
    *,
    env: dict[str, str],
    remote: bool,
    follow: bool = True,
    serve_http: tuple[str, int] | None = None,
    serve_url: str | None = None,
    timeout_s: float | None = None,
) -> RunResult:
    """Submit ``name`` to ``target`` (job: follow its logs; service: deploy and wait)."""
    from workloads import jobs

    workload = get_workload(name)
    with tempfile.TemporaryDirectory(prefix="ray-on-eks-stage-") as scratch:
        staging = Path(scratch) / "code"
        if workload.kind == "service":
            jobs.deploy_serve(
                target,
                workload,
                env=env,
                staging_dir=staging,
                with_pip=remote,
                output=_progress,
                http_host=serve_http[0] if serve_http else None,
                http_port=serve_http[1] if serve_http else None,
            )
            return RunResult(workload=name, target=target, deployed=True, serve_url=serve_url)
        job_id = jobs.submit(
            target, workload, env=env, staging_dir=staging, with_pip=remote, output=_progress
        )
    if not follow:
        return RunResult(workload=name, target=target, job_id=job_id)
    outcome = jobs.follow(target, job_id, output=_print, timeout_s=timeout_s)
    return RunResult(workload=name, target=target, job=outcome, job_id=job_id)


def run_local(
    name: str,
    overrides: dict[str, str] | None = None,
    *,
    local_dir: Path = local_cluster.DEFAULT_LOCAL_DIR,
    spec: LocalClusterSpec | None = None,
    follow: bool = True,
    timeout_s: float | None = None,
) -> RunResult:
    """What ``run`` does: local head (started or reused), then the cluster submission path."""
    get_workload(name)  # unknown names fail before a cluster is started
    env = _resolve_env(name, dict(overrides or {}), local_cluster.storage_dir(local_dir))
    cluster = local_cluster.ensure(local_dir, spec or LocalClusterSpec(), _progress)
    target = Target(address=cluster.dashboard_url, token=cluster.token)
    return execute(
        name,
        target,
        env=env,
        remote=False,
        follow=follow,
        serve_http=("127.0.0.1", cluster.serve_port),
        serve_url=cluster.serve_url,
        timeout_s=timeout_s,
    )


@contextmanager
def open_target(args: argparse.Namespace) -> Iterator[Target]:
    """The dashboard selected by ``--stack`` / ``--address`` / the recorded local head."""
    from workloads import remote

    if getattr(args, "stack", None):
        _progress(f"reading stack {args.stack} and port-forwarding to its Ray head")
        with remote.connect(args.stack) as connection:
            yield Target(address=connection.address, token=connection.token)
        return
    if getattr(args, "address", None):
        yield Target(address=args.address.rstrip("/"), token=remote.token_from_env())
        return
    cluster = local_cluster.read_state(args.local_dir)
    if cluster is None:
        raise CliError(
            "no local Ray cluster started by this CLI is running "
            "(start one with `python -m workloads run NAME`, or pass --stack / --address)"
        )
    yield Target(address=cluster.dashboard_url, token=cluster.token)


def _finish(result: RunResult) -> int:
    if result.deployed and result.serve_url is None:
        _print("Serve application is RUNNING on the cluster (Serve's HTTP port 8000 on the head service)")
        return 0
    if result.serve_url is not None:
        _print(f"Serve application is RUNNING at {result.serve_url}")
        _print(f"  curl -s {result.serve_url}/healthz")
        _print(
            f"  curl -s -X POST {result.serve_url}/predict -H 'Content-Type: application/json' "
            f"-d '{json.dumps({'instances': [list(SAMPLE_DIGIT)]})}'"
        )
        return 0
    if result.job is None:
        _print(f"submitted {result.job_id}")
        return 0
    if result.job.succeeded:
        _progress(f"job {result.job.job_id} SUCCEEDED")
        return 0
    print(
        f"error: job {result.job.job_id} {result.job.status}; last log lines:\n{result.job.log_tail()}",
        file=sys.stderr,
    )
    return 1


def cmd_catalog(args: argparse.Namespace) -> int:
    for workload in WORKLOADS.values():
        _print(f"{workload.name:16} {workload.kind:8} {workload.entrypoint()}")
        _print(f"{'':16} {workload.description}")
    _print("\nenvironment contract:")
    for var in ENV_CONTRACT:
        _print(f"  {var.name:16} default={var.default!s:12} {var.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from workloads.remote import token_from_env

    # RAY_AUTH_MODE=token: a new local head gets token auth (RAY_AUTH_TOKEN or a random token).
    token_auth = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    # RAY_REDIS_ADDRESS (+ RAY_REDIS_PASSWORD_FILE): GCS state in that Redis (GCS fault tolerance).
    spec = LocalClusterSpec(
        token_auth=token_auth,
        token=token_from_env() if token_auth else None,
        redis=local_cluster.redis_from_env(),
    )
    return _finish(
        run_local(
            args.name,
            parse_env_pairs(args.env),
            local_dir=args.local_dir,
            spec=spec,
            follow=not args.no_follow,
        )
    )


def cmd_submit(args: argparse.Namespace) -> int:
    get_workload(args.name)
    env = _resolve_env(args.name, parse_env_pairs(args.env), None)
    with open_target(args) as target:
        return _finish(execute(args.name, target, env=env, remote=True, follow=not args.no_follow))


def cmd_list(args: argparse.Namespace) -> int:
    from workloads import jobs

    with open_target(args) as target:
        client = jobs.job_client(target)
        details = jobs.call(target, client.list_jobs)
    details.sort(key=lambda job: job.start_time or 0)
    _print(f"{'JOB ID':40} {'STATUS':10} {'STARTED (UTC)':20} ENTRYPOINT")
    for job in details:
        started = (
            datetime.fromtimestamp(job.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            if job.start_time
            else "-"
        )
        _print(
            f"{job.submission_id or job.job_id or '-':40} {job.status.value:10} {started:20} {job.entrypoint}"
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from workloads import jobs

    with open_target(args) as target:
        client = jobs.job_client(target)
        info = jobs.call(target, lambda: client.get_job_info(args.job_id))
    _print(f"{args.job_id}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from workloads import jobs

    with open_target(args) as target:
        if args.follow:
            outcome = jobs.follow(target, args.job_id, output=_print)
            return 0 if outcome.succeeded else 1
        client = jobs.job_client(target)
        _print(jobs.call(target, lambda: client.get_job_logs(args.job_id)).rstrip("\n"))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from workloads import jobs

    with open_target(args) as target:
        client = jobs.job_client(target)
        stopped = jobs.call(target, lambda: client.stop_job(args.job_id))
    _print(f"{args.job_id}: stop requested" if stopped else f"{args.job_id}: already finished")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    with open_target(args) as target:
        _print(f"Ray dashboard: {target.address}")
        if args.stack:
            _progress("port-forward open; press Ctrl-C to close it")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if local_cluster.down(args.local_dir, _progress):
        _print("local Ray head stopped")
    else:
        _print("no local Ray head was running")
    return 0


def dashboard_address(value: str) -> str:
    """``--address``: an http(s) URL with a host and a valid port (argparse turns the error into usage).

    Anything else would reach Ray's SDK, which reads ``host:port`` as a GCS address (and waits a minute
    for it) and raises a traceback for malformed URLs.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a malformed or out-of-range port
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(
            f"expected the Ray dashboard URL, e.g. http://127.0.0.1:8265, got {value!r}"
        )
    return value


def _add_target(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--stack", help="Pulumi stack: read its outputs and port-forward to its Ray head")
    group.add_argument(
        "--address",
        type=dashboard_address,
        help="Ray dashboard URL, e.g. http://127.0.0.1:8265 (token: RAY_AUTH_TOKEN)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m workloads``."""
    parser = argparse.ArgumentParser(prog="python -m workloads", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--local-dir",
        type=Path,
        default=local_cluster.DEFAULT_LOCAL_DIR,
        help="state and storage of the local cluster (default: <repo>/.ray-on-eks)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("catalog", help="list workloads and the env contract").set_defaults(func=cmd_catalog)

    run = commands.add_parser("run", help="run a workload on the local Ray head")
    run.add_argument("name")
    run.add_argument("--env", action="append", default=[], metavar="K=V", help="env contract override")
    run.add_argument("--no-follow", action="store_true", help="submit and return without streaming logs")
    run.set_defaults(func=cmd_run)

    submit = commands.add_parser("submit", help="submit a workload to a deployed cluster")
    submit.add_argument("name")
    _add_target(submit, required=True)
    submit.add_argument("--env", action="append", default=[], metavar="K=V", help="env contract override")
    submit.add_argument("--no-follow", action="store_true", help="submit and return without streaming logs")
    submit.set_defaults(func=cmd_submit)

    listing = commands.add_parser("list", help="list jobs")
    _add_target(listing)
    listing.set_defaults(func=cmd_list)

    for command, func, help_text in (
        ("status", cmd_status, "show a job's status"),
        ("logs", cmd_logs, "print a job's logs"),
        ("stop", cmd_stop, "stop a job"),
    ):
        sub = commands.add_parser(command, help=help_text)
        sub.add_argument("job_id", metavar="ID")
        _add_target(sub)
        if command == "logs":
            sub.add_argument("--follow", action="store_true", help="stream until the job ends")
        sub.set_defaults(func=func)

    dashboard = commands.add_parser("dashboard", help="print the dashboard URL (port-forward for --stack)")
    _add_target(dashboard)
    dashboard.set_defaults(func=cmd_dashboard)

    commands.add_parser("down", help="stop the local Ray head started by this CLI").set_defaults(
        func=cmd_down
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.local_dir = Path(args.local_dir).resolve()
    try:
        return int(args.func(args))
    except (CliError, SubmissionError, RemoteError, LocalClusterError, UnknownWorkloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

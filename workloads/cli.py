"""``python -m workloads``: run the catalog workloads, or your own code, locally or on a cluster.

Commands::

    catalog                                   workloads and the env contract
    run NAME|PATH [--env K=V ...]             local Ray head (started or reused), Jobs API / Serve REST API
    submit NAME|PATH (--stack S | --address URL)   the same submission against a deployed cluster
    list | status ID | logs ID [--follow] | stop ID | dashboard   [--stack S | --address URL]
    serve-url SERVICE --stack S               port-forward to a RayService's Serve port, print the URL
    down                                      stop the local Ray head this CLI started

PATH is a script or a directory (like ``ray job submit --working-dir``): ``--entrypoint CMD``
(default ``python SCRIPT``, or ``python main.py`` in a directory) and ``--pip PKG`` apply to it; it
gets the same Jobs API path, token handling and STORAGE_PATH as the catalog workloads.
Without ``--stack``/``--address`` the commands talk to the local head recorded in ``--local-dir``.
Errors are printed as one ``error: ...`` line (no traceback); the exit status is 1, or 2 for a bad
``--env`` value (checked before anything is submitted). Ctrl-C while following a job leaves the job
running and prints the exact ``stop`` command.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from workloads import local_cluster
from workloads.catalog import ENV_CONTRACT, WORKLOADS, UnknownWorkloadError, get_workload, workload_env
from workloads.jobs import JobOutcome, SubmissionError, Target
from workloads.local_cluster import LocalClusterError, LocalClusterSpec
from workloads.remote import RemoteError
from workloads.settings import SettingsError, check_env

DESCRIPTION = (
    "Run the catalog workloads, or your own script or directory, on a local Ray head or on a "
    "deployed cluster."
)
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

_SAMPLE_DIGIT_TEXT = (  # scikit-learn digits[0], a "0"
    "0 0 5 13 9 1 0 0 0 0 13 15 10 15 5 0 0 3 15 2 0 11 8 0 0 4 12 0 0 8 8 0 "
    "0 5 8 0 0 9 8 0 0 4 11 0 1 12 7 0 0 2 14 5 10 12 0 0 0 0 6 13 10 0 0 0"
)
SAMPLE_DIGIT: tuple[int, ...] = tuple(int(value) for value in _SAMPLE_DIGIT_TEXT.split())


class CliError(RuntimeError):
    """A user-facing error; printed as one line (exit status 1)."""


class EnvError(CliError):
    """A bad ``--env`` name or value, refused before submission (exit status 2, like the workloads)."""


def _progress(message: str) -> None:
    print(f"[workloads] {message}", file=sys.stderr, flush=True)


def _print(text: str) -> None:
    if not sys.stdout.isatty():
        text = ANSI_RE.sub("", text)
    print(text, flush=True)


def output_env() -> dict[str, str]:
    """Ray's own log switches for the job's driver.

    ``RAY_DEDUP_LOGS=0`` always: Ray's log deduplicator (``ray/_private/ray_logging``
    ``LogDeduplicator``) treats worker lines that differ only in words with digits (ranks, pids,
    epochs) as one line, prints the first and holds the others until a later log batch arrives, so
    "worker rank 0/2 pid N" could be missing for as long as the workers are quiet. When our stdout
    is not a terminal (a file, a pipe, CI), also ``RAY_COLOR_PREFIX=0`` (no colour codes around
    ``(pid=...)`` prefixes, ``ray/_private/worker.py``) and ``RAY_DATA_DISABLE_PROGRESS_BARS=1`` (no
    Ray Data progress bars, ``ray/data/context.py``); on a terminal those stay as Ray makes them.
    """
    env = {"RAY_DEDUP_LOGS": "0"}
    if not sys.stdout.isatty():
        env.update(RAY_COLOR_PREFIX="0", RAY_DATA_DISABLE_PROGRESS_BARS="1")
    return env


@dataclass
class _Session:
    """What an interrupted command must tell the user: the job it left running and how to stop it."""

    job_id: str | None = None
    stop_flags: list[str] = field(default_factory=list)


_SESSION = _Session()


def _remember_job(job_id: str) -> None:
    _SESSION.job_id = job_id


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


@dataclass(frozen=True, kw_only=True)
class OwnCode:
    """The user's own script or directory, submitted like ``ray job submit --working-dir``."""

    path: Path
    entrypoint: str
    pip: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Base of the job id: the script's stem or the directory's name."""
        return self.path.stem if self.path.is_file() else self.path.name

    def stage(self, staging: Path) -> Path:
        """The working_dir to upload: the directory itself, or a directory with just the script."""
        if self.path.is_dir():
            return self.path
        staging.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.path, staging / self.path.name)
        return staging


def looks_like_path(spec: str) -> bool:
    """Whether ``run``/``submit`` got a PATH rather than a workload name (names win when both fit)."""
    if spec in WORKLOADS:
        return False
    return "/" in spec or spec.endswith(".py") or spec in {".", ".."} or Path(spec).exists()


def own_code(spec: str, *, entrypoint: str | None, pip: Sequence[str]) -> OwnCode:
    """Resolve a PATH argument; raises :class:`CliError` naming what is wrong and the fix."""
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise CliError(f"{spec} is neither a workload ({', '.join(sorted(WORKLOADS))}) nor an existing path")
    if path.is_file():
        return OwnCode(path=path, entrypoint=entrypoint or f"python {shlex.quote(path.name)}", pip=tuple(pip))
    if entrypoint is None:
        if not (path / "main.py").is_file():
            raise CliError(
                f"{spec} is a directory without main.py: pass --entrypoint 'python your_script.py'"
            )
        entrypoint = "python main.py"
    return OwnCode(path=path, entrypoint=entrypoint, pip=tuple(pip))


def _checked(env: dict[str, str]) -> dict[str, str]:
    try:
        check_env({name: value for name, value in env.items() if name in _CONTRACT_NAMES})
    except SettingsError as error:
        raise EnvError(f"--env {error}") from None
    return env


_CONTRACT_NAMES = frozenset(var.name for var in ENV_CONTRACT)


def _resolve_env(name: str, overrides: dict[str, str], storage_default: Path | str | None) -> dict[str, str]:
    workload = get_workload(name)
    try:
        env = workload_env(workload, overrides)
    except ValueError as error:
        raise EnvError(f"--env {error}") from None
    if workload.needs_storage and "STORAGE_PATH" not in env:
        if storage_default is None:
            raise CliError(f"{name} needs STORAGE_PATH: pass --env STORAGE_PATH=/path/on/the/cluster")
        if isinstance(storage_default, Path):
            storage_default.mkdir(parents=True, exist_ok=True)
        env["STORAGE_PATH"] = str(storage_default)
    return _checked(env)


def _own_code_env(overrides: dict[str, str], storage_default: Path | str | None) -> dict[str, str]:
    """Own code gets any ``--env`` names; contract names are checked, STORAGE_PATH is provided."""
    env = dict(overrides)
    if "STORAGE_PATH" not in env and storage_default is not None:
        if isinstance(storage_default, Path):
            storage_default.mkdir(parents=True, exist_ok=True)
        env["STORAGE_PATH"] = str(storage_default)
    return _checked(env)


def execute(
    name: str | OwnCode,
    target: Target,
    *,
    env: dict[str, str],
    remote: bool,
    follow: bool = True,
    serve_http: tuple[str, int] | None = None,
    serve_url: str | None = None,
    timeout_s: float | None = None,
) -> RunResult:
    """Submit ``name`` (or own code) to ``target`` (job: follow its logs; service: deploy and wait)."""
    from workloads import jobs

    env = {**output_env(), **env}
    if isinstance(name, OwnCode):
        code = name
        with tempfile.TemporaryDirectory(prefix="ray-on-eks-stage-") as scratch:
            job_id = jobs.submit_entrypoint(
                target,
                name=code.name,
                entrypoint=code.entrypoint,
                working_dir=code.stage(Path(scratch) / "code"),
                env=env,
                pip=code.pip,
                output=_progress,
                on_submitted=_remember_job,
            )
        return _follow(code.name, target, job_id, follow=follow, timeout_s=timeout_s)
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
            app_url = (
                serve_url
                if serve_url is None or workload.serve_app is None
                else workload.serve_app.url(serve_url)
            )
            return RunResult(workload=name, target=target, deployed=True, serve_url=app_url)
        job_id = jobs.submit(
            target,
            workload,
            env=env,
            staging_dir=staging,
            with_pip=remote,
            output=_progress,
            on_submitted=_remember_job,
        )
    return _follow(name, target, job_id, follow=follow, timeout_s=timeout_s)


def _follow(name: str, target: Target, job_id: str, *, follow: bool, timeout_s: float | None) -> RunResult:
    from workloads import jobs

    if not follow:
        return RunResult(workload=name, target=target, job_id=job_id)
    outcome = jobs.follow(target, job_id, output=_print, timeout_s=timeout_s)
    return RunResult(workload=name, target=target, job=outcome, job_id=job_id)


def run_local(
    name: str | OwnCode,
    overrides: dict[str, str] | None = None,
    *,
    local_dir: Path = local_cluster.DEFAULT_LOCAL_DIR,
    spec: LocalClusterSpec | None = None,
    follow: bool = True,
    timeout_s: float | None = None,
) -> RunResult:
    """What ``run`` does: local head (started or reused), then the cluster submission path."""
    storage = local_cluster.storage_dir(local_dir)
    if isinstance(name, OwnCode):
        env = _own_code_env(dict(overrides or {}), storage)
    else:
        get_workload(name)  # unknown names fail before a cluster is started
        env = _resolve_env(name, dict(overrides or {}), storage)
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


@dataclass(frozen=True, kw_only=True)
class Destination:
    """An open dashboard plus what the stack says about it."""

    target: Target
    storage_path: str | None = None
    """The stack's ``storagePath`` output (``--stack`` only): STORAGE_PATH for its workloads."""


def stop_command(job_id: str, flags: Sequence[str]) -> str:
    """The exact ``stop`` command line (``--local-dir`` is global: it goes before the command)."""
    if flags[:1] == ["--local-dir"]:
        return shlex.join(["python", "-m", "workloads", *flags, "stop", job_id])
    return shlex.join(["python", "-m", "workloads", "stop", job_id, *flags])


def target_flags(args: argparse.Namespace) -> list[str]:
    """The ``--stack``/``--address``/``--local-dir`` flags that reach the same cluster again."""
    if getattr(args, "stack", None):
        return ["--stack", args.stack]
    if getattr(args, "address", None):
        return ["--address", args.address]
    if Path(args.local_dir) != local_cluster.DEFAULT_LOCAL_DIR.resolve():
        return ["--local-dir", str(args.local_dir)]
    return []


@contextmanager
def open_destination(args: argparse.Namespace) -> Iterator[Destination]:
    """The dashboard selected by ``--stack`` / ``--address`` / the recorded local head."""
    from workloads import remote

    if getattr(args, "stack", None):
        _progress(f"reading stack {args.stack} and port-forwarding to its Ray head")
        with remote.connect(args.stack) as connection:
            yield Destination(
                target=Target(address=connection.address, token=connection.token),
                storage_path=connection.storage_path,
            )
        return
    if getattr(args, "address", None):
        yield Destination(target=Target(address=args.address.rstrip("/"), token=remote.token_from_env()))
        return
    cluster = local_cluster.read_state(args.local_dir)
    if cluster is None:
        raise CliError(
            "no local Ray cluster started by this CLI is running "
            "(start one with `python -m workloads run NAME`, or pass --stack / --address)"
        )
    yield Destination(target=Target(address=cluster.dashboard_url, token=cluster.token))


@contextmanager
def open_target(args: argparse.Namespace) -> Iterator[Target]:
    """The dashboard selected by ``--stack`` / ``--address`` / the recorded local head."""
    with open_destination(args) as destination:
        yield destination.target


def _finish(result: RunResult) -> int:
    if result.deployed and result.serve_url is None:
        _print("Serve application is RUNNING on the cluster (Serve's HTTP port 8000 on the head service)")
        return 0
    if result.serve_url is not None:
        _print(f"Serve application is RUNNING at {result.serve_url}")
        app = get_workload(result.workload).serve_app if result.workload in WORKLOADS else None
        _print(f"  curl -s {result.serve_url}{app.health_path if app else '/healthz'}")
        if result.workload == "serve":
            _print(
                f"  curl -s -X POST {result.serve_url}/predict -H 'Content-Type: application/json' "
                f"-d '{json.dumps({'instances': [list(SAMPLE_DIGIT)]})}'"
            )
        for example in app.examples if app else ():
            _print("  " + example.format(url=result.serve_url))
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
    _print("Catalog workloads (run NAME / submit NAME; or pass a PATH to your own script or directory):")
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
    _SESSION.stop_flags = target_flags(args)
    return _finish(
        run_local(
            _program(args),
            parse_env_pairs(args.env),
            local_dir=args.local_dir,
            spec=spec,
            follow=not args.no_follow,
        )
    )


def _program(args: argparse.Namespace) -> str | OwnCode:
    """The workload name, or the user's own code, named by ``args.name`` (validated)."""
    if looks_like_path(args.name):
        return own_code(args.name, entrypoint=args.entrypoint, pip=args.pip)
    get_workload(args.name)
    if args.entrypoint or args.pip:
        flag = "--entrypoint" if args.entrypoint else "--pip"
        raise CliError(f"{flag} applies to your own code (a PATH), not to the catalog workload {args.name!r}")
    return args.name


def cmd_submit(args: argparse.Namespace) -> int:
    program = _program(args)
    overrides = parse_env_pairs(args.env)
    # Checked before connecting: a bad value never costs a port-forward. Only --stack supplies a
    # STORAGE_PATH itself (its storagePath output), so the others must have it by now.
    if isinstance(program, OwnCode):
        _own_code_env(overrides, None)
    elif args.stack:
        try:
            _checked(workload_env(get_workload(program), overrides))
        except ValueError as error:
            raise EnvError(f"--env {error}") from None
    else:
        _resolve_env(program, overrides, None)
    _SESSION.stop_flags = target_flags(args)
    with open_destination(args) as destination:
        if isinstance(program, OwnCode):
            env = _own_code_env(overrides, destination.storage_path)
        else:
            env = _resolve_env(program, overrides, destination.storage_path)
        return _finish(execute(program, destination.target, env=env, remote=True, follow=not args.no_follow))


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


def cmd_serve_url(args: argparse.Namespace) -> int:
    from workloads import remote

    _progress(f"reading stack {args.stack} and port-forwarding to RayService {args.service}")
    with remote.connect_serve(args.stack, args.service) as url:
        _print(f"Serve application of RayService {args.service}: {url}")
        _print(f"  curl -s {url}/healthz")
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


def _add_program(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", metavar="NAME|PATH", help="a catalog workload, or your own script or directory"
    )
    parser.add_argument(
        "--entrypoint",
        metavar="CMD",
        help="command that starts your code (default: python SCRIPT, or python main.py in a directory)",
    )
    parser.add_argument(
        "--pip", action="append", default=[], metavar="PKG", help="pip requirement for your code (repeatable)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable (catalog workloads: env contract names only; see `catalog`)",
    )
    parser.add_argument("--no-follow", action="store_true", help="submit and return without streaming logs")


def _workloads_epilog() -> str:
    lines = ["workloads:"]
    lines += [
        f"  {workload.name:16} {workload.kind:8} {workload.description}" for workload in WORKLOADS.values()
    ]
    lines.append(
        "PATH: a script (run as python SCRIPT) or a directory (--entrypoint, default python main.py)"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m workloads``."""
    parser = argparse.ArgumentParser(prog="python -m workloads", description=DESCRIPTION)
    parser.add_argument(
        "--local-dir",
        type=Path,
        default=local_cluster.DEFAULT_LOCAL_DIR,
        help="state and storage of the local cluster (default: <repo>/.ray-on-eks)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("catalog", help="list workloads and the env contract").set_defaults(func=cmd_catalog)

    run = commands.add_parser(
        "run",
        help="run a workload or your own code on the local Ray head",
        description="Run a catalog workload or your own code on a local Ray head (started or reused).",
        epilog=_workloads_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_program(run)
    run.set_defaults(func=cmd_run)

    submit = commands.add_parser(
        "submit",
        help="submit a workload or your own code to a deployed cluster",
        description="Submit a catalog workload or your own code to a deployed cluster.",
        epilog=_workloads_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_program(submit)
    _add_target(submit, required=True)
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

    serve_url = commands.add_parser(
        "serve-url", help="port-forward to a RayService's Serve port and print its URL (--stack)"
    )
    serve_url.add_argument("service", metavar="SERVICE", help="the rayServices[].name of the stack")
    serve_url.add_argument("--stack", required=True, help="Pulumi stack that deployed the RayService")
    serve_url.set_defaults(func=cmd_serve_url)

    commands.add_parser("down", help="stop the local Ray head started by this CLI").set_defaults(
        func=cmd_down
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.local_dir = Path(args.local_dir).resolve()
    _SESSION.job_id, _SESSION.stop_flags = None, []
    try:
        return int(args.func(args))
    except EnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (CliError, SubmissionError, RemoteError, LocalClusterError, UnknownWorkloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if _SESSION.job_id is None:
            print("interrupted", file=sys.stderr)
        else:
            stop = stop_command(_SESSION.job_id, _SESSION.stop_flags)
            print(
                f"interrupted: job {_SESSION.job_id} keeps running; stop it with:\n  {stop}",
                file=sys.stderr,
                flush=True,
            )
        return 130

"""Fuzzed command lines: usage or a one-line error with the documented exit status, never a traceback.

Exit statuses (workloads/README.md): 0 success, 1 a one-line ``error: ...`` on stderr, 2 a usage error
(argparse prints the usage). Hypothesis builds argument vectors from the parser's own commands and
options, the catalog's workload names and random text. No Ray is started: the local head's start is
replaced by a refusal (starting Ray is not what is fuzzed here), ``--stack`` has no Pulumi CLI to read
from, and ``--address`` points at real local HTTP servers that are not Ray dashboards (one answers 503, one
pretends to be a dashboard and then sends broken JSON), or at malformed URLs.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import fuzz
from workloads import local_cluster
from workloads.catalog import WORKLOADS
from workloads.cli import build_parser, main
from workloads.local_cluster import LocalClusterError

EXAMPLES = {"argv": 0, "0": 0, "1": 0, "2": 0}


class _Garbage(http.server.BaseHTTPRequestHandler):
    """503 with an HTML body for everything (``lying = False``); or (``lying``) a plausible
    ``/api/version`` and then truncated JSON for every Jobs API call."""

    lying = False

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = 503, b"<html>not a ray dashboard</html>"
        if self.lying:
            status = 200
            body = (
                json.dumps(
                    {"version": "4", "ray_version": "2.60.0", "ray_commit": "x", "session_name": "s"}
                ).encode()
                if self.path.startswith("/api/version")
                else b'[1, {"weird": true}'
            )
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if self.lying else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Liar(_Garbage):
    lying = True


@pytest.fixture(scope="module")
def garbage_urls() -> Iterator[tuple[str, str]]:
    """A real local HTTP server that is no Ray dashboard, and one that pretends to be one."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) for handler in (_Garbage, _Liar)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield tuple(f"http://127.0.0.1:{server.server_address[1]}" for server in servers)  # type: ignore[misc]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        if action.choices:
            return sorted(action.choices)
    raise AssertionError("the CLI has no subcommands")


COMMANDS = _subcommands()
OPTIONS = ["--env", "--no-follow", "--follow", "--stack", "--address", "--help", "-h", "--", "-x", "--bogus"]
WORDS = [*WORKLOADS, "NUM_WORKERS=0", "EPOCHS=x", "=", "K", "STORAGE_PATH=", "raysubmit_123", "dev", "-1"]
ADDRESSES = ["", "http://", "127.0.0.1:9", "not a url", "http://[::1", "http://127.0.0.1:99999", "ftp://x"]


def _safe_text(text: str) -> bool:
    # argparse accepts abbreviations: "--l..." would be --local-dir, which the test owns.
    return not text.startswith("--l") and "\x00" not in text


@st.composite
def well_formed(draw: st.DrawFn, garbage: tuple[str, str]) -> list[str]:
    """A command with plausible arguments and a target: reaches the code behind the parser."""
    command = draw(st.sampled_from(COMMANDS))
    argv = [command, *draw(st.lists(st.sampled_from(WORDS), max_size=2))]
    target = draw(st.sampled_from(["address", "stack", "none"]))
    if target == "address":
        argv += ["--address", draw(st.sampled_from([*garbage, f"{garbage[0]}/", f"{garbage[1]}/"]))]
    elif target == "stack":
        argv += ["--stack", draw(st.sampled_from(["dev", "hyperpod", "no-such-stack"]))]
    argv += draw(st.lists(st.sampled_from(["--no-follow", "--follow", "--env", "EPOCHS=1"]), max_size=2))
    return argv


@st.composite
def argvs(draw: st.DrawFn, garbage: tuple[str, str]) -> list[str]:
    if draw(st.booleans()):
        return draw(well_formed(garbage))
    tokens = st.one_of(
        st.sampled_from(OPTIONS),
        st.sampled_from(WORDS),
        st.sampled_from([*garbage, *ADDRESSES]),
        st.text(max_size=12).filter(_safe_text),
    )
    head = draw(st.lists(st.sampled_from(["--help", "-h", "--bogus"]), max_size=1))
    command = draw(st.one_of(st.sampled_from(COMMANDS), st.text(max_size=8).filter(_safe_text)))
    return [*head, command, *draw(st.lists(tokens, max_size=6))]


def _run(argv: list[str], local_dir: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["--local-dir", str(local_dir), *argv])
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, out.getvalue(), err.getvalue()


def test_cli_fuzz(garbage_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    local_dir = tmp_path_factory.mktemp("cli-fuzz")
    refuse = LocalClusterError("fuzz: no local Ray head is started by this test")

    @fuzz(150)
    @given(argvs(garbage_urls))
    def check(argv: list[str]) -> None:
        EXAMPLES["argv"] += 1
        status, out, err = _run(argv, local_dir)
        EXAMPLES[str(status)] = EXAMPLES.get(str(status), 0) + 1
        shown = f"argv={argv!r}\nstatus={status}\nstdout={out[-2000:]}\nstderr={err[-2000:]}"
        assert "Traceback" not in out + err, shown
        assert status in (0, 1, 2), shown
        if status == 1:
            errors = [line for line in err.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, shown
        if status == 2:
            assert "usage: python -m workloads" in err and ": error: " in err, shown
        if status == 0 and ("--help" in argv or "-h" in argv):
            assert "usage: python -m workloads" in out, shown

    with (
        mock.patch.object(local_cluster, "ensure", side_effect=refuse),
        mock.patch.dict("os.environ", {}, clear=False) as environ,
    ):
        for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
            environ.pop(name, None)
        check()
    print(f"\ncli fuzz examples: {json.dumps(EXAMPLES)}")
    assert EXAMPLES["argv"] >= 100

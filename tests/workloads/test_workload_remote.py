"""Unit tests of reaching a deployed cluster, with fake `pulumi` / `kubectl` executables on PATH."""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.fakes import port_forward
from workloads import remote
from workloads.remote import (
    OUTPUT_AUTH_SECRET,
    OUTPUT_HEAD_SERVICE,
    OUTPUT_KUBECONFIG,
    OUTPUT_NAMESPACE,
    RemoteError,
    parse_stack_outputs,
)

OUTPUTS = {
    OUTPUT_NAMESPACE: "ray",
    OUTPUT_HEAD_SERVICE: "raycluster-head-svc",
    OUTPUT_AUTH_SECRET: "ray-auth",
    OUTPUT_KUBECONFIG: {"apiVersion": "v1", "clusters": []},
    "other": 1,
}

# A fake `kubectl`: records its argv; `get secret` prints base64 of $FAKE_TOKEN; `port-forward`
# serves HTTP on the requested 127.0.0.1 port (like the real one) until terminated, or with
# $FAKE_FORWARD_TO=host:port proxies that port to a real server (tests/fakes/port_forward.py).
FAKE_KUBECTL = """
import http.server, json, os, sys, base64
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["kubectl", *args]) + "\\n")
if "get" in args and "secret" in args:
    token = os.environ.get("FAKE_TOKEN", "")
    sys.stdout.write(base64.b64encode(token.encode()).decode() if token else "")
    sys.exit(0)
if "port-forward" in args:
    if os.environ.get("FAKE_FORWARD_FAIL"):
        sys.stderr.write("error: services \\"nope\\" not found\\n")
        sys.exit(1)
    local = int(args[-1].split(":")[0])
    forward_to = os.environ.get("FAKE_FORWARD_TO")  # host:port of a real server (a local Ray head)
    if forward_to:  # the shared tunnel fake, exec'd so terminating this process ends it
        os.execv(sys.executable, [sys.executable, PORT_FORWARD, str(local), forward_to])
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"path": self.path, "auth": self.headers.get("Authorization")}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", local), Handler).serve_forever()
sys.exit(3)
"""

FAKE_PULUMI = """
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["pulumi", *sys.argv[1:]]) + "\\n")
if os.environ.get("FAKE_PULUMI_FAIL"):
    sys.stderr.write("error: no stack named 'prod' found\\n")
    sys.exit(255)
sys.stdout.write(os.environ["FAKE_OUTPUTS"])
"""


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin dir with fake pulumi/kubectl first on PATH; returns the argv log file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("kubectl", FAKE_KUBECTL), ("pulumi", FAKE_PULUMI)):
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\nPORT_FORWARD = {str(port_forward.SCRIPT)!r}\n{body}")
        script.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_OUTPUTS", json.dumps(OUTPUTS))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_parse_outputs_reads_the_documented_keys() -> None:
    info = parse_stack_outputs("dev", OUTPUTS)
    assert (info.namespace, info.head_service, info.auth_secret) == ("ray", "raycluster-head-svc", "ray-auth")
    assert info.auth_secret_key == remote.DEFAULT_AUTH_SECRET_KEY
    assert json.loads(info.kubeconfig or "") == OUTPUTS[OUTPUT_KUBECONFIG]


def test_auth_secret_and_kubeconfig_are_optional() -> None:
    outputs = {OUTPUT_NAMESPACE: "ray", OUTPUT_HEAD_SERVICE: "head", OUTPUT_AUTH_SECRET: ""}
    info = parse_stack_outputs("dev", outputs)
    assert info.auth_secret is None and info.kubeconfig is None


@pytest.mark.parametrize("missing", [OUTPUT_NAMESPACE, OUTPUT_HEAD_SERVICE])
def test_missing_required_output_names_it_and_lists_what_exists(missing: str) -> None:
    outputs = {key: value for key, value in OUTPUTS.items() if key != missing}
    with pytest.raises(RemoteError) as caught:
        parse_stack_outputs("dev", outputs)
    message = str(caught.value)
    assert f"stack 'dev' has no output {missing!r}" in message
    assert "other" in message


def test_read_stack_runs_pulumi_with_secrets(fake_tools: Path) -> None:
    info = remote.read_stack("dev")
    assert info.namespace == "ray"
    assert calls(fake_tools) == [["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", "dev"]]


def test_pulumi_failure_is_reported_in_one_line(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "1")
    with pytest.raises(RemoteError, match="cannot read the outputs of stack 'prod': error: no stack named"):
        remote.read_stack("prod")


def test_non_json_output_is_reported(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OUTPUTS", "Current stack outputs (2):")
    with pytest.raises(RemoteError, match="did not print JSON"):
        remote.read_stack("dev")


def test_missing_pulumi_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RemoteError, match="`pulumi` is not installed or not on PATH"):
        remote.read_stack("dev")


def test_port_forward_command_binds_loopback_to_the_dashboard() -> None:
    info = parse_stack_outputs("dev", OUTPUTS)
    assert remote.port_forward_command(info, 40123, Path("/tmp/kc")) == [
        "kubectl",
        "--kubeconfig=/tmp/kc",
        "port-forward",
        "--address=127.0.0.1",
        "-n",
        "ray",
        "svc/raycluster-head-svc",
        "40123:8265",
    ]
    assert remote.port_forward_command(info, 1, None)[:2] == ["kubectl", "port-forward"]


def test_token_prefers_env_then_file(tmp_path: Path) -> None:
    assert remote.token_from_env({"RAY_AUTH_TOKEN": " abc "}) == "abc"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert remote.token_from_env({"RAY_AUTH_TOKEN_PATH": str(token_file)}) == "from-file"
    assert remote.token_from_env({}) is None
    with pytest.raises(RemoteError, match="cannot read RAY_AUTH_TOKEN_PATH"):
        remote.token_from_env({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")})


def test_connect_reads_secret_forwards_and_closes(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOKEN", "s3cret")
    with remote.connect("dev", timeout_s=20) as connection:
        assert connection.token == "s3cret"
        assert connection.address.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{connection.address}/api/version", timeout=5) as response:
            assert json.loads(response.read())["path"] == "/api/version"
        port = int(connection.address.rsplit(":", 1)[1])
    recorded = calls(fake_tools)
    secret_call = next(call for call in recorded if "secret" in call)
    assert secret_call[-3:] == ["ray-auth", "-o", "jsonpath={.data.auth_token}"]
    assert any(arg.startswith("--kubeconfig=") for arg in secret_call)
    forward = next(call for call in recorded if "port-forward" in call)
    assert forward[-2:] == ["svc/raycluster-head-svc", f"{port}:8265"]
    with socket.socket() as sock:  # the port-forward process is gone: nothing listens any more
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_connect_tunnels_to_a_real_server_through_the_shared_port_forward_fake(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAKE_FORWARD_TO: the fake kubectl execs tests/fakes/port_forward.py, which proxies the
    forwarded port to a real server (here an HTTP server in this process; a Ray head elsewhere)."""
    seen: list[tuple[str, str | None]] = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"upstream": True, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("FAKE_FORWARD_TO", f"127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("FAKE_TOKEN", "s3cret")
        with remote.connect("dev", timeout_s=20) as connection:
            request = urllib.request.Request(
                f"{connection.address}/api/version", headers={"Authorization": "Bearer s3cret"}
            )
            for _ in range(2):  # two connections through one tunnel
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert json.loads(response.read()) == {"upstream": True, "path": "/api/version"}
            port = int(connection.address.rsplit(":", 1)[1])
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("/api/version", "Bearer s3cret")] * 2
    with socket.socket() as sock:  # the tunnel ended with the port-forward process
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_env_token_skips_the_secret(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    info = parse_stack_outputs("dev", OUTPUTS)
    assert remote.read_token(info, None) == "from-env"
    assert calls(fake_tools) == []


def test_secret_without_the_key_is_an_error(fake_tools: Path) -> None:
    info = parse_stack_outputs("dev", OUTPUTS)
    with pytest.raises(RemoteError, match="has no key 'auth_token'"):
        remote.read_token(info, None)


def test_storage_path_and_ray_services_come_from_the_outputs() -> None:
    entry = {"serveService": "digits-serve-svc", "port": 8000, "portForwardCommand": "kubectl ..."}
    info = parse_stack_outputs(
        "dev", {**OUTPUTS, "storagePath": "s3://b/ray-results", "rayServices": {"digits": entry}}
    )
    assert info.storage_path == "s3://b/ray-results" and info.ray_services == {"digits": entry}
    assert parse_stack_outputs("dev", OUTPUTS).storage_path is None
    with pytest.raises(RemoteError, match="'rayServices' must map service names to objects"):
        parse_stack_outputs("dev", {**OUTPUTS, "rayServices": ["digits"]})


def test_serve_url_forwards_to_the_services_serve_port(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {"serveService": "digits-serve-svc", "port": 8000}
    monkeypatch.setenv("FAKE_OUTPUTS", json.dumps({**OUTPUTS, "rayServices": {"digits": entry}}))
    with remote.connect_serve("dev", "digits", timeout_s=20) as url:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            assert json.loads(response.read())["path"] == "/healthz"
        port = int(url.rsplit(":", 1)[1])
    forward = next(call for call in calls(fake_tools) if "port-forward" in call)
    assert forward[-3:] == ["ray", "svc/digits-serve-svc", f"{port}:8000"]
    assert not any("secret" in call for call in calls(fake_tools))  # Serve's port needs no token
    with (
        pytest.raises(
            RemoteError, match=r"stack 'dev' has no RayService 'other' \(its RayServices: digits\)"
        ),
        remote.connect_serve("dev", "other"),
    ):
        pass


def test_failed_port_forward_shows_kubectls_error(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FORWARD_FAIL", "1")
    monkeypatch.setenv("FAKE_TOKEN", "t")
    expected = 'port-forward to ray/svc/raycluster-head-svc failed: error: services "nope"'
    with pytest.raises(RemoteError, match=expected), remote.connect("dev", timeout_s=20):
        pass


def test_token_is_decoded_from_base64(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOKEN", "tök-én")
    info = parse_stack_outputs("dev", OUTPUTS)
    assert remote.read_token(info, None) == "tök-én"

"""Integration tests of the CLI around the user's own code, on a real local Ray head.

* A script and a directory outside ``workloads/`` are submitted by path, with ``--pip`` (a wheel
  built here, so no package index is needed) and ``--env``; they get STORAGE_PATH like the catalog.
* Ctrl-C while a job's logs stream leaves the job running and prints the exact stop command,
  which stops it.
* The README's CLI block runs as written, on a fresh local dir (its first ``run`` starts a head,
  its last line ``down`` stops it), with fake ``pulumi``/``kubectl`` for the ``dev`` stack: the
  fake port-forward proxies to that local head, so ``submit --stack dev`` really submits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.fakes import port_forward
from workloads import jobs, local_cluster
from workloads.cli import main
from workloads.jobs import Target
from workloads.local_cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def build_wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel (PEP 427) with one module ``name``."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module_source.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def test_own_script_and_directory_with_pip_and_env(
    local_dir: Path,
    ray_cluster: LocalCluster,
    storage_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wheel = build_wheel(
        tmp_path, "roe_greeting", "1.0", "def greet(name):\n    return 'greetings, ' + name\n"
    )
    script = tmp_path / "user" / "train_mine.py"
    script.parent.mkdir()
    script.write_text(
        "import os, ray, roe_greeting\n"
        "ray.init()\n"
        "print(roe_greeting.greet(os.environ['WHO']), 'storage', os.environ['STORAGE_PATH'])\n"
        "print('files', sorted(os.listdir('.')))\n"
    )
    (script.parent / "big-unrelated-file.bin").write_bytes(b"0" * 1000)  # not uploaded: a script goes alone
    status = main(
        ["--local-dir", str(local_dir), "run", str(script), "--pip", str(wheel), "--env", "WHO=script"]
    )
    out, err = capsys.readouterr()
    assert status == 0, out[-3000:] + err[-3000:]
    assert f"greetings, script storage {storage_path}" in out
    assert "files ['train_mine.py']" in out
    assert re.search(r"job train_mine-\S+ SUCCEEDED", err)

    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "job.py").write_text(
        "import os, sys\nprint('module job with', os.environ['LEVEL'], 'args', sys.argv[1:])\n"
    )
    (project / ".gitignore").write_text("data/\n")
    (project / "data").mkdir()
    (project / "data" / "huge.bin").write_bytes(os.urandom(200_000))
    status = main(
        [
            "--local-dir",
            str(local_dir),
            "run",
            str(project),
            "--entrypoint",
            "python -m pkg.job --fast",
            "--env",
            "LEVEL=3",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, out[-3000:] + err[-3000:]
    assert "module job with 3 args ['--fast']" in out


def test_ctrl_c_leaves_the_job_running_and_prints_the_stop_command(
    local_dir: Path, ray_cluster: LocalCluster, tmp_path: Path
) -> None:
    script = tmp_path / "slow.py"
    script.write_text("import time\nprint('slow job started', flush=True)\ntime.sleep(600)\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "workloads", "--local-dir", str(local_dir), "run", str(script)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run in the background inherits SIGINT as ignored, and Python then installs no
        # KeyboardInterrupt handler: give the CLI the default disposition a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 300
        for line in process.stdout:  # the job's own output, streamed by the CLI
            if "slow job started" in line:
                break
            assert time.monotonic() < deadline
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    match = re.search(r"interrupted: job (slow-\S+) keeps running; stop it with:\n  (.+)\n", err)
    assert match is not None, err
    job_id, command = match.groups()
    assert command == f"python -m workloads --local-dir {local_dir} stop {job_id}"
    target = Target(address=ray_cluster.dashboard_url, token=ray_cluster.token)
    client = jobs.job_client(target)
    assert str(client.get_job_status(job_id).value) == "RUNNING"
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "workloads"] and main(argv[3:]) == 0
    deadline = time.monotonic() + 120
    while str(client.get_job_status(job_id).value) != "STOPPED":
        assert time.monotonic() < deadline
        time.sleep(1)


FAKE_PULUMI = """
import json, os, sys
sys.stdout.write(os.environ["FAKE_OUTPUTS"])
"""

# `kubectl port-forward ... LOCAL:REMOTE` listens on LOCAL and proxies every connection to the local
# Ray head's dashboard (FAKE_FORWARD_TO), through the shared tunnel fake tests/fakes/port_forward.py;
# nothing else is needed without token auth.
FAKE_KUBECTL = f"""
import os, sys
args = sys.argv[1:]
if "port-forward" not in args:
    sys.exit(1)
local = args[-1].split(":")[0]
os.execv(sys.executable, [sys.executable, {str(port_forward.SCRIPT)!r}, local, os.environ["FAKE_FORWARD_TO"]])
"""


def readme_cli_lines() -> list[list[str]]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Workloads and the job CLI", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert all(line[:3] == ["python", "-m", "workloads"] for line in lines), lines
    return [line[3:] for line in lines]


def test_readme_cli_block_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = readme_cli_lines()
    assert lines[4][:4] == ["submit", "dt-pytorch", "--stack", "dev"] and lines[-1] == ["down"]
    local = tmp_path / "local"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("pulumi", FAKE_PULUMI), ("kubectl", FAKE_KUBECTL)):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{body}")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    stack_storage = tmp_path / "stack-storage"
    try:
        for argv in lines:
            if argv[:1] == ["submit"]:  # the `dev` stack is this test's local head, behind fakes
                cluster = local_cluster.read_state(local)
                assert cluster is not None
                monkeypatch.setenv("FAKE_FORWARD_TO", f"127.0.0.1:{cluster.dashboard_port}")
                outputs = {
                    "namespace": "ray",
                    "headServiceName": "ray-head-svc",
                    "storagePath": str(stack_storage),
                }
                monkeypatch.setenv("FAKE_OUTPUTS", json.dumps(outputs))
            status = main(["--local-dir", str(local), *argv])
            out, err = capsys.readouterr()
            assert status == 0, f"{argv}: {out[-3000:]}{err[-3000:]}"
            if argv[:2] == ["run", "quickstart"]:
                assert re.search(r"local Ray head up: dashboard http://127\.0\.0\.1:\d+", err)
            if argv[:1] == ["submit"]:
                assert "final held-out accuracy" in out
                assert (stack_storage / "models" / "latest" / "model.json").is_file()
            if argv[:1] == ["list"]:
                assert out.count("SUCCEEDED") >= 4
    finally:
        local_cluster.down(local)
    assert local_cluster.read_state(local) is None

"""Integration tests: every workload on a real local Ray head, through the CLI's submission path.

The session head comes from ``conftest.py`` (started and always stopped by the tests). dt-pytorch
runs once (``trained``); serve and batch-inference use the model it exports. A training worker is
killed mid-run to prove Ray Train resumes from a checkpoint; a second head with token auth proves
submissions without (or with a wrong) token are refused.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workloads import jobs, local_cluster
from workloads.cli import RunResult, execute, main, run_local
from workloads.dt_pytorch.data import load_digits
from workloads.dt_pytorch.model import load_model, newest_checkpoint, predict, read_meta
from workloads.jobs import SubmissionError, Target
from workloads.local_cluster import LocalCluster, LocalClusterSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MIN_ACCURACY = 0.85  # chance is 0.10
TRAIN_EPOCHS = 10  # what the `trained` fixture (conftest.py) asks for
JOB_TIMEOUT_S = 600.0
ACCURACY_RE = re.compile(r"final held-out accuracy ([0-9.]+) at epoch (\d+)")
RESUMED_RE = re.compile(r"resumed from checkpoint epoch (\d+)")
WORKER_RE = re.compile(r"worker rank (\d+)/(\d+) pid (\d+)")


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def job_logs(result: RunResult) -> str:
    assert result.job is not None
    return result.job.logs


def test_quickstart_through_the_cli(
    local_dir: Path, ray_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--local-dir", str(local_dir), "run", "quickstart"]) == 0
    out, err = capsys.readouterr()
    assert "quickstart OK" in out and "'CPU': 4.0" in out
    # Ray colours parts of its own log lines (ray.init's dashboard URL); stdout is not a terminal
    # here, so the CLI prints them plain.
    assert "View the dashboard at" in out and "\x1b" not in out + err
    assert f"reusing local Ray head at {ray_cluster.dashboard_url}" in err
    job_id = re.search(r"job (quickstart-\S+) SUCCEEDED", err).group(1)  # type: ignore[union-attr]

    assert main(["--local-dir", str(local_dir), "list"]) == 0
    assert re.search(rf"{job_id}\s+SUCCEEDED", capsys.readouterr().out)
    assert main(["--local-dir", str(local_dir), "status", job_id]) == 0
    assert capsys.readouterr().out.startswith(f"{job_id}: SUCCEEDED")
    assert main(["--local-dir", str(local_dir), "logs", job_id]) == 0
    assert "actor total 140 == expected 140" in capsys.readouterr().out
    assert main(["--local-dir", str(local_dir), "dashboard"]) == 0
    assert ray_cluster.dashboard_url in capsys.readouterr().out


def test_failed_job_exits_non_zero_with_the_last_log_lines(
    local_dir: Path, ray_cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bad contract value never reaches the cluster: one line, status 2, nothing submitted.
    status = main(["--local-dir", str(local_dir), "run", "dt-pytorch", "--env", "NUM_WORKERS=0"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == "error: --env NUM_WORKERS must be an integer >= 1, got '0'\n"
    # A job that fails on the cluster: the CLI reports its status and its own last log lines.
    script = tmp_path / "broken.py"
    script.write_text(
        "import sys\nprint('configuration error: nothing to do', file=sys.stderr)\nsys.exit(3)\n"
    )
    status = main(["--local-dir", str(local_dir), "run", str(script)])
    err = capsys.readouterr().err
    assert status == 1
    assert re.search(r"error: job broken-\S+ FAILED; last log lines:", err)
    assert "configuration error: nothing to do" in err


def test_dt_pytorch_learns_checkpoints_and_exports(trained: RunResult, storage_path: Path) -> None:
    assert trained.ok, job_logs(trained)[-3000:]
    match = ACCURACY_RE.search(job_logs(trained))
    assert match is not None
    accuracy, epoch = float(match.group(1)), int(match.group(2))
    assert accuracy > MIN_ACCURACY and epoch == TRAIN_EPOCHS
    assert "resumed from checkpoint" not in job_logs(trained)  # a fresh run starts at epoch 1
    # Throughput is reported per epoch (bench/training.py and users read it from the logs).
    rates = [float(r) for r in re.findall(r"samples_per_second=([0-9.]+)", job_logs(trained))]
    assert rates and all(rate > 0 for rate in rates)
    # Readable logs: every worker line once, no Ray Train TrainingReport dumps.
    logs = job_logs(trained)
    for epoch in range(1, TRAIN_EPOCHS + 1):
        assert len(re.findall(rf"epoch {epoch}/{TRAIN_EPOCHS} loss=", logs)) == 1, epoch
    assert len(re.findall(r"worker rank 0/2 pid", logs)) == 1
    assert "TrainingReport(" not in logs

    found = newest_checkpoint(storage_path / "checkpoints" / "dt-pytorch")
    assert found is not None and found[0] == TRAIN_EPOCHS
    exported = read_meta(storage_path / "models" / "latest")
    assert exported.epoch == TRAIN_EPOCHS and exported.held_out_accuracy == pytest.approx(accuracy, abs=1e-4)

    # The exported model really classifies the held-out digits (recomputed here, outside Ray).
    model, meta = load_model(storage_path / "models" / "latest")
    split = load_digits(seed=0)
    recomputed = float(np.mean(predict(model, meta, split.x_test) == split.y_test))
    assert recomputed == pytest.approx(accuracy, abs=1e-3)


def test_fresh_job_resumes_from_the_newest_checkpoint(
    local_dir: Path, trained: RunResult, storage_path: Path
) -> None:
    assert trained.ok
    more = TRAIN_EPOCHS + 2
    result = run_local(
        "dt-pytorch",
        {"EPOCHS": str(more), "MODEL_PATH": str(storage_path / "models" / "resumed")},
        local_dir=local_dir,
        timeout_s=JOB_TIMEOUT_S,
    )
    logs = job_logs(result)
    assert result.ok, logs[-3000:]
    assert f"found checkpoint epoch {TRAIN_EPOCHS}" in logs
    assert "pass --env RUN_NAME=<new name> to start afresh" in logs  # the resume hint names the fix
    assert {int(n) for n in RESUMED_RE.findall(logs)} == {TRAIN_EPOCHS}
    assert f"epoch 1/{more} " not in logs  # it did not start over
    assert f"epoch {more}/{more} " in logs
    assert read_meta(storage_path / "models" / "resumed").epoch == more


def test_already_trained_run_reports_no_nan(local_dir: Path, trained: RunResult, storage_path: Path) -> None:
    assert trained.ok
    result = run_local(
        "dt-pytorch",
        {"EPOCHS": str(TRAIN_EPOCHS), "MODEL_PATH": str(storage_path / "models" / "again")},
        local_dir=local_dir,
        timeout_s=JOB_TIMEOUT_S,
    )
    logs = job_logs(result)
    assert result.ok, logs[-3000:]
    assert re.search(r"already trained to epoch \d+; held-out accuracy", logs), logs[-3000:]
    assert not re.search(r"\bnan\b", logs, re.IGNORECASE), logs[-3000:]


def test_killed_worker_resumes_from_a_checkpoint(
    local_dir: Path, ray_cluster: LocalCluster, storage_path: Path
) -> None:
    # PAUSE_AFTER_EPOCH makes the kill deterministic on a loaded machine: the workers print
    # "paused after epoch 2" only once epoch 2's checkpoint is stored, and wait there, so the kill
    # lands while a checkpoint exists and epochs remain, however late the logs reach us.
    epochs, pause_epoch = 4, 2
    run_dir = storage_path / "checkpoints" / "fault-injection"
    submitted = run_local(
        "dt-pytorch",
        {
            "RUN_NAME": "fault-injection",
            "EPOCHS": str(epochs),
            "PAUSE_AFTER_EPOCH": str(pause_epoch),
            "PAUSE_SECONDS": "600",
            "MODEL_PATH": str(storage_path / "models" / "fault"),
        },
        local_dir=local_dir,
        follow=False,
    )
    assert submitted.job_id is not None
    target = submitted.target
    client = jobs.job_client(target)

    deadline = time.monotonic() + 500
    workers: dict[int, int] = {}
    logs = ""
    while not (f"paused after epoch {pause_epoch} " in logs and set(workers) == {0, 1}):
        assert time.monotonic() < deadline, logs[-3000:]
        assert str(client.get_job_status(submitted.job_id).value) not in jobs.TERMINAL_STATUSES, logs[-3000:]
        time.sleep(0.5)
        logs = client.get_job_logs(submitted.job_id)
        workers = {int(rank): int(pid) for rank, _, pid in WORKER_RE.findall(logs)}
    found = newest_checkpoint(run_dir)
    assert found is not None and found[0] == pause_epoch
    os.kill(workers[1], signal.SIGKILL)

    outcome = jobs.follow(target, submitted.job_id, output=lambda _: None, timeout_s=JOB_TIMEOUT_S)
    assert outcome.succeeded, outcome.logs[-3000:]
    assert [int(n) for n in RESUMED_RE.findall(outcome.logs)] == [pause_epoch], outcome.logs[-3000:]
    assert outcome.logs.count("paused after epoch") == 1  # the restarted group did not redo epoch 2
    new_pids = {int(pid) for _, _, pid in WORKER_RE.findall(outcome.logs)} - set(workers.values())
    assert new_pids, "the worker group was not restarted"
    assert read_meta(storage_path / "models" / "fault").epoch == epochs
    found = newest_checkpoint(run_dir)
    assert found is not None and found[0] == epochs


def test_serve_predicts_with_the_trained_model(
    local_dir: Path, trained: RunResult, storage_path: Path, ray_cluster: LocalCluster
) -> None:
    assert trained.ok
    result = run_local("serve", local_dir=local_dir)
    assert result.ok and result.serve_url is not None
    url = result.serve_url
    # HAProxy's files are in the head's temp dir (deleted by local_cluster.stop), not in Ray's default
    # /tmp/haproxy-serve/<node id>/, which nothing removes (workloads/serve_ingress.py).
    configs = list(Path(ray_cluster.temp_dir, local_cluster.HAPROXY_DIR_NAME).glob("*/haproxy.cfg"))
    assert len(configs) == 1, configs
    node_dir = configs[0].parent
    assert (node_dir / "admin.sock").is_socket()
    assert not Path("/tmp/haproxy-serve", node_dir.name).exists()

    status, health = http("GET", f"{url}/healthz")
    assert status == 200 and health["model"]["epoch"] == TRAIN_EPOCHS

    split = load_digits(seed=0)
    status, answer = http("POST", f"{url}/predict", {"instances": split.x_test.tolist()})
    assert status == 200
    predictions = np.asarray(answer["predictions"])
    assert predictions.shape == (len(split.y_test),)
    assert float(np.mean(predictions == split.y_test)) > MIN_ACCURACY
    model, meta = load_model(storage_path / "models" / "latest")
    np.testing.assert_array_equal(predictions, predict(model, meta, split.x_test))

    for body, raw, fragment in (
        (None, b"{not json", "not valid JSON"),
        ({"instances": [[1.0, 2.0]]}, None, "must be a list of 64 numbers"),
        ({"rows": []}, None, '"instances"'),
    ):
        status, error = http("POST", f"{url}/predict", body, raw)
        assert 400 <= status < 500 and fragment in error["error"]
    status, error = http("GET", f"{url}/predict")
    assert status == 405 and "POST" in error["error"]
    # Over the byte limit: answered 413 from the declared Content-Length while the client has sent
    # only 64 KiB of the 5 MiB it announced, i.e. before the body is read, let alone parsed.
    host, port = url.removeprefix("http://").split(":")
    connection = HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(5 * 2**20))
        connection.endheaders(b" " * 65536)
        response = connection.getresponse()
        assert response.status == 413
        assert "byte limit" in json.loads(response.read())["error"]
    finally:
        connection.close()


def test_batch_inference_writes_predictions(local_dir: Path, trained: RunResult, storage_path: Path) -> None:
    import pyarrow.parquet as pq

    assert trained.ok
    result = run_local("batch-inference", local_dir=local_dir, timeout_s=JOB_TIMEOUT_S)
    logs = job_logs(result)
    assert result.ok, logs[-3000:]
    table = pq.read_table(storage_path / "predictions" / "batch-inference").to_pandas().sort_values("id")
    split = load_digits(seed=0)
    assert table["id"].tolist() == list(range(len(split.y_test)))
    np.testing.assert_array_equal(table["label"].to_numpy(), split.y_test)
    accuracy = float(np.mean(table["prediction"].to_numpy() == split.y_test))
    assert accuracy > MIN_ACCURACY
    model, meta = load_model(storage_path / "models" / "latest")
    np.testing.assert_array_equal(table["prediction"].to_numpy(), predict(model, meta, split.x_test))
    assert f"batch-inference accuracy {accuracy:.4f}" in logs
    # No deprecation warnings from our own code (map_batches uses compute=, not concurrency=), and
    # no progress bars when the CLI's output is not a terminal.
    assert "deprecated" not in logs.lower(), logs[-3000:]
    assert "Progress bars disabled" in logs and "row/s" not in logs, logs[-3000:]
    summary = json.loads((storage_path / "predictions" / "batch-inference-summary.json").read_text())
    assert summary["rows"] == len(split.y_test) and summary["accuracy"] == pytest.approx(accuracy)


def test_token_auth_refuses_missing_or_wrong_tokens(tmp_path: Path, ray_cluster: LocalCluster) -> None:
    token = secrets.token_hex(16)
    secured = local_cluster.start(tmp_path, LocalClusterSpec(num_cpus=2, token_auth=True, token=token), print)
    try:
        for bad in (None, "wrong-token"):
            with pytest.raises(SubmissionError, match="authentication failed") as caught:
                jobs.job_client(Target(address=secured.dashboard_url, token=bad))
            assert "Traceback" not in str(caught.value)
        result = execute(
            "quickstart", Target(address=secured.dashboard_url, token=token), env={}, remote=False
        )
        assert result.ok, job_logs(result)[-3000:]
        assert "quickstart OK" in job_logs(result)
    finally:
        local_cluster.stop(secured)

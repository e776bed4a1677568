"""Integration test: STORAGE_PATH=s3://... end to end against a real local S3-compatible server.

moto runs in server mode (``s3_server`` in conftest.py); the local Ray head and its workers reach
it through the standard ``AWS_ENDPOINT_URL``. One run covers every workload on S3: dt-pytorch
trains with checkpoints in the bucket, a worker is killed while it is paused after epoch 2 and the
restarted group resumes from the bucket's checkpoint, the model is exported to the bucket, serve
loads it from there, and batch-inference writes its parquet and summary there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from workloads import jobs, storage
from workloads.cli import run_local
from workloads.dt_pytorch.data import load_digits
from workloads.dt_pytorch.model import load_model, newest_checkpoint, predict, read_meta
from workloads.local_cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

JOB_TIMEOUT_S = 600.0
RESUMED_RE = re.compile(r"resumed from checkpoint epoch (\d+)")
WORKER_RE = re.compile(r"worker rank (\d+)/(\d+) pid (\d+)")


def test_every_workload_runs_on_s3_storage(
    local_dir: Path, ray_cluster: LocalCluster, s3_bucket: str
) -> None:
    import boto3
    import pyarrow.parquet as pq

    storage_path = f"s3://{s3_bucket}/ray-results"
    env = {"STORAGE_PATH": storage_path}
    epochs, pause_epoch = 4, 2

    # --- train, kill a worker while it is paused after epoch 2, resume from the bucket ---------
    submitted = run_local(
        "dt-pytorch",
        {**env, "EPOCHS": str(epochs), "PAUSE_AFTER_EPOCH": str(pause_epoch), "PAUSE_SECONDS": "600"},
        local_dir=local_dir,
        follow=False,
    )
    assert submitted.job_id is not None
    client = jobs.job_client(submitted.target)
    deadline = time.monotonic() + 500
    logs, workers = "", dict[int, int]()
    while not (f"paused after epoch {pause_epoch} " in logs and set(workers) == {0, 1}):
        assert time.monotonic() < deadline, logs[-3000:]
        assert str(client.get_job_status(submitted.job_id).value) not in jobs.TERMINAL_STATUSES, logs[-3000:]
        time.sleep(0.5)
        logs = client.get_job_logs(submitted.job_id)
        workers = {int(rank): int(pid) for rank, _, pid in WORKER_RE.findall(logs)}
    run_dir = f"{storage_path}/checkpoints/dt-pytorch"
    found = newest_checkpoint(run_dir)
    assert found is not None and found[0] == pause_epoch and str(found[1]).startswith("s3://")
    os.kill(workers[1], signal.SIGKILL)

    outcome = jobs.follow(submitted.target, submitted.job_id, output=lambda _: None, timeout_s=JOB_TIMEOUT_S)
    assert outcome.succeeded, outcome.logs[-3000:]
    assert [int(n) for n in RESUMED_RE.findall(outcome.logs)] == [pause_epoch], outcome.logs[-3000:]
    model_uri = f"{storage_path}/models/latest"
    assert read_meta(model_uri).epoch == epochs
    # Everything landed in the bucket (seen by a plain S3 client), nothing on the local disk.
    keys = {
        item["Key"]
        for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for item in page.get("Contents", [])
    }
    assert f"ray-results/checkpoints/dt-pytorch/epoch_{epochs:04d}/model.pt" in keys
    assert {"ray-results/models/latest/model.pt", "ray-results/models/latest/model.json"} <= keys
    assert not (local_dir / "s3:").exists()

    # --- serve loads the model from the bucket -----------------------------------------------
    served = run_local("serve", env, local_dir=local_dir)
    assert served.ok and served.serve_url is not None
    with urllib.request.urlopen(f"{served.serve_url}/healthz", timeout=60) as response:
        health = json.loads(response.read())
    assert health["model"]["epoch"] == epochs and health["model"]["path"] == model_uri
    split = load_digits(seed=0)
    request = urllib.request.Request(
        f"{served.serve_url}/predict",
        data=json.dumps({"instances": split.x_test[:50].tolist()}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        predictions = np.asarray(json.loads(response.read())["predictions"])
    model, meta = load_model(model_uri)
    np.testing.assert_array_equal(predictions, predict(model, meta, split.x_test[:50]))

    # --- batch inference reads the model from and writes its results to the bucket -----------
    batch = run_local("batch-inference", env, local_dir=local_dir, timeout_s=JOB_TIMEOUT_S)
    assert batch.ok and batch.job is not None, batch.job.logs[-3000:] if batch.job else ""
    filesystem, path = storage.filesystem(f"{storage_path}/predictions/batch-inference")
    table = pq.read_table(path, filesystem=filesystem).to_pandas().sort_values("id")
    assert table["id"].tolist() == list(range(len(split.y_test)))
    np.testing.assert_array_equal(table["prediction"].to_numpy(), predict(model, meta, split.x_test))
    summary = json.loads(storage.read_bytes(f"{storage_path}/predictions/batch-inference-summary.json"))
    assert summary["rows"] == len(split.y_test) and summary["model_epoch"] == epochs

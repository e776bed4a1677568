"""Integration tests of llm-finetune and llm-serve on the session's real local Ray head.

Everything goes through the CLI's run path (``run_local``), as a user's ``python -m workloads run``
does. llm-finetune runs once (``llm_trained``, 2 epochs of the built-in tiny Llama); a fresh job
with the same RUN_NAME continues it, a second run has a worker killed while it pauses after a
complete sharded checkpoint, and llm-serve answers OpenAI-style requests with the export.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from workloads import jobs
from workloads.cli import RunResult, run_local
from workloads.llm_finetune.model import (
    DCP_METADATA_FILE,
    META_FILE,
    load_export,
    newest_checkpoint,
    read_checkpoint_meta,
    read_export_meta,
)
from workloads.local_cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

JOB_TIMEOUT_S = 600.0
EPOCHS = 2
RESUMED_RE = re.compile(r"resumed from checkpoint epoch (\d+)")
WORKER_RE = re.compile(r"worker rank (\d+)/(\d+) pid (\d+)")
EPOCH_RE = re.compile(
    r"epoch (\d+)/(\d+) loss=([0-9.]+) held_out_loss=([0-9.]+) held_out_perplexity=([0-9.]+) "
    r"tokens_per_second=([0-9]+)"
)
FINAL_RE = re.compile(r"final held-out loss ([0-9.]+) perplexity ([0-9.]+) at epoch (\d+)")


def job_logs(result: RunResult) -> str:
    assert result.job is not None
    return result.job.logs


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def llm_trained(local_dir: Path, ray_cluster: LocalCluster) -> RunResult:
    """llm-finetune once through the CLI's run path (catalog defaults, EPOCHS=2)."""
    return run_local("llm-finetune", {"EPOCHS": str(EPOCHS)}, local_dir=local_dir, timeout_s=JOB_TIMEOUT_S)


def test_llm_finetune_trains_checkpoints_and_exports(llm_trained: RunResult, storage_path: Path) -> None:
    logs = job_logs(llm_trained)
    assert llm_trained.ok, logs[-3000:]
    assert "(FSDP2)" in logs and "resumed from checkpoint" not in logs
    epochs = EPOCH_RE.findall(logs)
    assert [int(e[0]) for e in epochs] == [1, 2], logs[-3000:]  # one line per epoch, from rank 0
    assert all(int(e[5]) > 0 for e in epochs)  # tokens per second
    first, last = (float(e[3]) for e in (epochs[0], epochs[-1]))
    assert last < first < math.log(2048) + 0.5  # held-out loss falls, from about chance level
    assert len(re.findall(r"worker rank 0/2 pid", logs)) == 1
    assert "TrainingReport(" not in logs and "Writing model shards" not in logs

    # The sharded checkpoint: one DCP shard per worker, the coordinator's metadata, meta.json.
    found = newest_checkpoint(storage_path / "checkpoints" / "llm-finetune")
    assert found is not None and found[0] == EPOCHS
    directory = found[1]
    assert {
        "__0_0.distcp",
        "__1_0.distcp",
        DCP_METADATA_FILE,
        META_FILE,
        "config.json",
        "tokenizer.json",
    } <= {path.name for path in directory.iterdir()}
    meta = read_checkpoint_meta(directory)
    assert meta.epoch == EPOCHS and meta.world_size == 2 and meta.model_name == "tiny-random"

    # The export is a plain Hugging Face directory that transformers loads outside Ray.
    match = FINAL_RE.search(logs)
    assert match is not None and int(match.group(3)) == EPOCHS
    export = storage_path / "models" / "llm-latest"
    assert (export / "model.safetensors").is_file() and (export / "tokenizer.json").is_file()
    exported = read_export_meta(export)
    assert exported.epoch == EPOCHS and exported.run_name == "llm-finetune"
    assert exported.held_out_loss == pytest.approx(float(match.group(1)), abs=1e-4)
    model, tokenizer, _ = load_export(export)
    assert len(tokenizer) == 2048 and model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    # The exported weights are the trained ones: recomputing the held-out loss the way the two
    # workers did (each its half of the held-out blocks, in batches of 8) gives the logged value.
    import torch

    from workloads.llm_finetune.data import split_blocks, stdlib_docstrings, token_blocks

    blocks = token_blocks(tokenizer, stdlib_docstrings(), seq_len=64)
    _, held_out = split_blocks(blocks, seed=0)
    per_rank = len(held_out) // 2
    total = 0.0
    with torch.no_grad():
        for rank in range(2):
            mine = torch.from_numpy(held_out[rank * per_rank : (rank + 1) * per_rank])
            for start in range(0, per_rank, 8):
                batch = mine[start : start + 8]
                total += float(model(input_ids=batch, labels=batch).loss) * len(batch)
    assert total / (2 * per_rank) == pytest.approx(exported.held_out_loss, abs=2e-3)


def test_fresh_job_with_the_same_run_name_resumes(
    local_dir: Path, llm_trained: RunResult, storage_path: Path
) -> None:
    assert llm_trained.ok
    more = EPOCHS + 1
    result = run_local(
        "llm-finetune",
        {"EPOCHS": str(more), "MODEL_PATH": str(storage_path / "models" / "llm-resumed")},
        local_dir=local_dir,
        timeout_s=JOB_TIMEOUT_S,
    )
    logs = job_logs(result)
    assert result.ok, logs[-3000:]
    assert f"found checkpoint epoch {EPOCHS}" in logs
    assert [int(n) for n in RESUMED_RE.findall(logs)] == [EPOCHS]
    assert f"epoch 1/{more} " not in logs and f"epoch {more}/{more} " in logs
    assert read_export_meta(storage_path / "models" / "llm-resumed").epoch == more


def test_killed_worker_resumes_from_the_sharded_checkpoint(
    local_dir: Path, ray_cluster: LocalCluster, storage_path: Path
) -> None:
    # The workers print "paused after epoch 1" only once epoch 1's sharded checkpoint is complete
    # (meta.json written) and wait there, so the kill lands while a checkpoint exists and epochs
    # remain, however late the logs reach us.
    epochs, pause_epoch = 3, 1
    run_dir = storage_path / "checkpoints" / "llm-fault"
    submitted = run_local(
        "llm-finetune",
        {
            "RUN_NAME": "llm-fault",
            "EPOCHS": str(epochs),
            "PAUSE_AFTER_EPOCH": str(pause_epoch),
            "PAUSE_SECONDS": "600",
            "MODEL_PATH": str(storage_path / "models" / "llm-fault"),
        },
        local_dir=local_dir,
        follow=False,
    )
    assert submitted.job_id is not None
    client = jobs.job_client(submitted.target)
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

    outcome = jobs.follow(submitted.target, submitted.job_id, output=lambda _: None, timeout_s=JOB_TIMEOUT_S)
    assert outcome.succeeded, outcome.logs[-3000:]
    assert [int(n) for n in RESUMED_RE.findall(outcome.logs)] == [pause_epoch], outcome.logs[-3000:]
    assert outcome.logs.count("paused after epoch") == 1  # the restarted group did not redo epoch 1
    new_pids = {int(pid) for _, _, pid in WORKER_RE.findall(outcome.logs)} - set(workers.values())
    assert new_pids, "the worker group was not restarted"
    assert f"epoch {epochs}/{epochs} " in outcome.logs
    found = newest_checkpoint(run_dir)
    assert found is not None and found[0] == epochs
    assert read_export_meta(storage_path / "models" / "llm-fault").epoch == epochs


def test_llm_serve_answers_openai_completions(
    local_dir: Path, llm_trained: RunResult, storage_path: Path
) -> None:
    assert llm_trained.ok
    result = run_local("llm-serve", local_dir=local_dir)
    assert result.ok and result.serve_url is not None
    url = result.serve_url
    assert url.endswith("/llm")

    status, health = http("GET", f"{url}/healthz")
    assert status == 200 and health["model"]["epoch"] == EPOCHS
    status, models = http("GET", f"{url}/v1/models")
    assert status == 200 and models["object"] == "list"
    assert [(m["id"], m["object"], m["base_model"]) for m in models["data"]] == [
        ("llm-latest", "model", "tiny-random")
    ]

    request = {"model": "llm-latest", "prompt": "Return the", "max_tokens": 12, "temperature": 0}
    status, answer = http("POST", f"{url}/v1/completions", request)
    assert status == 200, answer
    assert answer["object"] == "text_completion" and answer["model"] == "llm-latest"
    assert answer["id"].startswith("cmpl-") and isinstance(answer["created"], int)
    [choice] = answer["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] in {"stop", "length"} and choice["text"]
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0 and 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Greedy decoding with the exported model outside Ray gives the same text.
    model, tokenizer, _ = load_export(storage_path / "models" / "llm-latest")
    encoded = tokenizer("Return the", return_tensors="pt")
    output = model.generate(
        **encoded, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    new_tokens = output[0, encoded["input_ids"].shape[1] :].tolist()
    if tokenizer.eos_token_id in new_tokens:
        new_tokens = new_tokens[: new_tokens.index(tokenizer.eos_token_id) + 1]
    assert choice["text"] == tokenizer.decode(new_tokens, skip_special_tokens=True)
    # A seeded sampled request is repeatable.
    sampled = {"model": "llm-latest", "prompt": "Return", "max_tokens": 8, "temperature": 1.0, "seed": 3}
    texts = [http("POST", f"{url}/v1/completions", sampled)[1]["choices"][0]["text"] for _ in range(2)]
    assert texts[0] == texts[1]

    for body, raw, expected, param in (
        ({**request, "model": "gpt-4"}, None, 404, "model"),
        ({**request, "max_tokens": 1000}, None, 400, "max_tokens"),
        ({**request, "max_tokens": 0}, None, 400, "max_tokens"),
        ({**request, "temperature": 3}, None, 400, "temperature"),
        ({"model": "llm-latest"}, None, 400, "prompt"),
        (None, b"{not json", 400, None),
    ):
        status, error = http("POST", f"{url}/v1/completions", body, raw)
        assert status == expected, error
        assert (
            set(error["error"]) == {"message", "type", "param", "code"} and error["error"]["param"] == param
        )
    status, error = http("GET", f"{url}/v1/completions")
    assert status == 405 and "POST" in error["error"]["message"]
    status, error = http("GET", f"{url}/v1/chat")
    assert status == 404 and error["error"]["code"] == "not_found"
    # Over the byte limit: 413 from the declared Content-Length while only 16 KiB of the announced
    # 1 MiB were sent, i.e. before the body is read.
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    connection = HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("POST", "/llm/v1/completions")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(2**20))
        connection.endheaders(b" " * 16384)
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "request_too_large"
    finally:
        connection.close()

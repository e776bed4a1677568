"""The llm-serve replica's HTTP answers, called directly (no Ray Serve): 503 until an export
exists, reload when model.json changes, and the OpenAI-shaped errors of the routing layer."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from starlette.requests import Request

from workloads.llm_finetune.data import stdlib_docstrings, train_tokenizer
from workloads.llm_finetune.model import EXPORT_META_FILE, ExportMeta, tiny_config, write_export_meta
from workloads.llm_serve.app import MAX_BODY_BYTES, LanguageModel


def ask(app: Any, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    scope = {
        "type": "http",
        "method": method,
        "path": f"/llm{path}",
        "root_path": "/llm",
        "scheme": "http",
        "server": ("test", 80),
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    response = asyncio.run(app(Request(scope, receive)))
    return response.status_code, json.loads(response.body)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return train_tokenizer(stdlib_docstrings(), vocab_size=2048)


def publish(directory: Path, tokenizer: Any, *, epoch: int) -> None:
    """An llm-finetune-shaped export (save_pretrained model + tokenizer, model.json last)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(epoch)
    model = AutoModelForCausalLM.from_config(tiny_config(vocab_size=len(tokenizer), seq_len=64))
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    write_export_meta(
        directory,
        ExportMeta(
            model_name="tiny-random",
            epoch=epoch,
            loss=6.0,
            held_out_loss=5.5,
            held_out_perplexity=245.0,
            run_name="r",
        ),
    )
    stamp = 1_700_000_000 + epoch  # distinct mtimes even on coarse filesystems
    os.utime(directory / EXPORT_META_FILE, (stamp, stamp))


def test_replica_serves_reloads_and_refuses_with_openai_errors(
    tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "models" / "llm-latest"
    monkeypatch.setenv("MODEL_PATH", str(model_dir))
    replica = LanguageModel.func_or_class()  # type: ignore[attr-defined]

    status, health = ask(replica, "GET", "/healthz")
    assert status == 503 and "run the llm-finetune workload first" in health["error"]
    status, error = ask(replica, "GET", "/v1/models")
    assert status == 503 and error["error"]["code"] == "model_not_loaded"

    publish(model_dir, tokenizer, epoch=1)
    status, models = ask(replica, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["llm-latest"]
    assert models["data"][0]["epoch"] == 1
    request = {"model": "llm-latest", "prompt": "Return the", "max_tokens": 4, "temperature": 0}
    status, answer = ask(replica, "POST", "/v1/completions", request)
    assert status == 200 and answer["object"] == "text_completion"
    assert answer["usage"]["completion_tokens"] <= 4

    publish(model_dir, tokenizer, epoch=2)  # training published a newer model
    status, health = ask(replica, "GET", "/healthz")
    assert status == 200 and health["model"]["epoch"] == 2

    for method, path, body, raw, expected, code in (
        ("POST", "/v1/completions", None, b" " * (MAX_BODY_BYTES + 1), 413, "request_too_large"),
        ("POST", "/v1/completions", None, b'{"model": ', 400, "invalid_json"),
        ("POST", "/v1/completions", None, b"[" * 10_000, 400, "invalid_json"),
        ("POST", "/v1/completions", {**request, "model": "other"}, None, 404, "model_not_found"),
        ("GET", "/v1/completions", None, None, 405, "method_not_allowed"),
        ("POST", "/v1/models", None, None, 405, "method_not_allowed"),
        ("GET", "/v1/chat/completions", None, None, 404, "not_found"),
    ):
        status, error = ask(replica, method, path, body, raw)
        assert (status, error["error"]["code"]) == (expected, code), (path, error)
        assert set(error["error"]) == {"message", "type", "param", "code"}

"""Unit tests of the serve app (no cluster): request validation and the replica's HTTP answers."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from starlette.requests import Request

from workloads.dt_pytorch.model import ModelMeta, build_model, write_model_dir
from workloads.serve.app import MAX_BODY_BYTES, MAX_INSTANCES, BadRequestError, Classifier, parse_instances


def test_valid_rows_become_floats() -> None:
    rows = parse_instances({"instances": [[0, 1.5, 16, 3]]}, input_dim=4)
    assert rows == [[0.0, 1.5, 16.0, 3.0]]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([], 'JSON object with an "instances" list'),
        ({"rows": [[1, 2]]}, 'JSON object with an "instances" list'),
        ({"instances": []}, "non-empty list"),
        ({"instances": "1,2"}, "non-empty list"),
        ({"instances": [[1, 2, 3]]}, "instances[0] must be a list of 4 numbers, got 3"),
        ({"instances": [[1, 2, 3, 4], 5]}, "instances[1] must be a list of 4 numbers, got int"),
        ({"instances": [[1, 2, "x", 4]]}, "non-numeric"),
        ({"instances": [[1, 2, True, 4]]}, "non-numeric"),
        ({"instances": [[1, 2, float("nan"), 4]]}, "non-finite"),
    ],
)
def test_malformed_payloads_are_client_errors(payload: Any, fragment: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_instances(payload, input_dim=4)
    assert caught.value.status == 400
    assert fragment in str(caught.value)


def test_too_many_instances_is_413() -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_instances({"instances": [[0.0]] * (MAX_INSTANCES + 1)}, input_dim=1)
    assert caught.value.status == 413


# --- The deployment class itself, called in-process with ASGI requests (no cluster). ---


def ask(app: Any, method: str, path: str, body: bytes = b"", root_path: str = "") -> tuple[int, Any]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "scheme": "http",
        "server": ("test", 80),
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    response = asyncio.run(app(Request(scope, receive)))
    return response.status_code, json.loads(response.body)


def publish(directory: Path, *, epoch: int) -> None:
    torch.manual_seed(epoch)
    model = build_model(input_dim=4, hidden_dim=8, num_classes=3)
    meta = ModelMeta(
        input_dim=4,
        hidden_dim=8,
        num_classes=3,
        feature_scale=1.0,
        dataset="digits",
        epoch=epoch,
        held_out_accuracy=0.5,
    )
    write_model_dir(directory, state_dict=model.state_dict(), meta=meta)
    stamp = 1_700_000_000 + epoch  # distinct mtimes even on coarse filesystems
    os.utime(directory / "model.json", (stamp, stamp))


def test_replica_answers_503_until_a_model_exists_then_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "models" / "latest"
    monkeypatch.setenv("MODEL_PATH", str(model_dir))
    replica = Classifier.func_or_class()  # type: ignore[attr-defined]

    status, body = ask(replica, "GET", "/healthz")
    assert status == 503 and "run the dt-pytorch workload first" in body["error"]
    status, body = ask(replica, "POST", "/predict", b'{"instances": [[1, 2, 3, 4]]}')
    assert status == 503 and body["error"].startswith("model not available")

    publish(model_dir, epoch=1)
    status, body = ask(replica, "GET", "/healthz")
    assert status == 200 and body["model"]["epoch"] == 1
    status, body = ask(replica, "POST", "/predict", b'{"instances": [[1, 2, 3, 4], [0, 0, 0, 0]]}')
    assert status == 200 and len(body["predictions"]) == 2
    assert all(p in {0, 1, 2} for p in body["predictions"])

    publish(model_dir, epoch=2)
    status, body = ask(replica, "POST", "/predict", b'{"instances": [[1, 2, 3, 4]]}')
    assert status == 200 and body["model"]["epoch"] == 2


def test_replica_routes_under_a_prefix_and_rejects_bad_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(tmp_path, epoch=3)
    monkeypatch.setenv("MODEL_PATH", str(tmp_path))
    replica = Classifier.func_or_class()  # type: ignore[attr-defined]
    status, body = ask(replica, "GET", "/digits/healthz", root_path="/digits")
    assert status == 200 and body["model"]["epoch"] == 3
    for payload, expected in (
        (b"{oops", 400),
        (b'{"instances": [[1, 2, 3]]}', 400),
        (b'{"instances": [[1, 2, 3, "4"]]}', 400),
        (b"\xff\xfe", 400),
    ):
        status, body = ask(replica, "POST", "/digits/predict", payload, root_path="/digits")
        assert status == expected and body["error"]
    assert ask(replica, "GET", "/digits/predict", root_path="/digits")[0] == 405
    assert ask(replica, "POST", "/digits/healthz", root_path="/digits")[0] == 405
    assert ask(replica, "GET", "/digits/nope", root_path="/digits")[0] == 404


def test_oversized_bodies_get_413_before_they_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(tmp_path, epoch=1)
    monkeypatch.setenv("MODEL_PATH", str(tmp_path))
    replica = Classifier.func_or_class()  # type: ignore[attr-defined]
    received: list[int] = []

    def request(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, Any]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "root_path": "",
            "scheme": "http",
            "server": ("test", 80),
            "headers": [(b"content-type", b"application/json"), *headers],
            "query_string": b"",
        }
        pending = list(chunks)

        async def receive() -> dict[str, Any]:
            chunk = pending.pop(0)
            received.append(len(chunk))
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

        response = asyncio.run(replica(Request(scope, receive)))
        return response.status_code, json.loads(response.body)

    # Declared too large: refused without reading a single chunk.
    status, body = request([(b"content-length", str(83 * 2**20).encode())], [b"x" * 10])
    assert status == 413 and f"{MAX_BODY_BYTES}-byte limit" in body["error"] and received == []
    # Chunked with no length: reading stops at the first chunk past the limit.
    chunk = b" " * (1024 * 1024)
    status, body = request([], [chunk] * 10)
    assert status == 413 and len(received) == MAX_BODY_BYTES // len(chunk) + 1
    received.clear()
    status, body = request([(b"content-length", b"nope")], [b"{}"])
    assert status == 400 and "invalid Content-Length" in body["error"]
    # A body at the limit is still read and parsed.
    status, body = request([], [b'{"instances": [[1, 2, 3, 4]]}' + b" " * (MAX_BODY_BYTES - 100)])
    assert status == 200


def test_a_batch_of_requests_gets_each_its_own_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward ``@serve.batch`` runs: rows of several requests in one pass, split back in order,
    equal to each request predicted alone, also when the rows exceed one forward's slice."""
    import numpy as np

    from workloads.dt_pytorch.model import load_model, predict
    from workloads.serve import app as serve_app

    publish(tmp_path, epoch=4)
    monkeypatch.setenv("MODEL_PATH", str(tmp_path))
    monkeypatch.setattr(serve_app, "MAX_FORWARD_ROWS", 3)
    replica = Classifier.func_or_class()  # type: ignore[attr-defined]
    model, meta = load_model(tmp_path)
    generator = np.random.default_rng(0)
    batch = [generator.normal(size=(n, 4)).astype(np.float32) * 5 for n in (1, 4, 2, 7)]
    answers = asyncio.run(replica._forward(batch))
    assert len(answers) == len(batch)
    for rows, (predictions, used) in zip(batch, answers, strict=True):
        assert used.epoch == 4
        np.testing.assert_array_equal(predictions, predict(model, meta, rows))

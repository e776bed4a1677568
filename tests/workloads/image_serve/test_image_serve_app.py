"""Unit tests of the image-serve app (no cluster): the replica's HTTP answers, called in-process."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from starlette.requests import Request

from tests.workloads.images import encode, png_header
from workloads.catalog import WORKLOADS
from workloads.image_serve.app import MAX_BODY_BYTES, ImageClassifier, ImageServeSettings
from workloads.image_train.model import ImageModelMeta, build_model, write_model_dir


def ask(
    app: Any, method: str, path: str, body: bytes = b"", *, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, Any]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "/image",
        "scheme": "http",
        "server": ("test", 80),
        "headers": headers or [(b"content-type", b"image/png")],
        "query_string": b"",
    }
    received: list[bytes] = []

    async def receive() -> dict[str, Any]:
        received.append(body)
        return {"type": "http.request", "body": body, "more_body": False}

    response = asyncio.run(app(Request(scope, receive)))
    return response.status_code, json.loads(response.body)


def publish(directory: Path, *, epoch: int) -> None:
    torch.manual_seed(epoch)
    model = build_model(num_classes=3, channels=1)
    meta = ImageModelMeta(
        image_size=16,
        channels=1,
        labels=["cat", "dog", "owl"],
        dataset="test",
        epoch=epoch,
        held_out_accuracy=0.5,
    )
    write_model_dir(directory, state_dict=model.state_dict(), meta=meta)
    stamp = 1_700_000_000 + epoch  # distinct mtimes even on coarse filesystems
    os.utime(directory / "model.json", (stamp, stamp))


def test_the_catalog_entry_serves_under_image() -> None:
    app = WORKLOADS["image-serve"].serve_app
    assert (
        app is not None
        and app.route_prefix == "/image"
        and app.import_path == "workloads.image_serve.app:app"
    )
    assert ImageServeSettings.from_env({"STORAGE_PATH": "/fsx"}).model_path == Path(
        "/fsx/models/image-latest"
    )


def test_replica_answers_503_until_a_model_exists_then_classifies_and_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_PATH", str(tmp_path))
    replica = ImageClassifier.func_or_class()  # type: ignore[attr-defined]
    status, body = ask(replica, "GET", "/image/healthz")
    assert status == 503 and "run the image-train workload first" in body["error"]
    image = encode(np.full((40, 40), 128, dtype=np.uint8))
    status, body = ask(replica, "POST", "/image/predict", image)
    assert status == 503 and body["error"].startswith("model not available")

    publish(tmp_path, epoch=1)
    status, body = ask(replica, "GET", "/image/healthz")
    assert (
        status == 200
        and body["model"]["labels"] == ["cat", "dog", "owl"]
        and body["model"]["image_size"] == 16
    )
    status, body = ask(replica, "POST", "/image/predict", image)
    assert status == 200 and body["label"] in {"cat", "dog", "owl"}
    assert body["label"] == ["cat", "dog", "owl"][body["index"]] and 1 / 3 <= body["confidence"] <= 1

    publish(tmp_path, epoch=2)
    status, body = ask(replica, "POST", "/image/predict", encode(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    assert status == 200 and body["model"]["epoch"] == 2


def test_replica_refuses_bad_requests_with_4xx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(tmp_path, epoch=1)
    monkeypatch.setenv("MODEL_PATH", str(tmp_path))
    replica = ImageClassifier.func_or_class()  # type: ignore[attr-defined]
    for body, expected, fragment in (
        (b"", 415, "empty body"),
        (b'{"instances": [[1, 2]]}', 415, "not a PNG or JPEG"),
        (b"GIF89a" + b"\x00" * 20, 415, "not a PNG or JPEG"),
        (b"\xff\xd8\xff" + b"\x00" * 20, 400, "cannot decode the JPEG"),
        (png_header(4097, 4097), 413, "pixel limit"),
    ):
        status, answer = ask(replica, "POST", "/image/predict", body)
        assert status == expected and fragment in answer["error"], (status, answer)
    assert ask(replica, "GET", "/image/predict")[0] == 405
    assert ask(replica, "POST", "/image/healthz")[0] == 405
    assert ask(replica, "GET", "/image/other")[0] == 404
    declared = [(b"content-type", b"image/png"), (b"content-length", str(MAX_BODY_BYTES + 1).encode())]
    status, answer = ask(replica, "POST", "/image/predict", b"", headers=declared)
    assert status == 413 and "byte limit" in answer["error"]

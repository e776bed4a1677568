"""image-serve: Ray Serve application classifying PNG / JPEG images with the newest image-train model.

Endpoints (relative to the route prefix, ``/image`` by default):

* ``POST /predict`` with the encoded image as the body (``Content-Type: image/png`` or
  ``image/jpeg``; the format is checked from the bytes) ->
  ``{"label": "7", "index": 7, "confidence": 0.98, "model": {...}}``.
  Refused with a 4xx JSON ``{"error": "..."}``: a body over :data:`MAX_BODY_BYTES` (413, from the
  declared length before anything is read), an empty body or bytes that are not a PNG/JPEG (415),
  a corrupt image (400), an image over :data:`~workloads.image_train.model.MAX_IMAGE_PIXELS`
  (413, from its header), a wrong method (405), an unknown path (404).
* ``GET /healthz`` -> 200 with the model's metadata when one is loaded, 503 (with the reason) otherwise.

The image is decoded and resized exactly like the training images (:func:`decode_image` follows
Ray Data's ``read_images``) and goes through the model together with the other requests waiting
on the replica (``@serve.batch``: one forward per batch, no added wait for a lone request).
Reads MODEL_PATH (default ``STORAGE_PATH/models/image-latest``) and reloads when training exports
a newer model (``model.json`` changes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from workloads.catalog import WORKLOADS
from workloads.http_limits import BadRequestError, BodyTooLargeError, read_body_limited, route_path
from workloads.serving import Batcher, ModelWatcher
from workloads.settings import EnvReader
from workloads.storage import Location

_APP = WORKLOADS["image-serve"].serve_app
assert _APP is not None
DEPLOYMENT_NAME = _APP.deployment_name
HEALTH_PATH = _APP.health_path
PREDICT_PATH = "/predict"
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest encoded image read (a 12-megapixel JPEG is ~5 MB); larger bodies get 413 unread."""
MAX_ONGOING_REQUESTS = 32
"""Requests one replica holds at once (Serve's default, 5, makes the proxy retry with back-off
under load instead of letting the batcher see the queue; see the serve app and bench/RESULTS.md)."""
MAX_BATCH_IMAGES = 32
BATCH_WAIT_TIMEOUT_S = 0.0


@dataclass(frozen=True, kw_only=True)
class ImageServeSettings:
    """image-serve parameters, parsed from the env contract."""

    model_path: Location

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ImageServeSettings:
        """Parse; raises ``SettingsError`` when neither MODEL_PATH nor STORAGE_PATH is usable."""
        env = EnvReader(environ)
        return cls(
            model_path=env.location("MODEL_PATH", derived=env.storage_subdir("models", "image-latest"))
        )


def decode_request_image(body: bytes, *, image_size: int, mode: str) -> Any:
    """The request body as model input pixels; raises :class:`BadRequestError` with the status:
    415 for an empty body or one that is not PNG/JPEG, 413 for too many pixels, 400 if corrupt."""
    from workloads.image_train.model import (
        ImageError,
        ImageTooLargeError,
        UnsupportedFormatError,
        decode_image,
    )

    if not body:
        raise BadRequestError("empty body: POST the PNG or JPEG bytes of one image", status=415)
    try:
        return decode_image(body, image_size=image_size, mode=mode)
    except ImageError as error:
        status = (
            415
            if isinstance(error, UnsupportedFormatError)
            else 413
            if isinstance(error, ImageTooLargeError)
            else 400
        )
        raise BadRequestError(str(error), status=status) from None


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=MAX_ONGOING_REQUESTS)
class ImageClassifier:
    """Loads the image model from MODEL_PATH and answers HTTP requests."""

    def __init__(self) -> None:
        from workloads.image_train.model import ModelNotFoundError, load_model

        self._model_path = ImageServeSettings.from_env().model_path
        self._watcher = ModelWatcher(
            self._model_path,
            load_model,
            errors=(ModelNotFoundError, OSError, ValueError, RuntimeError, TypeError),
            name="image model",
        )
        self._batcher = Batcher(
            self._forward, max_batch_size=MAX_BATCH_IMAGES, wait_timeout_s=BATCH_WAIT_TIMEOUT_S
        )
        self._watcher.refresh()

    async def _forward(self, batch: list[Any]) -> list[tuple[int, float, Any]]:
        """One forward for every queued image: ``[(index, confidence, meta), ...]`` in order."""
        import numpy as np

        from workloads.image_train.model import predict

        loaded = self._watcher.loaded
        assert loaded is not None  # _predict answers 503 before queueing without a model
        model, meta = loaded
        indices, confidences = predict(model, meta, np.stack(batch))
        return [(int(i), float(c), meta) for i, c in zip(indices, confidences, strict=True)]

    def _model_info(self, meta: Any) -> dict[str, Any]:
        return {
            "path": str(self._model_path),
            "architecture": meta.architecture,
            "epoch": meta.epoch,
            "image_size": meta.image_size,
            "labels": list(meta.labels),
            "held_out_accuracy": meta.held_out_accuracy,
        }

    async def __call__(self, request: Request) -> JSONResponse:
        """Route ``/predict`` and ``/healthz``; every answer is JSON."""
        path = route_path(request)
        if path == HEALTH_PATH:
            if request.method != "GET":
                return JSONResponse({"error": f"{HEALTH_PATH} accepts GET"}, status_code=405)
            self._watcher.refresh()
            loaded = self._watcher.loaded
            if loaded is None:
                return JSONResponse({"status": "unavailable", "error": self._watcher.error}, status_code=503)
            return JSONResponse({"status": "ok", "model": self._model_info(loaded[1])})
        if path == PREDICT_PATH:
            if request.method != "POST":
                return JSONResponse(
                    {"error": f"{PREDICT_PATH} accepts POST with an image body"}, status_code=405
                )
            return await self._predict(request)
        return JSONResponse(
            {"error": f"no route {path}; use POST {PREDICT_PATH} or GET {HEALTH_PATH}"}, status_code=404
        )

    async def _predict(self, request: Request) -> JSONResponse:
        self._watcher.refresh(force=False)
        loaded = self._watcher.loaded
        if loaded is None:
            return JSONResponse({"error": f"model not available: {self._watcher.error}"}, status_code=503)
        meta = loaded[1]
        try:
            try:
                body = await read_body_limited(request, MAX_BODY_BYTES)
            except BodyTooLargeError as error:
                raise BadRequestError(str(error), status=413) from None
            # Decoding is CPU work (up to 16 M pixels): off the replica's event loop, so the other
            # requests keep being read and batched meanwhile.
            pixels = await asyncio.to_thread(
                decode_request_image, body, image_size=meta.image_size, mode=meta.mode
            )
        except BadRequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        index, confidence, used = await self._batcher(pixels)
        return JSONResponse(
            {
                "label": used.labels[index],
                "index": index,
                "confidence": confidence,
                "model": self._model_info(used),
            }
        )


app = ImageClassifier.bind()  # type: ignore[attr-defined]

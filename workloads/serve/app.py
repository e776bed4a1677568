"""serve: Ray Serve application answering digit predictions with the newest dt-pytorch model.

Endpoints (relative to the route prefix):

* ``POST /predict`` with ``{"instances": [[64 numbers], ...]}`` -> ``{"predictions": [...], "model": {...}}``.
  Malformed input gets a 4xx JSON ``{"error": "..."}``, never a 500.
* ``GET /healthz`` -> 200 when a model is loaded, 503 (with the reason) otherwise.

Reads MODEL_PATH (default STORAGE_PATH/models/latest) and reloads the model when training exports
a newer one. Deployed from :func:`workloads.serve.config.build_serve_config` (import path
``workloads.serve.app:app``).

Throughput (measured by ``bench/serving.py``, see bench/RESULTS.md): concurrent requests are parsed
and validated one by one, then their rows go through the model together (``@serve.batch``: one
forward for every request that is waiting, no added wait when there is only one). The replica takes
up to :data:`MAX_ONGOING_REQUESTS` at once: with Serve's default of 5, 64 clients left 59 requests
retrying in the proxy's router with back-off (up to 0.5 s each), which collapsed throughput and put
seconds on p99. The reload check is a ``stat`` of ``model.json`` (local paths) or, for ``s3://``
models, a remote call at most every :data:`REMOTE_RELOAD_CHECK_S`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from workloads import http_limits
from workloads.http_limits import BadRequestError, BodyTooLargeError, route_path
from workloads.serve.config import DEPLOYMENT_NAME, HEALTH_PATH, PREDICT_PATH
from workloads.serving import Batcher, ModelWatcher
from workloads.settings import EnvReader
from workloads.storage import Location

MAX_INSTANCES = 1024
MAX_ONGOING_REQUESTS = 64
"""Requests one replica accepts at once (Serve's default is 5): the batcher needs them to batch, and
a full replica makes the proxy retry with back-off instead of queueing (see the module docstring)."""
MAX_BATCH_REQUESTS = MAX_ONGOING_REQUESTS
"""Requests per batch: as many as the replica holds (Serve warns when a batch could not fill)."""
MAX_FORWARD_ROWS = MAX_INSTANCES
"""Rows per forward: a batch of many large requests goes through the model in slices of this many."""
BATCH_WAIT_TIMEOUT_S = 0.0
"""No waiting for more requests: a batch is whatever queued while the previous forward ran, so a
lone request pays nothing for batching and a loaded replica batches naturally."""
MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest ``/predict`` body read: 1024 rows of 64 numbers fit with room to spare (~1.6 MB with
17 significant digits each); anything larger gets 413 before it is read or parsed."""


async def read_body_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The ``/predict`` body, refused with :class:`BodyTooLargeError` past ``limit`` (see http_limits)."""
    return await http_limits.read_body_limited(request, limit)


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """serve parameters, parsed from the env contract."""

    model_path: Location

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeSettings:
        """Parse; raises ``SettingsError`` when neither MODEL_PATH nor STORAGE_PATH is usable."""
        env = EnvReader(environ)
        return cls(model_path=env.location("MODEL_PATH", derived=env.storage_subdir("models", "latest")))


FLOAT32_MAX = 3.4028234663852886e38
"""Features are float32 for the model: a larger magnitude would become inf and predict garbage."""


def _finite(value: float) -> bool:
    """A number the model can take: finite and within float32's range (``math.isfinite(10**400)``
    raises OverflowError, hence the guard)."""
    try:
        return math.isfinite(value) and abs(value) <= FLOAT32_MAX
    except OverflowError:
        return False


def parse_instances(payload: Any, *, input_dim: int) -> list[list[float]]:
    """Validate a decoded ``/predict`` body; raises :class:`BadRequestError` with the reason."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequestError('body must be a JSON object with an "instances" list')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequestError('"instances" must be a non-empty list of rows')
    if len(instances) > MAX_INSTANCES:
        raise BadRequestError(
            f"at most {MAX_INSTANCES} instances per request, got {len(instances)}", status=413
        )
    rows: list[list[float]] = []
    for index, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != input_dim:
            size = len(row) if isinstance(row, list) else type(row).__name__
            raise BadRequestError(f"instances[{index}] must be a list of {input_dim} numbers, got {size}")
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
                raise BadRequestError(
                    f"instances[{index}] contains a non-numeric or non-finite value (or one beyond "
                    f"float32's range): {str(value)[:40]}"
                )
        rows.append([float(value) for value in row])
    return rows


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=MAX_ONGOING_REQUESTS)
class Classifier:
    """Loads the model from MODEL_PATH and answers HTTP requests."""

    def __init__(self) -> None:
        from workloads.dt_pytorch.model import ModelNotFoundError, load_model

        self._model_path = ServeSettings.from_env().model_path
        self._watcher = ModelWatcher(
            self._model_path, load_model, errors=(ModelNotFoundError, OSError, ValueError, RuntimeError)
        )
        self._batcher = Batcher(
            self._forward, max_batch_size=MAX_BATCH_REQUESTS, wait_timeout_s=BATCH_WAIT_TIMEOUT_S
        )
        self._watcher.refresh()

    async def _forward(self, batch: list[Any]) -> list[tuple[Any, Any]]:
        """One forward for every queued request's rows: ``[(predictions, meta), ...]`` in order.

        Runs on the replica's user-code event loop: Serve's own request handling (the actor's
        main loop) goes on meanwhile, and the requests arriving during the forward are the next batch.
        """
        import numpy as np

        from workloads.dt_pytorch.model import predict

        loaded = self._watcher.loaded
        assert loaded is not None  # _predict answers 503 before queueing without a model
        model, meta = loaded
        rows = np.concatenate(batch) if len(batch) > 1 else batch[0]
        predictions = predict(model, meta, rows, rows_per_forward=MAX_FORWARD_ROWS)
        bounds = np.cumsum([len(part) for part in batch])[:-1]
        return [(part, meta) for part in np.split(predictions, bounds)]

    def _model_info(self, meta: Any) -> dict[str, Any]:
        return {
            "path": str(self._model_path),
            "epoch": meta.epoch,
            "dataset": meta.dataset,
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
                return JSONResponse({"error": f"{PREDICT_PATH} accepts POST"}, status_code=405)
            return await self._predict(request)
        return JSONResponse(
            {"error": f"no route {path}; use POST {PREDICT_PATH} or GET {HEALTH_PATH}"}, status_code=404
        )

    async def _predict(self, request: Request) -> JSONResponse:
        import numpy as np

        self._watcher.refresh(force=False)
        loaded = self._watcher.loaded
        if loaded is None:
            return JSONResponse({"error": f"model not available: {self._watcher.error}"}, status_code=503)
        meta = loaded[1]
        try:
            try:
                body = await read_body_limited(request)
            except BodyTooLargeError as error:
                raise BadRequestError(str(error), status=413) from None
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError) as error:
                raise BadRequestError(f"body is not valid JSON: {error}") from None
            except RecursionError:  # nesting deeper than the JSON decoder's recursion limit
                raise BadRequestError("body is nested too deeply to be a request") from None
            rows = parse_instances(payload, input_dim=meta.input_dim)
        except BadRequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        predictions, used = await self._batcher(np.asarray(rows, dtype=np.float32))
        return JSONResponse({"predictions": predictions.tolist(), "model": self._model_info(used)})


app = Classifier.bind()  # type: ignore[attr-defined]


def main() -> int:
    """``python -m workloads.serve.app``: deploy the app on the connected cluster and return.

    The RayService path uses the config document instead; this is for ad-hoc runs inside a job.
    """
    from workloads.serve.config import APP_NAME

    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    print(f"deployed Serve application {APP_NAME!r} at route prefix /", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

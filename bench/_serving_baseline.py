"""The plain server the serving benchmark compares Ray Serve against: uvicorn + Starlette, one forward per request.

Same JSON API and the same validation as the ``serve`` app (it imports ``read_body_limited`` and
``parse_instances`` from :mod:`workloads.serve.app`), the same model files, no batching, no proxy,
no reload check: the cheapest honest way to answer ``POST /predict`` from one Python process. The
benchmark runs it as a separate process on the same CPUs as the Ray head, with the same number of
torch threads as a Serve replica.

Run: ``python -m bench._serving_baseline --model DIR --port PORT [--threads N]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from workloads.dt_pytorch.model import load_model, predict
from workloads.serve.app import BadRequestError, BodyTooLargeError, parse_instances, read_body_limited


def build_app(model_dir: Path) -> Starlette:
    """The Starlette app answering ``/predict`` and ``/healthz`` with the model in ``model_dir``."""
    model, meta = load_model(model_dir)
    info = {
        "path": str(model_dir),
        "epoch": meta.epoch,
        "dataset": meta.dataset,
        "held_out_accuracy": meta.held_out_accuracy,
    }

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": info})

    async def predict_route(request: Request) -> JSONResponse:
        try:
            try:
                body = await read_body_limited(request)
            except BodyTooLargeError as error:
                raise BadRequestError(str(error), status=413) from None
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError) as error:
                raise BadRequestError(f"body is not valid JSON: {error}") from None
            rows = parse_instances(payload, input_dim=meta.input_dim)
        except BadRequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        predictions = predict(model, meta, np.asarray(rows, dtype=np.float32))
        return JSONResponse({"predictions": predictions.tolist(), "model": info})

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/predict", predict_route, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._serving_baseline", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="model directory (model.pt + model.json)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    uvicorn.run(
        build_app(args.model), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

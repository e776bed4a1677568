"""llm-serve: Ray Serve application with an OpenAI-compatible completions API for the newest
llm-finetune export.

Endpoints (relative to the route prefix, ``/llm`` in the catalog):

* ``POST /v1/completions`` with ``{"model", "prompt", "max_tokens", "temperature", "top_p", "stop",
  "seed"}`` -> ``{"id", "object": "text_completion", "created", "model", "choices": [{"index": 0,
  "text", "finish_reason", "logprobs": null}], "usage": {...}}``, OpenAI's shape, so OpenAI
  clients work with ``base_url=<url>/v1``.
* ``GET /v1/models`` -> the one served model; its id is the export directory's name
  (``llm-latest`` by default), and requests naming another model get 404.
* ``GET /healthz`` -> 200 with the model's facts when one is loaded, 503 with the reason otherwise.

Every client error is a 4xx in OpenAI's error shape ``{"error": {"message", "type", "param",
"code"}}``, never a 500: the body's size is checked before it is read (413), then JSON, then
every field (:func:`parse_completion_request`, a pure function the unit tests call directly).
Streaming (``"stream": true``) and ``n`` > 1 are refused with 400 rather than ignored.

Reads MODEL_PATH (default STORAGE_PATH/models/llm-latest) and reloads when ``model.json`` changes
(training writes it last). Generation runs in a worker thread, one request at a time per replica
(``generate`` on a CPU model saturates the replica's cores anyway, and a seeded request must not
share the random generator with another one).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from workloads import storage
from workloads.catalog import WORKLOADS
from workloads.http_limits import BadRequestError, BodyTooLargeError, read_body_limited, route_path
from workloads.serving import ModelWatcher
from workloads.settings import EnvReader
from workloads.storage import Location

_APP = WORKLOADS["llm-serve"].serve_app
assert _APP is not None
DEPLOYMENT_NAME = _APP.deployment_name
HEALTH_PATH = _APP.health_path
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"

MAX_BODY_BYTES = 64 * 1024
"""Largest request body read; a bigger one gets 413 before it is read."""
MAX_PROMPT_CHARS = 8192
MAX_TOKENS_LIMIT = 256
"""Largest ``max_tokens``: a CPU replica generates a few hundred tokens per second at most."""
DEFAULT_MAX_TOKENS = 16
"""OpenAI's default for the completions API."""
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_SEED = 2**63 - 1
MAX_ONGOING_REQUESTS = 16
OWNER = "ray-on-eks"


class ApiError(Exception):
    """A request the API refuses: the status and OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        """The JSON answer."""
        return JSONResponse(self.body(), status_code=self.status)


@dataclass(frozen=True, kw_only=True)
class CompletionRequest:
    """A validated ``POST /v1/completions`` body."""

    model: str
    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None


def _number(
    payload: Mapping[str, Any], name: str, default: float, low: float, high: float, *, open_low: bool
) -> float:
    value = payload.get(name, default)
    if value is None:
        return default
    bounds = f"{'(' if open_low else '['}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"{name} must be a number in {bounds}, got {json.dumps(value)[:40]}", param=name)
    number = float(value)
    if not math.isfinite(number) or number > high or number < low or (open_low and number == low):
        raise ApiError(400, f"{name} must be a number in {bounds}, got {value}", param=name)
    return number


def parse_completion_request(payload: Any, *, model_id: str) -> CompletionRequest:
    """Validate a decoded ``/v1/completions`` body; raises :class:`ApiError` with the reason.

    ``model_id`` is the id of the served model; naming another one is a 404 (``model_not_found``).
    Unknown fields are ignored, as OpenAI does, except the ones that would change the answer's
    shape (``stream``, ``n``), which are refused.
    """
    if not isinstance(payload, dict):
        raise ApiError(400, "body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: a model id from GET /v1/models", param="model")
    if model != model_id:
        raise ApiError(
            404,
            f"the model {model[:100]!r} does not exist; this server serves {model_id!r}",
            param="model",
            code="model_not_found",
        )
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "prompt is required and must be a non-empty string", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(
            400,
            f"prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}",
            param="prompt",
            code="context_length_exceeded",
        )
    max_tokens = payload.get("max_tokens", DEFAULT_MAX_TOKENS)
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise ApiError(
            400,
            f"max_tokens must be an integer in [1, {MAX_TOKENS_LIMIT}], got {json.dumps(max_tokens)[:40]}",
            param="max_tokens",
        )
    temperature = _number(payload, "temperature", 1.0, 0.0, 2.0, open_low=False)
    top_p = _number(payload, "top_p", 1.0, 0.0, 1.0, open_low=True)
    stop_value = payload.get("stop")
    stop: tuple[str, ...]
    if stop_value is None:
        stop = ()
    elif isinstance(stop_value, str):
        stop = (stop_value,)
    elif isinstance(stop_value, list) and all(isinstance(item, str) for item in stop_value):
        stop = tuple(stop_value)
    else:
        raise ApiError(400, "stop must be a string or a list of strings", param="stop")
    if len(stop) > MAX_STOP_SEQUENCES or any(not item or len(item) > MAX_STOP_CHARS for item in stop):
        raise ApiError(
            400,
            f"stop takes at most {MAX_STOP_SEQUENCES} non-empty strings of at most {MAX_STOP_CHARS} characters",
            param="stop",
        )
    seed = payload.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        raise ApiError(400, f"seed must be an integer in [0, {MAX_SEED}]", param="seed")
    if payload.get("stream"):
        raise ApiError(400, "stream is not supported by this server; send stream: false", param="stream")
    n = payload.get("n", 1)
    if n is not None and n != 1:
        raise ApiError(400, "n must be 1 (one choice per request)", param="n")
    return CompletionRequest(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
        seed=seed,
    )


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop sequence, and whether one was found."""
    cut = min((index for item in stop if (index := text.find(item)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@dataclass(frozen=True, kw_only=True)
class Generated:
    """One generation: the text and what the usage block reports."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def completion_body(request: CompletionRequest, generated: Generated, *, created: int) -> dict[str, Any]:
    """The ``text_completion`` answer in OpenAI's shape."""
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": created,
        "model": request.model,
        "choices": [
            {"index": 0, "text": generated.text, "finish_reason": generated.finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": generated.prompt_tokens,
            "completion_tokens": generated.completion_tokens,
            "total_tokens": generated.prompt_tokens + generated.completion_tokens,
        },
    }


def generate(model: Any, tokenizer: Any, request: CompletionRequest) -> Generated:
    """Run ``model.generate`` for ``request`` (blocking; the caller serialises calls).

    temperature 0 is greedy decoding; otherwise sampling with ``temperature`` and ``top_p`` (no
    top-k, as OpenAI). ``seed`` makes sampling repeatable. The completion ends at the
    end-of-sequence token or the first stop sequence (``finish_reason`` ``stop``), or after
    ``max_tokens`` tokens (``length``).
    """
    import torch

    encoded = tokenizer(request.prompt, return_tensors="pt")
    prompt_tokens = int(encoded["input_ids"].shape[1])
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if limit and prompt_tokens + request.max_tokens > limit:
        raise ApiError(
            400,
            f"this model's context is {limit} tokens; the prompt has {prompt_tokens} and max_tokens "
            f"asks for {request.max_tokens}",
            param="prompt",
            code="context_length_exceeded",
        )
    eos = tokenizer.eos_token_id
    options: dict[str, Any] = {
        "max_new_tokens": request.max_tokens,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    }
    if request.temperature > 0:
        options.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=0)
    else:
        options.update(do_sample=False)
    if request.seed is not None:
        torch.manual_seed(request.seed)
    with torch.no_grad():
        output = model.generate(**encoded, **options)
    new_tokens = output[0, prompt_tokens:].tolist()
    finish_reason = "length"
    if eos is not None and eos in new_tokens:
        new_tokens = new_tokens[: new_tokens.index(eos) + 1]
        finish_reason = "stop"
    text = tokenizer.decode(new_tokens, skip_special_tokens=True)
    text, stopped = apply_stop(text, request.stop)
    if stopped:
        finish_reason = "stop"
    return Generated(
        text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=len(new_tokens)
    )


@dataclass(frozen=True, kw_only=True)
class LlmServeSettings:
    """llm-serve parameters, parsed from the env contract."""

    model_path: Location

    @property
    def model_id(self) -> str:
        """The id clients name in ``model``: the export directory's name."""
        return storage.name(self.model_path)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LlmServeSettings:
        """Parse; raises ``SettingsError`` when neither MODEL_PATH nor STORAGE_PATH is usable."""
        env = EnvReader(environ)
        return cls(model_path=env.location("MODEL_PATH", derived=env.storage_subdir("models", "llm-latest")))


def _load_export(path: Location) -> tuple[tuple[Any, Any, int], Any]:
    """``((model, tokenizer, loaded at), meta)`` of the export in ``path``, for :class:`ModelWatcher`."""
    from workloads.llm_finetune.model import load_export

    model, tokenizer, meta = load_export(path)
    return (model, tokenizer, int(time.time())), meta


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=MAX_ONGOING_REQUESTS)
class LanguageModel:
    """Loads the export from MODEL_PATH and answers the OpenAI-style HTTP API."""

    def __init__(self) -> None:
        from workloads.llm_finetune.model import ModelNotFoundError

        settings = LlmServeSettings.from_env()
        self._model_path = settings.model_path
        self._model_id = settings.model_id
        self._generate_lock = threading.Lock()
        self._watcher = ModelWatcher(
            self._model_path,
            _load_export,
            errors=(ModelNotFoundError, OSError, ValueError, RuntimeError),
            name="language model",
        )
        self._watcher.refresh()

    def _model_info(self) -> dict[str, Any]:
        loaded = self._watcher.loaded
        assert loaded is not None
        (_, _, loaded_at), meta = loaded
        return {
            "id": self._model_id,
            "object": "model",
            "created": loaded_at,
            "owned_by": OWNER,
            "base_model": meta.model_name,
            "epoch": meta.epoch,
            "held_out_perplexity": meta.held_out_perplexity,
            "path": str(self._model_path),
        }

    def _unavailable(self) -> ApiError:
        return ApiError(
            503,
            f"model not available: {self._watcher.error}",
            error_type="server_error",
            code="model_not_loaded",
        )

    async def __call__(self, request: Request) -> JSONResponse:
        """Route the three endpoints; every answer is JSON."""
        path = route_path(request)
        routes = {HEALTH_PATH: "GET", MODELS_PATH: "GET", COMPLETIONS_PATH: "POST"}
        try:
            if path not in routes:
                raise ApiError(
                    404,
                    f"no route {path[:200]}; use POST {COMPLETIONS_PATH}, GET {MODELS_PATH} or GET {HEALTH_PATH}",
                    code="not_found",
                )
            if request.method != routes[path]:
                raise ApiError(405, f"{path} accepts {routes[path]}", code="method_not_allowed")
            if path == HEALTH_PATH:
                self._watcher.refresh()
                if self._watcher.loaded is None:
                    return JSONResponse(
                        {"status": "unavailable", "error": self._watcher.error}, status_code=503
                    )
                return JSONResponse({"status": "ok", "model": self._model_info()})
            self._watcher.refresh(force=False)
            if self._watcher.loaded is None:
                raise self._unavailable()
            if path == MODELS_PATH:
                return JSONResponse({"object": "list", "data": [self._model_info()]})
            return await self._complete(request)
        except ApiError as error:
            return error.response()

    async def _complete(self, request: Request) -> JSONResponse:
        try:
            body = await read_body_limited(request, MAX_BODY_BYTES)
        except BodyTooLargeError as error:
            raise ApiError(413, str(error), code="request_too_large") from None
        except BadRequestError as error:
            raise ApiError(error.status, str(error)) from None
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"body is not valid JSON: {error}", code="invalid_json") from None
        except RecursionError:
            raise ApiError(400, "body is nested too deeply to be a request", code="invalid_json") from None
        parsed = parse_completion_request(payload, model_id=self._model_id)
        loaded = self._watcher.loaded
        assert loaded is not None
        (model, tokenizer, _), _ = loaded

        def run() -> Generated:
            with self._generate_lock:
                return generate(model, tokenizer, parsed)

        generated = await asyncio.to_thread(run)
        return JSONResponse(completion_body(parsed, generated, created=int(time.time())))


app = LanguageModel.bind()  # type: ignore[attr-defined]

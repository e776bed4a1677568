"""Unit tests of llm-serve's request validation and answer shape (pure functions, no Serve)."""

from __future__ import annotations

from typing import Any

import pytest

from workloads.llm_serve.app import (
    DEFAULT_MAX_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_TOKENS_LIMIT,
    ApiError,
    CompletionRequest,
    Generated,
    apply_stop,
    completion_body,
    parse_completion_request,
)

MODEL = "llm-latest"


def parse(**fields: Any) -> CompletionRequest:
    return parse_completion_request({"model": MODEL, "prompt": "Return the", **fields}, model_id=MODEL)


def test_defaults_follow_openai() -> None:
    request = parse()
    assert request == CompletionRequest(
        model=MODEL,
        prompt="Return the",
        max_tokens=DEFAULT_MAX_TOKENS,
        temperature=1.0,
        top_p=1.0,
        stop=(),
        seed=None,
    )


def test_every_field_is_taken() -> None:
    request = parse(max_tokens=MAX_TOKENS_LIMIT, temperature=0, top_p=0.5, stop=["\n", "."], seed=7, user="x")
    assert request.max_tokens == MAX_TOKENS_LIMIT and request.temperature == 0.0 and request.top_p == 0.5
    assert request.stop == ("\n", ".") and request.seed == 7
    assert parse(stop="END").stop == ("END",)
    assert parse(max_tokens=None, temperature=None, stop=None, seed=None, stream=False, n=1).max_tokens == 16


@pytest.mark.parametrize(
    ("payload", "status", "param", "fragment"),
    [
        ([], 400, None, "body must be a JSON object"),
        ({"prompt": "x"}, 400, "model", "model is required"),
        ({"model": "gpt-4", "prompt": "x"}, 404, "model", "the model 'gpt-4' does not exist"),
        ({"model": MODEL}, 400, "prompt", "prompt is required"),
        ({"model": MODEL, "prompt": ""}, 400, "prompt", "non-empty string"),
        ({"model": MODEL, "prompt": ["a", "b"]}, 400, "prompt", "non-empty string"),
        (
            {"model": MODEL, "prompt": "x" * (MAX_PROMPT_CHARS + 1)},
            400,
            "prompt",
            f"at most {MAX_PROMPT_CHARS}",
        ),
        ({"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "max_tokens", "integer in [1, 256], got 0"),
        ({"model": MODEL, "prompt": "x", "max_tokens": 257}, 400, "max_tokens", "got 257"),
        ({"model": MODEL, "prompt": "x", "max_tokens": 2.0}, 400, "max_tokens", "got 2.0"),
        ({"model": MODEL, "prompt": "x", "max_tokens": True}, 400, "max_tokens", "got true"),
        ({"model": MODEL, "prompt": "x", "temperature": 2.5}, 400, "temperature", "in [0, 2], got 2.5"),
        ({"model": MODEL, "prompt": "x", "temperature": -0.1}, 400, "temperature", "got -0.1"),
        ({"model": MODEL, "prompt": "x", "temperature": "hot"}, 400, "temperature", 'got "hot"'),
        ({"model": MODEL, "prompt": "x", "top_p": 0}, 400, "top_p", "in (0, 1], got 0"),
        ({"model": MODEL, "prompt": "x", "top_p": 1.5}, 400, "top_p", "got 1.5"),
        ({"model": MODEL, "prompt": "x", "stop": 3}, 400, "stop", "string or a list of strings"),
        ({"model": MODEL, "prompt": "x", "stop": ["a", ""]}, 400, "stop", "non-empty strings"),
        ({"model": MODEL, "prompt": "x", "stop": list("abcde")}, 400, "stop", "at most 4"),
        ({"model": MODEL, "prompt": "x", "seed": -1}, 400, "seed", "seed must be an integer"),
        ({"model": MODEL, "prompt": "x", "seed": "1"}, 400, "seed", "seed must be an integer"),
        ({"model": MODEL, "prompt": "x", "stream": True}, 400, "stream", "stream is not supported"),
        ({"model": MODEL, "prompt": "x", "n": 2}, 400, "n", "n must be 1"),
    ],
)
def test_bad_requests_are_4xx_in_openais_error_shape(
    payload: Any, status: int, param: str | None, fragment: str
) -> None:
    with pytest.raises(ApiError) as caught:
        parse_completion_request(payload, model_id=MODEL)
    error = caught.value
    assert error.status == status and fragment in error.message
    body = error.body()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"
    if status == 404:
        assert body["error"]["code"] == "model_not_found"


def test_stop_sequences_cut_at_the_earliest() -> None:
    assert apply_stop("abc. def\nghi", (".", "\n")) == ("abc", True)
    assert apply_stop("abc", ("x",)) == ("abc", False)
    assert apply_stop("abc", ()) == ("abc", False)


def test_completion_body_has_openais_shape() -> None:
    request = parse(max_tokens=4)
    body = completion_body(
        request,
        Generated(text=" list", finish_reason="length", prompt_tokens=3, completion_tokens=4),
        created=10,
    )
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["created"] == 10
    assert body["model"] == MODEL
    assert body["choices"] == [{"index": 0, "text": " list", "finish_reason": "length", "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    other = completion_body(
        request, Generated(text="", finish_reason="stop", prompt_tokens=3, completion_tokens=1), created=10
    )
    assert other["id"] != body["id"]

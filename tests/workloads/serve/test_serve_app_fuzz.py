"""Fuzzed request bodies to the serve replica: 2xx, or 4xx with a JSON error; never a 5xx or a crash.

The deployment class is called in-process with real ASGI requests (as in test_serve_app.py); an
exception escaping it is what Serve answers with a 500, so the property is checked on both. After the
fuzzing the same replica still answers ``/healthz`` with 200 and predicts. The integration test
(tests/workloads/test_serve_reliability_integration.py) sends a smaller fuzzed batch over real HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import fuzz
from tests.workloads.serve.test_serve_app import ask, publish
from workloads.serve.app import Classifier

INPUT_DIM = 4  # the model publish() writes
EXAMPLES = {"bodies": 0, "2xx": 0, "4xx": 0}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(),  # nan / inf: written by json.dumps as NaN / Infinity, which json.loads accepts
    st.integers(min_value=10**300, max_value=10**400),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
rows = st.lists(numbers, min_size=INPUT_DIM - 1, max_size=INPUT_DIM + 1)
valid = st.builds(
    lambda r: {"instances": r},
    st.lists(
        st.lists(
            st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False)),
            min_size=INPUT_DIM,
            max_size=INPUT_DIM,
        ),
        min_size=1,
        max_size=8,
    ),
)
well_shaped = st.builds(lambda r: {"instances": r}, st.lists(rows, min_size=0, max_size=6))


def _deep(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"


bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    well_shaped.map(lambda v: json.dumps(v).encode()),
    valid.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=100_000).map(_deep),
    st.sampled_from([b"", b"null", b"{}", b'{"instances": null}', b"\xff\xfe", b'{"instances": [[1,2,3,4]]']),
)


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Any:
    model_dir = tmp_path_factory.mktemp("serve-fuzz")
    publish(model_dir, epoch=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_PATH", str(model_dir))
        return Classifier.func_or_class()  # type: ignore[attr-defined]


def _check(replica: Any, method: str, path: str, body: bytes) -> int:
    status, answer = ask(replica, method, path, body)
    assert status < 500, (status, answer, body[:200])
    assert isinstance(answer, dict), answer
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
    return status


def test_random_bodies_never_get_a_5xx(replica: Any, capsys: pytest.CaptureFixture[str]) -> None:
    @fuzz(200)
    @given(bodies)
    def predict(body: bytes) -> None:
        EXAMPLES["bodies"] += 1
        status = _check(replica, "POST", "/predict", body)
        EXAMPLES["2xx" if status < 300 else "4xx"] += 1

    @fuzz(40)
    @given(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
        st.text(max_size=12),
        st.binary(max_size=16),
    )
    def anywhere(method: str, path: str, body: bytes) -> None:
        EXAMPLES["bodies"] += 1
        _check(replica, method, "/" + path.lstrip("/"), body)

    predict()
    anywhere()
    # The replica is still healthy and still predicts.
    assert ask(replica, "GET", "/healthz")[0] == 200
    status, answer = ask(replica, "POST", "/predict", b'{"instances": [[1, 2, 3, 4]]}')
    assert status == 200 and len(answer["predictions"]) == 1
    with capsys.disabled():
        print(f"\nserve fuzz examples: {json.dumps(EXAMPLES)}")
    assert EXAMPLES["2xx"] > 0 and EXAMPLES["4xx"] > 0


def test_deeply_nested_and_huge_number_bodies_are_client_errors(replica: Any, tmp_path: Path) -> None:
    # Shapes the fuzzing above found: nesting deeper than Python's JSON recursion limit and integers
    # too large for a float both escaped as exceptions (a 500 from Serve); floats beyond float32's
    # range were predicted from inf.
    assert _check(replica, "POST", "/predict", _deep(100_000)) == 400
    huge = json.dumps({"instances": [[10**400, 1, 2, 3]]}).encode()
    assert _check(replica, "POST", "/predict", huge) == 400
    # Finite for Python but infinite as the model's float32: refused rather than predicted from inf.
    assert _check(replica, "POST", "/predict", b'{"instances": [[1e300, 1, 2, 3]]}') == 400

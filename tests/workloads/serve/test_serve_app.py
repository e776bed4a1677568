"""Unit tests of the serve app's request validation (no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from workloads.serve.app import MAX_INSTANCES, BadRequestError, parse_instances


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

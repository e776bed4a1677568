"""Fuzzed stack configs: a valid program or the one-line-per-problem config error, never a traceback.

Hypothesis mutates ``Pulumi.dev.yaml`` (random leaf values, removed keys, unknown keys) and feeds the
result through the engine's path: values become the strings the engine hands the program
(tests/pulumi_harness.py ``load_stack_config``) and are read by ``parse_engine_config``, the pure core
of ``load_stack_config``.
A smaller number of examples runs the whole program under mocks. Deterministic (``derandomize``), no
deadline (a loaded machine must not make it flaky), bounded example counts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from components.config import PROJECT, ConfigError, StackConfig, parse_engine_config
from tests.fuzz import fuzz
from tests.pulumi_harness import REPO, _engine_value, load_stack_config, run_program

DEV = {
    key.split(":", 1)[1]: value
    for key, value in yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"].items()
    if key.startswith(f"{PROJECT}:")
}
TOP_KEYS = sorted({field.alias or name for name, field in StackConfig.model_fields.items()} - {"region"})
EXAMPLES = {"parse": 0, "program": 0, "valid": 0, "rejected": 0}


def _leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _leaf_paths(value, (*prefix, key))] or [prefix]
    if isinstance(node, list):
        return [p for index, value in enumerate(node) for p in _leaf_paths(value, (*prefix, index))] or [
            prefix
        ]
    return [prefix]


PATHS = sorted(_leaf_paths(DEV), key=repr)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "0", "-1", "1e9", "true", "{", "[1,", "8Gi", "500m", "ml.g5.xlarge", "us-west-2"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    if not (isinstance(tree, dict) and head in tree) and not (
        isinstance(tree, list) and isinstance(head, int) and head < len(tree)
    ):
        return tree  # an earlier edit replaced this subtree: nothing left to edit here
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    if value is None and not rest:
        if isinstance(copy, dict):
            copy.pop(head, None)
        else:
            copy[head] = None
        return copy
    copy[head] = _set(copy[head], tuple(rest), value)
    return copy


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The dev stack with 1-4 random edits: a leaf replaced or removed, a top key replaced or unknown."""
    config: dict[str, Any] = dict(DEV)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["leaf", "leaf", "top", "unknown", "region"]))
        if kind == "leaf":
            config = _set(config, draw(st.sampled_from(PATHS)), draw(values))
        elif kind == "top":
            config[draw(st.sampled_from(TOP_KEYS))] = draw(values)
        elif kind == "unknown":
            config[draw(st.text(alphabet="abcdefghXYZ_", min_size=1, max_size=10))] = draw(values)
        else:
            config["aws:region"] = draw(values)
    return config


def _engine_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """Overrides for the harness: every dev key, replaced or removed (None) as in ``config``."""
    overrides: dict[str, Any] = {key: None for key in DEV}
    overrides.update(config)
    return overrides


# Project defaults from Pulumi.yaml without any dev key: the base each mutated config is laid over.
BASE_ENGINE = load_stack_config("dev", dict.fromkeys(DEV))


def _engine_map(config: dict[str, Any]) -> dict[str, str]:
    """The engine's config map for ``config`` (what tests/pulumi_harness.py hands the program)."""
    engine = dict(BASE_ENGINE)
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            engine.pop(full, None)
        else:
            engine[full] = _engine_value(value)
    return engine


def _assert_one_line_problems(message: str) -> None:
    assert message.startswith("Invalid stack configuration:\n  - "), message
    assert "Traceback" not in message and 'File "' not in message, message
    for line in message.split("\n  - ")[1:]:
        assert "\n" not in line, f"a problem spans several lines: {line!r}"
        assert line.startswith((f"{PROJECT}:", "aws:region")), f"a problem does not name its key: {line!r}"


@fuzz(200)
@given(mutated_configs())
def test_random_configs_parse_or_fail_with_one_line_per_problem(config: dict[str, Any]) -> None:
    EXAMPLES["parse"] += 1
    try:
        parsed = parse_engine_config(_engine_map(config))
    except ConfigError as error:
        EXAMPLES["rejected"] += 1
        _assert_one_line_problems(str(error))
    else:
        EXAMPLES["valid"] += 1
        assert isinstance(parsed, StackConfig)


@fuzz(8)
@given(mutated_configs())
def test_random_configs_run_the_program_or_stop_before_any_resource(config: dict[str, Any]) -> None:
    EXAMPLES["program"] += 1
    run = run_program("dev", _engine_overrides(config))
    if run.error is None:
        assert run.resources, "a valid config registers the stack's resources"
        return
    assert isinstance(run.error, ConfigError), f"{type(run.error).__name__}: {run.error}"
    _assert_one_line_problems(str(run.error))
    assert run.resources == []


def test_fuzz_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints how many examples the fuzz tests above tried (bench/RESULTS.md quotes it)."""
    with capsys.disabled():
        print(f"\nconfig fuzz examples: {json.dumps(EXAMPLES)}")

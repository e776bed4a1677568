"""Hypothesis settings shared by the fuzz tests: deterministic, bounded, no deadline.

``derandomize``: the same examples on every run (a fuzz failure reproduces, CI never flakes on a new
random draw); ``deadline=None``: a loaded 2-core machine must not turn a slow example into a failure;
``database=None``: nothing written into the checkout.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def fuzz(max_examples: int) -> settings:
    """Settings for a fuzz test trying ``max_examples`` inputs."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )

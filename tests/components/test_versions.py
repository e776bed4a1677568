"""Pinned versions agree: Ray image tag, the pinned ray package and the installed ray."""

from __future__ import annotations

import re
import sys

import ray

from components import versions
from tests.pulumi_harness import REPO


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / path).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s#]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(3)
    return pins


def test_ray_pin_matches_versions_module() -> None:
    assert _pins("requirements.txt")["ray"] == versions.RAY_VERSION


def test_installed_ray_is_the_pinned_one() -> None:
    assert ray.__version__ == versions.RAY_VERSION


def test_image_python_matches_the_local_interpreter() -> None:
    # Jobs submitted from this machine and the image must agree on the Python minor version.
    assert f"py{sys.version_info.major}{sys.version_info.minor}" == versions.RAY_PYTHON_TAG


def test_ray_image_tags_carry_the_ray_version() -> None:
    cpu = versions.ray_image(gpu=False)
    gpu = versions.ray_image(gpu=True)
    assert cpu == f"rayproject/ray:{versions.RAY_VERSION}-py311"
    assert gpu == f"rayproject/ray:{versions.RAY_VERSION}-py311-gpu"
    assert versions.ray_image(gpu=False, repository="123.dkr.ecr.us-west-2.amazonaws.com/ray").endswith(
        f":{versions.RAY_VERSION}-py311"
    )


def test_every_requirement_is_pinned_exactly() -> None:
    for path in ("requirements.txt", "requirements-dev.txt"):
        for raw in (REPO / path).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-r"):
                continue
            assert "==" in line, f"{path}: {line!r} is not pinned with =="

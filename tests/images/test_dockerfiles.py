"""images/: the Dockerfiles lint clean with hadolint, pin everything, stay non-root with no build tools,
carry the OCI labels, and install exactly the workloads' pinned dependencies.

No container engine here: the images are not built by the tests (the images workflow builds them).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from components import versions
from components.builders.images import FLAVOURS, IMAGE_INPUTS, REQUIREMENTS, Flavour, requirement_pins
from tests.pulumi_harness import REPO
from workloads.catalog import WORKLOADS

IMAGES = REPO / "images"
HADOLINT = Path(sys.executable).parent / "hadolint"
CONFIG = IMAGES / ".hadolint.yaml"
DOCKERFILES = {flavour: REPO / IMAGE_INPUTS[flavour][0] for flavour in FLAVOURS}
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.base.name",
}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _hadolint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--config", str(CONFIG), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_there_is_a_dockerfile_per_flavour() -> None:
    assert set(DOCKERFILES) == {"cpu", "gpu"}
    assert all(path.is_file() for path in DOCKERFILES.values())


def test_dockerfiles_lint_clean_with_hadolint() -> None:
    result = _hadolint(*DOCKERFILES.values())
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_with_the_project_config_rejects_what_the_dockerfiles_avoid(tmp_path: Path) -> None:
    # The linter really checks: an unpinned base, an unpinned cached pip install and missing labels fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN pip install torch\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3042", "DL3049"):
        assert rule in result.stdout, (rule, result.stdout)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_base_image_is_the_pinned_ray_image(flavour: Flavour) -> None:
    steps = _instructions(DOCKERFILES[flavour])
    assert steps[0] == ("ARG", f"RAY_IMAGE={versions.ray_image(gpu=flavour == 'gpu')}")
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert froms == ["${RAY_IMAGE}"], "one stage, from the pinned Ray image only"
    assert not versions.ray_image(gpu=flavour == "gpu").endswith(":latest")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_runs_as_the_ray_user_without_build_tools(flavour: Flavour) -> None:
    steps = _instructions(DOCKERFILES[flavour])
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1] == "1000:100", "the last USER is the image's non-root ray user (uid 1000)"
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    for tool in ("apt-get", "apt ", "yum", "apk", "gcc", "build-essential", "sudo", "curl", "wget"):
        assert tool not in runs, f"{flavour}: {tool!r} installs or uses build tooling"
    # pip installs wheels only (nothing compiles, so no compiler is needed) and leaves no cache behind.
    assert "--only-binary=:all:" in runs
    assert "--no-cache-dir" in runs


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_pip_installs_only_the_pinned_requirements_file(flavour: Flavour) -> None:
    steps = _instructions(DOCKERFILES[flavour])
    copies = [args for keyword, args in steps if keyword == "COPY"]
    assert copies == ["requirements.txt /tmp/ray-on-eks-requirements.txt"]
    (run,) = [args for keyword, args in steps if keyword == "RUN"]
    assert run.startswith("python -m pip install ")
    assert run.endswith("-r /tmp/ray-on-eks-requirements.txt")
    # Nothing besides options and the requirements file: no loose, unpinned package names.
    words = run.removeprefix("python -m pip install ").split()
    loose = [w for w in words if not w.startswith("-") and not w.startswith(("https://", "/tmp/"))]
    assert loose == [], loose


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_oci_labels_carry_the_source_revision(flavour: Flavour) -> None:
    steps = _instructions(DOCKERFILES[flavour])
    labels = " ".join(args for keyword, args in steps if keyword == "LABEL")
    found = set(re.findall(r"(org\.opencontainers\.image\.[a-z.]+)=", labels))
    assert found == OCI_LABELS
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    assert ("ARG", "REVISION=unknown") in steps


def test_every_requirement_is_pinned_exactly() -> None:
    lines = [line.split("#", 1)[0].strip() for line in (REPO / REQUIREMENTS).read_text().splitlines()]
    packages = [line for line in lines if line]
    assert packages
    assert len(requirement_pins("\n".join(packages))) == len(packages), "every line is name==version"


def test_image_requirements_equal_the_catalog_and_the_project_pins() -> None:
    image = requirement_pins((REPO / REQUIREMENTS).read_text())
    project = requirement_pins((REPO / "requirements.txt").read_text())
    catalog = requirement_pins("\n".join(p for w in WORKLOADS.values() for p in w.pip))
    assert image == catalog, "images/requirements.txt must be exactly the catalog's pip packages"
    for name, version in image.items():
        assert project.get(name) == version, (
            f"{name}: images pin {version}, requirements.txt {project.get(name)}"
        )


def test_build_context_holds_only_what_the_dockerfiles_copy() -> None:
    ignore = [line.strip() for line in (IMAGES / ".dockerignore").read_text().splitlines()]
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules == ["**", "!requirements.txt"]
    # And the content hash covers every file a build reads: its Dockerfile and each COPY source.
    for flavour, path in DOCKERFILES.items():
        sources = {f"images/{args.split()[0]}" for keyword, args in _instructions(path) if keyword == "COPY"}
        assert set(IMAGE_INPUTS[flavour]) == {str(path.relative_to(REPO)), *sources}

"""Unit tests of the submission pieces that need no cluster: staging and the runtime_env."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from workloads.catalog import WORKLOADS, Workload
from workloads.jobs import (
    SubmissionError,
    Target,
    check_upload_size,
    new_submission_id,
    runtime_env,
    stage_files,
    upload_limit_bytes,
)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_staging_holds_exactly_the_catalog_files(tmp_path: Path, name: str) -> None:
    workload = WORKLOADS[name]
    staged = stage_files(workload, tmp_path / "code")
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == sorted(workload.files)
    repo = Path(__file__).resolve().parents[2]
    for relative in workload.files:
        assert (staged / relative).read_bytes() == (repo / relative).read_bytes()


def test_staging_replaces_a_previous_stage(tmp_path: Path) -> None:
    (tmp_path / "code" / "stale").mkdir(parents=True)
    staged = stage_files(WORKLOADS["quickstart"], tmp_path / "code")
    assert not (staged / "stale").exists()


def test_staging_reports_a_missing_catalog_file(tmp_path: Path) -> None:
    broken = Workload(
        name="broken",
        kind="job",
        module="workloads.nope",
        files=("workloads/nope.py",),
        env_defaults={},
        pip=(),
        needs_storage=False,
        description="",
    )
    with pytest.raises(SubmissionError, match=r"catalog file workloads/nope.py of broken is missing"):
        stage_files(broken, tmp_path / "code")


def test_runtime_env_carries_env_and_pip_only_for_clusters(tmp_path: Path) -> None:
    workload = WORKLOADS["dt-pytorch"]
    local = runtime_env(workload, env={"EPOCHS": "2"}, working_dir=tmp_path, with_pip=False)
    assert local == {"working_dir": str(tmp_path), "env_vars": {"EPOCHS": "2"}}
    remote = runtime_env(workload, env={}, working_dir=tmp_path, with_pip=True)
    assert remote["pip"] == list(workload.pip)
    assert "pip" not in runtime_env(WORKLOADS["quickstart"], env={}, working_dir=tmp_path, with_pip=True)


def test_token_goes_in_a_bearer_header() -> None:
    assert Target(address="http://x", token="abc").headers() == {"Authorization": "Bearer abc"}
    assert Target(address="http://x").headers() == {}


def test_upload_limit_is_the_smaller_of_rays_two_limits() -> None:
    from ray._private import ray_constants
    from ray._private.runtime_env import packaging

    assert upload_limit_bytes() == min(
        ray_constants.DASHBOARD_CLIENT_MAX_SIZE, packaging.GCS_STORAGE_MAX_SIZE
    )
    assert upload_limit_bytes() == 100 * 2**20  # ray 2.60: the dashboard's request body limit


def test_upload_size_is_checked_on_the_package_ray_would_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("print('ok')\n")
    (project / "data.bin").write_bytes(os.urandom(200_000))  # incompressible
    with pytest.raises(SubmissionError) as caught:
        check_upload_size(project, limit=100_000)
    message = str(caught.value)
    assert (
        f"{project} zips to 0.2 MiB, over Ray's upload limit" in message
        and ".gitignore or .rayignore" in message
    )
    # Ray honours .gitignore when it packages a working_dir; so does the check.
    (project / ".gitignore").write_text("data.bin\n")
    assert check_upload_size(project, limit=100_000) < 100_000


def test_submission_ids_are_readable_for_any_name() -> None:
    assert re.fullmatch(r"my-job-\d{8}-\d{6}-[0-9a-f]{6}", new_submission_id("my job"))
    assert new_submission_id("///").startswith("job-")

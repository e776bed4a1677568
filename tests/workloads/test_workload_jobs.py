"""Unit tests of the submission pieces that need no cluster: staging and the runtime_env."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.catalog import WORKLOADS, Workload
from workloads.jobs import SubmissionError, Target, runtime_env, stage_files


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

"""Unit tests of the job CLI paths that need no cluster: parsing and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.cli import CliError, main, parse_env_pairs
from workloads.local_cluster import free_port, state_file


def test_env_pairs_parse_and_keep_equals_in_values() -> None:
    assert parse_env_pairs(["EPOCHS=3", "MODEL_PATH=/a=b", "DATASET="]) == {
        "EPOCHS": "3",
        "MODEL_PATH": "/a=b",
        "DATASET": "",
    }
    with pytest.raises(CliError, match="NAME=VALUE"):
        parse_env_pairs(["EPOCHS"])


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_unknown_workload_lists_names_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(["--local-dir", str(tmp_path), "run", "nope"], capsys)
    assert status == 1
    assert err.startswith("error: unknown workload 'nope'; known workloads: batch-inference, dt-pytorch")
    assert "Traceback" not in err
    assert not state_file(tmp_path).exists()


def test_env_outside_the_contract_is_refused_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(["--local-dir", str(tmp_path), "run", "quickstart", "--env", "EPOCS=3"], capsys)
    assert status == 1
    assert "'EPOCS' is not in the workload env contract" in err and "EPOCHS" in err
    assert not state_file(tmp_path).exists()


def test_commands_without_a_local_cluster_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["list"], ["status", "x"], ["logs", "x"], ["stop", "x"], ["dashboard"]):
        status, _, err = run_cli(["--local-dir", str(tmp_path), *argv], capsys)
        assert status == 1
        assert "no local Ray cluster started by this CLI is running" in err


def test_unreachable_address_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    status, _, err = run_cli(["list", "--address", address], capsys)
    assert status == 1
    assert (
        err.strip()
        == f"error: no reachable Ray cluster at {address}: Failed to connect to Ray at address: {address}."
    )


def test_submit_needs_storage_path_for_storage_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(["submit", "dt-pytorch", "--address", "http://127.0.0.1:1"], capsys)
    assert status == 1
    assert "dt-pytorch needs STORAGE_PATH" in err


def test_submit_requires_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["submit", "quickstart"])
    assert caught.value.code == 2
    assert "--stack" in capsys.readouterr().err


def test_catalog_lists_workloads_and_contract(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(["catalog"], capsys)
    assert status == 0
    for text in ("quickstart", "dt-pytorch", "python -m workloads.serve.app", "NUM_WORKERS", "MODEL_PATH"):
        assert text in out


def test_down_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(["--local-dir", str(tmp_path), "down"], capsys)
    assert status == 0 and "no local Ray head was running" in out

"""Unit tests of the job CLI paths that need no cluster: parsing and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workloads import cli
from workloads.catalog import WORKLOADS
from workloads.cli import CliError, build_parser, main, own_code, parse_env_pairs, stop_command
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
    assert status == 2
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", "dt-pytorch", "--env", "EPOCHS=abc"],
            "error: --env EPOCHS must be an integer >= 1, got 'abc'",
        ),
        (
            ["run", "dt-pytorch", "--env", "USE_GPU=maybe"],
            "error: --env USE_GPU must be true or false, got 'maybe'",
        ),
        (
            ["run", "dt-pytorch", "--env", "RUN_NAME=a/b"],
            "error: --env RUN_NAME must be a plain directory name",
        ),
        (
            ["run", "batch-inference", "--env", "MODEL_PATH=rel"],
            "error: --env MODEL_PATH must be an absolute path",
        ),
    ],
)
def test_bad_env_values_exit_2_with_one_line_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run_cli(["--local-dir", str(tmp_path), *argv], capsys)
    assert status == 2
    assert err.startswith(message) and err.count("\n") == 1 and out == ""
    assert not state_file(tmp_path).exists()


def test_submit_checks_env_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    # The address is unreachable: a bad value is reported first, with status 2.
    address = f"http://127.0.0.1:{free_port()}"
    status, _, err = run_cli(
        ["submit", "dt-pytorch", "--address", address, "--env", "STORAGE_PATH=/fsx", "--env", "EPOCHS=x"],
        capsys,
    )
    assert status == 2 and err.strip() == "error: --env EPOCHS must be an integer >= 1, got 'x'"
    # Own code: any name is allowed, contract names are still checked.
    script = Path(__file__)
    status, _, err = run_cli(["submit", str(script), "--address", address, "--env", "NUM_WORKERS=0"], capsys)
    assert status == 2 and "NUM_WORKERS must be an integer >= 1, got '0'" in err


def test_help_is_plain_and_run_help_lists_the_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    texts = [parser.format_help()]
    subparsers: Any = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    texts += [sub.format_help() for sub in subparsers.choices.values()]
    for text in texts:
        assert "``" not in text and ":func:" not in text
    run_help = subparsers.choices["run"].format_help()
    for name in WORKLOADS:
        assert name in run_help
    assert "PATH" in run_help and "--entrypoint" in run_help and "--pip" in run_help
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0 and "``" not in capsys.readouterr().out


def test_own_code_paths_resolve_or_say_what_is_wrong(tmp_path: Path) -> None:
    script = tmp_path / "my job.py"
    script.write_text("print('hi')\n")
    code = own_code(str(script), entrypoint=None, pip=["six==1.17.0"])
    assert code.entrypoint == "python 'my job.py'" and code.pip == ("six==1.17.0",) and code.name == "my job"
    staged = code.stage(tmp_path / "stage")
    assert [p.name for p in staged.iterdir()] == ["my job.py"]

    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(CliError, match=r"directory without main\.py: pass --entrypoint"):
        own_code(str(project), entrypoint=None, pip=[])
    assert own_code(str(project), entrypoint="python -m pkg", pip=[]).stage(tmp_path / "x") == project
    (project / "main.py").write_text("")
    assert own_code(str(project), entrypoint=None, pip=[]).entrypoint == "python main.py"
    with pytest.raises(CliError, match=r"neither a workload .* nor an existing path"):
        own_code(str(tmp_path / "missing.py"), entrypoint=None, pip=[])


def test_entrypoint_and_pip_are_for_own_code_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(["--local-dir", str(tmp_path), "run", "quickstart", "--pip", "six"], capsys)
    assert status == 1 and "--pip applies to your own code (a PATH)" in err
    status, _, err = run_cli(["--local-dir", str(tmp_path), "run", "./nothing-here.py"], capsys)
    assert status == 1 and "nor an existing path" in err
    assert not state_file(tmp_path).exists()


def test_stop_command_puts_each_flag_where_argparse_expects_it() -> None:
    assert stop_command("j-1", []) == "python -m workloads stop j-1"
    assert stop_command("j-1", ["--stack", "dev"]) == "python -m workloads stop j-1 --stack dev"
    assert (
        stop_command("j-1", ["--local-dir", "/tmp/a b"])
        == "python -m workloads --local-dir '/tmp/a b' stop j-1"
    )


def test_plain_output_when_stdout_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.output_env() == {
        "RAY_DEDUP_LOGS": "0",
        "RAY_COLOR_PREFIX": "0",
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    }
    cli._print("\x1b[36m(RayTrainWorker pid=1)\x1b[0m epoch 1")
    assert capsys.readouterr().out == "(RayTrainWorker pid=1) epoch 1\n"


def test_worker_log_dedup_is_off_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True)
    assert cli.output_env() == {"RAY_DEDUP_LOGS": "0"}


def test_rays_dedup_would_hold_back_the_second_workers_rank_line() -> None:
    """Why RAY_DEDUP_LOGS=0: with dedup on, a second worker's rank line waits for later logs."""
    from ray._private.ray_logging import LogDeduplicator

    dedup = LogDeduplicator(agg_window_s=5, allow_re=None, skip_re=None, _timesource=lambda: 0.0)
    printed = [
        line
        for pid, rank in ((3167, 1), (3136, 0))
        for batch in dedup.deduplicate(
            {"ip": "127.0.0.1", "pid": pid, "lines": [f"worker rank {rank}/2 pid {pid}"]}
        )
        for line in batch["lines"]
    ]
    assert printed == ["worker rank 1/2 pid 3167"]

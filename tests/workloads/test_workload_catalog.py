"""Unit tests of workloads.catalog: the table the CLI and the KubeRay builders share."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from workloads.catalog import (
    CODE_ROOT,
    ENV_CONTRACT,
    WORKLOADS,
    WORKLOADS_MOUNT_PATH,
    UnknownWorkloadError,
    get_workload,
    workload_env,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT_NAMES = {var.name for var in ENV_CONTRACT}
READER_METHODS = {"raw", "string", "integer", "positive_float", "boolean", "choice", "path"}


def _module_file(module: str) -> str | None:
    """Repo-relative file of a ``workloads.*`` module (package -> __init__.py)."""
    base = Path(*module.split("."))
    if (REPO_ROOT / base / "__init__.py").is_file():
        return (base / "__init__.py").as_posix()
    if (REPO_ROOT / base.with_suffix(".py")).is_file():
        return base.with_suffix(".py").as_posix()
    return None


def _imported_workload_modules(path: Path) -> set[str]:
    """Every ``workloads.*`` module a file imports, at any nesting level (function-local too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "workloads")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "workloads":
            found.add(node.module)
            for alias in node.names:  # `from workloads import local_cluster` imports a module
                if _module_file(f"{node.module}.{alias.name}"):
                    found.add(f"{node.module}.{alias.name}")
    return found


def _closure(module: str) -> set[str]:
    """Files needed to run ``module``: its file, its imports (transitively) and their packages."""
    files: set[str] = set()
    pending = [module]
    seen: set[str] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        for depth in range(1, len(parts) + 1):  # parent packages are imported first
            file = _module_file(".".join(parts[:depth]))
            assert file is not None, f"{'.'.join(parts[:depth])} does not resolve to a file"
            files.add(file)
        pending.extend(_imported_workload_modules(REPO_ROOT / _module_file(current)))  # type: ignore[operator]
    return files


def test_paths_match_the_cluster_layout() -> None:
    assert CODE_ROOT == "/opt/ray-on-eks"
    assert WORKLOADS_MOUNT_PATH == "/opt/ray-on-eks/workloads"


SERVICES = {"serve", "image-serve", "llm-serve"}


def test_the_workloads_are_catalogued() -> None:
    assert {
        "quickstart",
        "dt-pytorch",
        "serve",
        "batch-inference",
        "image-train",
        "image-serve",
        "llm-finetune",
        "llm-serve",
    } == set(WORKLOADS)
    assert {name for name, w in WORKLOADS.items() if w.kind == "service"} >= SERVICES
    for name in SERVICES:
        assert WORKLOADS[name].kind == "service" and WORKLOADS[name].serve_app is not None
    assert all(w.serve_app is None for w in WORKLOADS.values() if w.kind == "job")
    for name, workload in WORKLOADS.items():
        assert workload.name == name
        assert workload.entrypoint() == f"python -m {workload.module}"
        assert workload.description


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_file_exists_and_is_under_workloads(name: str) -> None:
    workload = WORKLOADS[name]
    assert len(set(workload.files)) == len(workload.files), "duplicate entries"
    for relative in workload.files:
        assert relative.startswith("workloads/") and relative.endswith(".py"), relative
        assert (REPO_ROOT / relative).is_file(), f"{relative} missing"


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_files_cover_everything_the_entrypoint_imports(name: str) -> None:
    workload = WORKLOADS[name]
    needed = _closure(workload.module)
    assert _module_file(workload.module) in workload.files
    assert needed <= set(workload.files), f"missing from files: {sorted(needed - set(workload.files))}"


def test_closure_helper_sees_function_level_imports() -> None:
    # train.py imports data/model only inside functions: the scan must still find them.
    needed = _closure("workloads.dt_pytorch.train")
    for file in ("workloads/dt_pytorch/data.py", "workloads/dt_pytorch/model.py", "workloads/settings.py"):
        assert file in needed


def test_env_contract_is_documented_and_complete() -> None:
    names = [var.name for var in ENV_CONTRACT]
    assert len(names) == len(set(names))
    for required in (
        "NUM_WORKERS",
        "USE_GPU",
        "CPUS_PER_WORKER",
        "STORAGE_PATH",
        "EPOCHS",
        "BATCH_SIZE",
        "DATASET",
        "CHECKPOINT_DIR",
        "MODEL_PATH",
        "LEARNING_RATE",
    ):
        assert required in names
    for var in ENV_CONTRACT:
        assert var.name.isupper() and var.description.strip()
        assert var.default is None or isinstance(var.default, str)
    derived = {var.name for var in ENV_CONTRACT if "Derived:" in var.description}
    assert {"CHECKPOINT_DIR", "MODEL_PATH"} <= derived
    assert all(var.default is None for var in ENV_CONTRACT if var.name in derived)


def test_workloads_read_only_contract_variables() -> None:
    """Every variable a workload reads goes through EnvReader with a contract name; no os.environ."""
    read: set[str] = set()
    for path in (REPO_ROOT / "workloads").rglob("*.py"):
        relative = path.relative_to(REPO_ROOT).as_posix()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in READER_METHODS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.isupper()
            ):
                read.add(node.args[0].value)
        shipped = any(relative in w.files for w in WORKLOADS.values())
        if shipped and relative != "workloads/settings.py":
            source = path.read_text()
            assert "os.environ" not in source and "getenv" not in source, relative
    assert read, "the scan found no reads at all"
    assert read <= CONTRACT_NAMES, f"read outside the contract: {read - CONTRACT_NAMES}"


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_env_defaults_are_frozen_contract_values(name: str) -> None:
    workload = WORKLOADS[name]
    assert set(workload.env_defaults) <= CONTRACT_NAMES
    assert all(isinstance(value, str) for value in workload.env_defaults.values())
    with pytest.raises(TypeError):
        workload.env_defaults["EPOCHS"] = "1"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        workload.name = "other"  # type: ignore[misc]


def test_pip_pins_match_requirements() -> None:
    pins = {}
    for raw in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        if "==" in line:
            package, version = line.split("==")
            pins[package.split("[")[0].lower()] = version
    assert WORKLOADS["quickstart"].pip == ()
    for workload in WORKLOADS.values():
        for requirement in workload.pip:
            package, _, version = requirement.partition("==")
            assert version, f"{requirement} is not pinned"
            assert pins.get(package.lower()) == version, f"{requirement} differs from requirements.txt"
    assert any(r.startswith("torch==") for r in WORKLOADS["dt-pytorch"].pip)


def test_storage_flag_matches_what_the_workload_needs() -> None:
    assert not WORKLOADS["quickstart"].needs_storage
    for name in (
        "dt-pytorch",
        "serve",
        "batch-inference",
        "image-train",
        "image-serve",
        "llm-finetune",
        "llm-serve",
    ):
        assert WORKLOADS[name].needs_storage


def test_unknown_workload_lists_known_names() -> None:
    with pytest.raises(UnknownWorkloadError) as caught:
        get_workload("dt-tensorflow")
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "dt-tensorflow" in message
    for name in WORKLOADS:
        assert name in message
    assert get_workload("serve") is WORKLOADS["serve"]


def test_workload_env_applies_overrides_and_rejects_unknown_names() -> None:
    workload = WORKLOADS["dt-pytorch"]
    env = workload_env(workload, {"EPOCHS": "3", "STORAGE_PATH": "/fsx"})
    assert env["EPOCHS"] == "3" and env["STORAGE_PATH"] == "/fsx"
    assert env["NUM_WORKERS"] == workload.env_defaults["NUM_WORKERS"]
    env["NUM_WORKERS"] = "99"  # a copy: the catalog is untouched
    assert workload.env_defaults["NUM_WORKERS"] != "99"
    assert workload_env(workload) == dict(workload.env_defaults)
    with pytest.raises(ValueError, match="EPOCH") as caught:
        workload_env(workload, {"EPOCH": "3"})
    assert "NUM_WORKERS" in str(caught.value) and "MODEL_PATH" in str(caught.value)


@pytest.mark.parametrize("module", ["workloads.catalog", "workloads.serve.config"])
def test_import_light_modules_pull_in_no_heavy_packages(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(','.join(m for m in ('ray', 'torch', 'sklearn', 'numpy', 'starlette') if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""


def test_readme_documents_every_contract_variable_and_workload() -> None:
    readme = (REPO_ROOT / "workloads" / "README.md").read_text()
    for var in ENV_CONTRACT:
        assert f"| `{var.name}` |" in readme, var.name
    for workload in WORKLOADS.values():
        assert f"| `{workload.name}` |" in readme, workload.name

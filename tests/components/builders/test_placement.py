"""Pod placement builders: pure, no mocks."""

from __future__ import annotations

import ast
from pathlib import Path

from components.builders.placement import node_selector_for

BUILDERS = Path(__file__).resolve().parents[3] / "components" / "builders"
# Modules whose import creates or registers Pulumi resources; builders must not import them.
RESOURCE_MODULES = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes")


def test_node_selector_pins_hyperpod_pods_to_schedulable_nodes() -> None:
    assert node_selector_for("hyperpod", "ml.g5.12xlarge") == {
        "node.kubernetes.io/instance-type": "ml.g5.12xlarge",
        "sagemaker.amazonaws.com/node-health-status": "Schedulable",
    }
    assert node_selector_for("eks", "g5.2xlarge") == {"node.kubernetes.io/instance-type": "g5.2xlarge"}
    assert node_selector_for("eks", None) == {}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_builders_import_no_module_that_creates_resources() -> None:
    """Builders are pure: no Pulumi SDK and no ComponentResource module (components/*.py other than
    config, contract and versions, which hold plain values)."""
    plain = {"components.config", "components.contract", "components.versions"}
    for path in sorted(BUILDERS.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in RESOURCE_MODULES, f"{path.name} imports {name}"
            if name.startswith("components.") and not name.startswith("components.builders"):
                assert name in plain, f"{path.name} imports {name}, a module that creates resources"

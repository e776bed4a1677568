"""``run_shared``: one program run per distinct input per session, handed out as independent copies."""

from __future__ import annotations

from typing import Any

import pytest

from components import kuberay_operator
from components.kuberay_operator import CRD_TYPE, load_crds
from tests import pulumi_harness
from tests.pulumi_harness import run_shared

PROVIDER = "pulumi:providers:kubernetes"
ADDON = "aws:eks/addon:Addon"


def test_each_caller_gets_its_own_copy_of_the_same_run() -> None:
    first = run_shared("kind")
    second = run_shared("kind")
    assert first is not second and first.resources == second.resources and first.exports == second.exports
    first.resources[0].inputs["mutated"] = True
    first.resources.clear()
    assert "mutated" not in run_shared("kind").resources[0].inputs
    assert second.resources


def test_the_environment_is_part_of_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert "kubeconfig" not in run_shared("kind").one(PROVIDER).inputs
    monkeypatch.setenv("KUBECONFIG", "/tmp/run-shared-test/config")
    assert run_shared("kind").one(PROVIDER).inputs["kubeconfig"] == "/tmp/run-shared-test/config"


def test_the_mocked_account_is_part_of_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def agent_version() -> str:
        run = run_shared("dev", {"managePodIdentityAgent": True})
        (agent,) = [r for r in run.of_type(ADDON) if r.inputs["addonName"] == "eks-pod-identity-agent"]
        return str(agent.inputs["addonVersion"])

    assert agent_version() == pulumi_harness.ADDON_VERSIONS["eks-pod-identity-agent"]
    monkeypatch.setitem(pulumi_harness.ADDON_VERSIONS, "eks-pod-identity-agent", "v1.99.0-eksbuild.1")
    assert agent_version() == "v1.99.0-eksbuild.1"


def test_a_patched_program_is_part_of_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_shared("kind").resources
    monkeypatch.setattr(pulumi_harness, "_run_main", lambda: None)  # a program that registers nothing
    assert run_shared("kind").resources == []


def _crd_bodies(run: pulumi_harness.ProgramRun) -> list[dict[str, Any]]:
    return [crd.inputs for crd in run.of_type(CRD_TYPE)]


def test_crd_schemas_are_stood_in_unless_asked_for_and_nothing_else_differs() -> None:
    # Fresh runs, not run_shared's: a full run there also answers callers that do not ask for one.
    light = pulumi_harness.run_ok("kind")
    full = pulumi_harness.run_ok("kind", crd_schemas=True)
    assert (light.crd_schemas, full.crd_schemas) == (False, True)
    by_name = {crd["metadata"]["name"]: crd["spec"] for crd in _crd_bodies(full)}
    assert by_name == {doc["metadata"]["name"]: doc["spec"] for doc in load_crds()}
    stand_ins = [
        version["schema"]["openAPIV3Schema"]
        for crd in _crd_bodies(light)
        for version in crd["spec"]["versions"]
    ]
    assert stand_ins and all(schema == pulumi_harness.CRD_SCHEMA_STAND_IN for schema in stand_ins)
    # Apart from the schema bodies, both runs registered the same resources with the same inputs.
    for crd in _crd_bodies(full):
        for version in crd["spec"]["versions"]:
            version["schema"]["openAPIV3Schema"] = pulumi_harness.CRD_SCHEMA_STAND_IN
    # (Registration order is the SDK's: a smaller CRD is serialized sooner.)
    assert sorted((r.urn, r.inputs, sorted(r.dependencies)) for r in light.resources) == sorted(
        (r.urn, r.inputs, sorted(r.dependencies)) for r in full.resources
    )
    assert light.exports == full.exports
    assert kuberay_operator.load_crds is pulumi_harness._LOAD_CRDS, "the program's loader is restored"


def test_a_shared_run_with_crd_schemas_answers_both_kinds_of_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[bool] = []

    def fake_run_ok(stack: str, overrides: Any = None, ecr: Any = None, crd_schemas: bool = False) -> Any:
        made.append(crd_schemas)
        return pulumi_harness.ProgramRun(stack=stack, config={}, crd_schemas=crd_schemas)

    monkeypatch.setattr(pulumi_harness, "_SHARED_RUNS", {})
    monkeypatch.setattr(pulumi_harness, "run_ok", fake_run_ok)
    assert not run_shared("kind").crd_schemas
    assert run_shared("kind", crd_schemas=True).crd_schemas  # the light run is not enough
    assert run_shared("kind").crd_schemas  # the full run answers a light caller too
    assert run_shared("kind", crd_schemas=True).crd_schemas
    assert made == [False, True]

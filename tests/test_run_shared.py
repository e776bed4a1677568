"""``run_shared``: one program run per distinct input per session, handed out as independent copies."""

from __future__ import annotations

import pytest

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

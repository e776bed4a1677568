"""The NetworkPolicies the real program registers (under mocks) pass the policy table, and the switch."""

from __future__ import annotations

from typing import Any

from tests.components.builders.test_network_policy import TABLE
from tests.netpol_eval import allowed
from tests.pulumi_harness import ProgramRun, run_program


def _program_policies(run: ProgramRun) -> list[dict[str, Any]]:
    return [
        {"metadata": r.inputs["metadata"], "spec": r.inputs["spec"]}
        for r in run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    ]


def test_dev_stack_renders_policies_that_pass_the_table(stack_runs: dict[str, ProgramRun]) -> None:
    policies = _program_policies(stack_runs["dev"])
    assert {p["metadata"]["name"] for p in policies} >= {"ray-default-deny-ingress", "ray-allow-prometheus"}
    for name, source, destination, port, expected in TABLE:
        assert allowed(policies, source, destination, port) is expected, name


def test_ray_pods_wait_for_the_policies(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    policy_urns = {r.urn for r in run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    cluster = run.one("kubernetes:ray.io/v1:RayCluster")
    assert policy_urns and policy_urns <= set(cluster.dependencies)


def test_network_policies_can_be_turned_off() -> None:
    run = run_program("dev", {"networkPolicies": False})
    assert run.error is None, run.error
    assert run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy") == []


def test_created_cluster_enables_the_network_policy_controller() -> None:
    """Auto Mode has no vpc-cni add-on: its policy controller is switched on by a kube-system ConfigMap."""
    for enabled in (True, False):
        run = run_program("sandbox", {"networkPolicies": enabled})
        assert run.error is None, run.error
        maps = [
            r
            for r in run.of_type("kubernetes:core/v1:ConfigMap")
            if r.inputs["metadata"]["name"] == "amazon-vpc-cni"
        ]
        if enabled:
            assert [m.inputs["data"] for m in maps] == [{"enable-network-policy-controller": "true"}]
            assert maps[0].inputs["metadata"]["namespace"] == "kube-system"
        else:
            assert maps == []

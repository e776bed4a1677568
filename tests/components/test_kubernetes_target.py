"""clusterType kubernetes under mocks: Pulumi.kind.yaml makes no AWS call, deploys through one provider
built from the kubeconfig settings, and claims, mounts and hands out the shared storage."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.kubernetes_target import SHARED_CLAIM_ANNOTATIONS
from tests.kuberay_schemas import validation_errors
from tests.kuberay_validation import validate
from tests.pulumi_harness import ProgramRun, Registered, run_ok, run_shared

# Every AWS package the program uses: pulumi-aws, pulumi-aws-native (HyperPod lookup) and pulumi-eks.
AWS_PACKAGES = ("aws:", "aws-native:", "eks:", "pulumi:providers:aws", "pulumi:providers:eks")
PROVIDER = "pulumi:providers:kubernetes"
RAY_KINDS = ("RayCluster", "RayJob", "RayService")


def _ray_pod_specs(run: ProgramRun) -> list[dict[str, Any]]:
    (cluster,) = run.custom_resources("RayCluster")
    spec = cluster.inputs["spec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        group["template"]["spec"] for group in spec["workerGroupSpecs"]
    ]


def test_kind_stack_makes_no_aws_call_and_registers_no_aws_resource(kubernetes_stack_run: ProgramRun) -> None:
    run = kubernetes_stack_run
    assert [token for token in run.invokes if token.startswith(AWS_PACKAGES)] == []
    assert [r.type for r in run.resources if r.type.startswith(AWS_PACKAGES)] == []
    assert run.one("ray-on-eks:k8s:KubernetesTarget")
    assert run.of_type("ray-on-eks:aws:ClusterTarget") == []


def test_the_invoke_recorder_sees_aws_calls(aws_stack_run: ProgramRun) -> None:
    # Non-vacuity of the test above: the same recorder reports the EKS stacks' lookups.
    assert "aws:eks/getCluster:getCluster" in aws_stack_run.invokes


def test_every_kubernetes_resource_goes_through_the_one_provider(kubernetes_stack_run: ProgramRun) -> None:
    run = kubernetes_stack_run
    provider = run.one(PROVIDER)
    assert run.by_urn(provider.parent).type == "ray-on-eks:k8s:KubernetesTarget"
    custom = [r for r in run.resources if r.custom and r.type.startswith("kubernetes:")]
    assert custom
    for resource in custom:
        assert resource.provider.startswith(provider.urn + "::"), (resource.name, resource.provider)


def test_ambient_kubeconfig_when_nothing_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    provider = run_shared("kind").one(PROVIDER)  # memoized by environment too
    assert "kubeconfig" not in provider.inputs and "context" not in provider.inputs
    assert provider.inputs["enableServerSideApply"] in (True, "true")


def test_the_sdk_default_kubeconfig_env_reaches_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/home/runner/.kube/config")
    provider = run_ok("kind").one(PROVIDER)
    assert provider.inputs["kubeconfig"] == "/home/runner/.kube/config"


def test_configured_context_and_kubeconfig_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    run = run_ok("kind", {"kubernetes": {"context": "minikube", "kubeconfig": "~/.kube/minikube"}})
    provider = run.one(PROVIDER)
    assert provider.inputs["context"] == "minikube"
    assert provider.inputs["kubeconfig"] == "~/.kube/minikube"  # a path; the provider expands ~
    assert run.exports["kubeContext"] == "minikube"
    assert run.exports["clusterName"] == "minikube"


def test_exports_name_no_aws_location(kubernetes_stack_run: ProgramRun) -> None:
    exports = kubernetes_stack_run.exports
    assert exports["clusterType"] == "kubernetes"
    assert "region" not in exports and "kubeconfig" not in exports
    assert exports["kubeContext"] is None and exports["clusterName"] == "current-context"
    # What `python -m workloads submit --stack kind` reads (workloads/remote.py).
    assert {"namespace", "headServiceName", "rayAuthTokenSecretName"} <= set(exports)


def test_shared_claim_from_the_storage_class_mounted_in_every_ray_pod(
    kubernetes_stack_run: ProgramRun,
) -> None:
    run = kubernetes_stack_run
    storage = json.loads(run.config["ray-on-eks:storage"])
    (claim,) = run.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert claim.inputs["metadata"]["name"] == "shared-claim"
    assert claim.inputs["metadata"]["namespace"] == run.exports["namespace"]
    assert claim.inputs["metadata"]["annotations"] == SHARED_CLAIM_ANNOTATIONS
    assert claim.inputs["spec"] == {
        "storageClassName": storage["storageClass"],
        "accessModes": [storage["accessMode"]],
        "resources": {"requests": {"storage": f"{storage['sizeGib']}Gi"}},
    }
    # retainData false (Pulumi.kind.yaml): the claim goes with the stack.
    assert claim.retain_on_delete is False
    assert run.exports["storagePath"] == "/shared/ray-results"
    for pod in _ray_pod_specs(run):
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "shared-claim"
        (container,) = [c for c in pod["containers"] if c["name"].startswith("ray-")]
        assert {"name": "shared", "mountPath": "/shared", "readOnly": False} in container["volumeMounts"]
        assert {"name": "STORAGE_PATH", "value": "/shared/ray-results"} in container["env"]


def test_retain_data_keeps_the_claim() -> None:
    (claim,) = run_ok("kind", {"retainData": True}).of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert claim.retain_on_delete is True
    # Re-adopted Bound by the next `pulumi up`: not awaited (see SHARED_CLAIM_ANNOTATIONS).
    assert claim.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_without_a_storage_class_there_is_no_claim_and_no_storage_path() -> None:
    run = run_ok("kind", {"storage": None})
    assert run.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    assert run.exports["storagePath"] is None
    for pod in _ray_pod_specs(run):
        (container,) = [c for c in pod["containers"] if c["name"].startswith("ray-")]
        assert "STORAGE_PATH" not in {e["name"] for e in container["env"]}


def test_read_write_once_warns_and_read_write_many_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    original = pulumi.log.warn

    def record(message: str, *args: Any, **kwargs: Any) -> None:
        warnings.append(message)
        original(message, *args, **kwargs)

    monkeypatch.setattr(pulumi.log, "warn", record)
    run_ok("kind")
    assert any("ReadWriteOnce" in w and "one node" in w for w in warnings), warnings
    warnings.clear()
    run_ok("kind", {"storage": {"storageClass": "nfs-client", "accessMode": "ReadWriteMany"}})
    assert not any("ReadWriteOnce" in w for w in warnings), warnings


def test_no_instance_type_no_instance_type_selector(kubernetes_stack_run: ProgramRun) -> None:
    for pod in _ray_pod_specs(kubernetes_stack_run):
        assert "node.kubernetes.io/instance-type" not in (pod.get("nodeSelector") or {})


def _doc(resource: Registered) -> dict[str, Any]:
    return {key: resource.inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}


def test_kind_ray_documents_pass_the_crd_schemas_and_kuberays_admission(
    kubernetes_stack_run: ProgramRun,
) -> None:
    documents = [r for kind in RAY_KINDS for r in kubernetes_stack_run.custom_resources(kind)]
    assert {r.inputs["kind"] for r in documents} == {"RayCluster", "RayJob"}
    for resource in documents:
        # Against the CRDs the program applies (components/crds), as every schema test does.
        assert validation_errors(_doc(resource)) == []
        # KubeRay v1.7.0's own validation.go rules (tests/kuberay_validation.py).
        assert validate(_doc(resource)) == []

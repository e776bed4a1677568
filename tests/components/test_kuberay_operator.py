"""KubeRayOperator under mocks: vendored CRDs managed by Pulumi and retained, the Helm release after them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.builders.kuberay import build_kuberay_values
from components.config import KubeRayConfig, parse_stack_config
from components.kuberay_operator import (
    CRD_KINDS,
    CRD_ROOT,
    CRD_TYPE,
    PREVIOUS_CRD_GROUP_TYPE,
    KubeRayOperator,
    KubeRayOperatorArgs,
    crd_dir,
    crd_resource_name,
    load_crds,
)
from components.versions import KUBERAY_CHART, KUBERAY_CHART_REPO, KUBERAY_VERSION
from tests import pulumi_harness
from tests.pulumi_harness import ProgramRun, run_ok, run_program, run_shared

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"


def test_crd_folder_matches_the_pinned_version() -> None:
    assert crd_dir().name == f"kuberay-{KUBERAY_VERSION}"
    assert sorted(p.name for p in crd_dir().iterdir()) == sorted(f"ray.io_{k}.json" for k in CRD_KINDS)
    # One vendored version only: a bump replaces the folder, it does not leave the old one behind.
    assert [p.name for p in CRD_ROOT.iterdir() if p.is_dir()] == [crd_dir().name]
    kinds = sorted(doc["spec"]["names"]["kind"] for doc in load_crds())
    assert kinds == ["RayCluster", "RayJob", "RayService"]
    for doc in load_crds():
        assert doc["kind"] == "CustomResourceDefinition"
        assert doc["spec"]["group"] == "ray.io"
        assert "v1" in [v["name"] for v in doc["spec"]["versions"] if v.get("served")]


@pytest.mark.schemas
def test_vendored_crds_are_the_upstream_release_files(schemas: Path) -> None:
    # The digests were taken from the release's ray.io_<kind>.yaml files (file bytes and parsed
    # document, see tests/schemas/README.md); an edit to a vendored CRD changes its document digest.
    recorded = json.loads((schemas / f"kuberay-v{KUBERAY_VERSION}" / "crds.sha256.json").read_text())
    assert sorted(recorded) == sorted(f"ray.io_{kind}.yaml" for kind in CRD_KINDS)
    for kind, document in zip(CRD_KINDS, load_crds(), strict=True):
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        assert hashlib.sha256(canonical).hexdigest() == recorded[f"ray.io_{kind}.yaml"]["document_sha256"], (
            kind
        )


def test_vendoring_writes_what_load_crds_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import components.kuberay_operator as operator

    source = tmp_path / "yaml"
    source.mkdir()
    for kind, document in zip(CRD_KINDS, load_crds(), strict=True):
        # libyaml's safe dumper (the PyPI wheels have it): the 1 MB of CRDs in a fraction of a second.
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        (source / f"ray.io_{kind}.yaml").write_text(yaml.dump(document, Dumper=dumper))
    monkeypatch.setattr(operator, "CRD_ROOT", tmp_path / "crds")
    operator.vendor_crds(source, version="0.0.1")
    assert operator.load_crds("0.0.1") == load_crds()


def test_missing_crd_folder_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("convert the CRDs of KubeRay 9.9.9")):
        load_crds("9.9.9")


def test_each_crd_is_its_own_retained_resource(stack_run: ProgramRun) -> None:
    # Fails on the ConfigGroup design: its CRDs were provider-side children whose retention was only
    # hoped for (pulumi-kubernetes#3065); each CRD must carry retainOnDelete itself.
    crds = stack_run.of_type(CRD_TYPE)
    assert sorted(crd.inputs["metadata"]["name"] for crd in crds) == sorted(f"{k}.ray.io" for k in CRD_KINDS)
    assert stack_run.of_type(PREVIOUS_CRD_GROUP_TYPE) == []
    for crd in crds:
        assert crd.retain_on_delete, f"{crd.name}: deleting a CRD deletes every Ray resource of its kind"
        assert any(a.type == "ray-on-eks:k8s:KubeRayOperator" for a in stack_run.ancestors(crd))


def test_crds_alias_their_urns_under_the_old_config_group(stack_run: ProgramRun) -> None:
    """A stack deployed with the ConfigGroup adopts its CRDs in place on upgrade (no delete + create).

    yaml/v2 named the group's children ``<group>-<metadata.name>`` under the group
    (pulumi-kubernetes provider/pkg/provider/yaml/v2/yaml.go); the group was ``kuberay-crds``, a
    child of the operator component.
    """
    for kind in CRD_KINDS:
        crd = stack_run.one(CRD_TYPE, crd_resource_name("kuberay", kind))
        operator = stack_run.by_urn(crd.parent)
        old_group_urn = operator.urn[: operator.urn.rfind("::")] + f"${PREVIOUS_CRD_GROUP_TYPE}::kuberay-crds"
        specs = [a["spec"] for a in crd.aliases if isinstance(a, dict) and "spec" in a]
        assert {
            "name": f"kuberay-crds-{kind}.ray.io",
            "type": CRD_TYPE,
            "parentUrn": old_group_urn,
        } in specs, specs


def test_helm_release_is_pinned_skips_crds_and_depends_on_them(stack_run: ProgramRun) -> None:
    release = stack_run.one(RELEASE_TYPE, "kuberay-release")
    assert release.inputs["chart"] == KUBERAY_CHART
    assert release.inputs["version"] == KUBERAY_VERSION
    assert release.inputs["repositoryOpts"] == {"repo": KUBERAY_CHART_REPO}
    assert release.inputs["skipCrds"] is True
    for crd in stack_run.of_type(CRD_TYPE):
        assert crd.urn in release.dependencies


def test_release_values_come_from_the_builder(stack_run: ProgramRun) -> None:
    config = parse_stack_config(_raw(stack_run))
    release = stack_run.one(RELEASE_TYPE, "kuberay-release")
    assert release.inputs["namespace"] == config.kuberay.namespace
    expected = build_kuberay_values(
        cpu=config.kuberay.cpu,
        memory=config.kuberay.memory,
        feature_gates=config.kuberay.feature_gates,
        batch_scheduler=config.kuberay.batch_scheduler,
        watch_namespaces=[*config.kuberay.watch_namespaces, config.namespace],
        # The ServiceMonitor is a separate object (test_service_monitor_waits_for_monitoring_not_the_release).
        service_monitor=False,
    )
    assert release.inputs["values"] == expected
    assert config.namespace in release.inputs["values"]["watchNamespace"]


def test_operator_namespace_enforces_restricted(stack_run: ProgramRun) -> None:
    namespace = stack_run.one("kubernetes:core/v1:Namespace", "kuberay-namespace")
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_service_monitor_off_without_monitoring() -> None:
    run = run_ok("dev", {"monitoring": {"enabled": False}})
    values = run.one(RELEASE_TYPE, "kuberay-release").inputs["values"]
    assert values["metrics"]["serviceMonitor"]["enabled"] is False
    assert not run.of_type(SERVICE_MONITOR_TYPE)


def test_feature_gate_overrides_reach_the_release() -> None:
    run = run_ok("dev", {"kuberay": {"featureGates": {"RayCronJob": True}, "batchScheduler": "volcano"}})
    values = run.one(RELEASE_TYPE, "kuberay-release").inputs["values"]
    assert {"name": "RayCronJob", "enabled": True} in values["featureGates"]
    assert values["batchScheduler"]["name"] == "volcano"


def test_unknown_feature_gate_fails_before_anything_is_created() -> None:
    run = run_program("dev", {"kuberay": {"featureGates": {"RayTeleport": True}}})
    assert run.error is not None
    message = str(run.error)
    assert "ray-on-eks:kuberay.featureGates" in message
    assert "RayTeleport" in message and "RayCronJob" in message  # names the bad gate and the valid ones
    assert run.resources == []


def _raw(run: ProgramRun) -> dict[str, object]:
    """The engine config of a run, decoded the way load_stack_config decodes it."""
    raw: dict[str, object] = {}
    for key, value in run.config.items():
        if key == "aws:region":
            raw["region"] = value
        elif key.startswith("ray-on-eks:"):
            text = value.strip()
            raw[key.split(":", 1)[1]] = json.loads(text) if text[:1] in "{[" else value
    return raw


def test_crds_reach_the_engine_unchanged() -> None:
    # Keys such as openAPIV3Schema and x-kubernetes-* must not be renamed on the way to the provider.
    run = run_shared("dev", crd_schemas=True)  # the CRDs in full (every stack applies the same files)
    assert _ray_crds(run) == load_crds()


SERVICE_MONITOR_TYPE = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"


def _operator_after_monitoring() -> None:
    monitoring = pulumi.ComponentResource("test:index:Monitoring", "monitoring")
    marker = k8s.core.v1.Namespace(
        "monitoring-namespace",
        metadata={"name": "monitoring"},
        opts=pulumi.ResourceOptions(parent=monitoring),
    )
    KubeRayOperator(
        "kuberay",
        KubeRayOperatorArgs(
            config=KubeRayConfig(),
            watch_namespaces=["ray"],
            service_monitor=True,
            service_monitor_depends_on=[marker],
        ),
    )


def test_service_monitor_waits_for_monitoring_not_the_release(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 13: with the chart's ServiceMonitor the operator release (and every Ray resource behind
    # it) waited for the whole monitoring release. Only the ServiceMonitor needs its CRDs.
    monkeypatch.setattr(pulumi_harness, "_run_main", _operator_after_monitoring)
    run = run_ok("dev")
    marker = run.one("kubernetes:core/v1:Namespace", "monitoring-namespace")
    release = run.one(RELEASE_TYPE, "kuberay-release")
    assert marker.urn not in release.dependencies
    assert release.inputs["values"]["metrics"]["serviceMonitor"]["enabled"] is False
    monitor = run.one(SERVICE_MONITOR_TYPE, "kuberay-service-monitor")
    assert marker.urn in monitor.dependencies
    # It selects the chart's Service (labelled with the chart name, port "http") in its namespace.
    assert monitor.inputs["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}
    }
    assert monitor.inputs["spec"]["endpoints"][0]["port"] == "http"
    assert (
        monitor.inputs["metadata"]["namespace"]
        == monitor.inputs["spec"]["namespaceSelector"]["matchNames"][0]
    )


def test_operator_release_does_not_wait_for_monitoring(stack_run: ProgramRun) -> None:
    release = stack_run.one(RELEASE_TYPE, "kuberay-release")
    monitoring = [
        r.urn for r in stack_run.resources if r.type == "kubernetes:helm.sh/v3:Release" and r is not release
    ]
    assert not set(monitoring) & set(release.dependencies)


def _ray_crds(run: ProgramRun) -> list[dict[str, Any]]:
    """The CRD documents as the provider receives them, in CRD_KINDS order."""
    by_name = {crd.inputs["metadata"]["name"]: crd for crd in run.of_type(CRD_TYPE)}
    return [
        {key: by_name[f"{kind}.ray.io"].inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}
        for kind in CRD_KINDS
    ]

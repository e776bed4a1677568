"""The pack itself: ``policy/__main__.py`` registers every policy, the wrappers report through the
CrossGuard API, and the pack's pins and runtime agree with the project's."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any, ClassVar

import pulumi_policy
import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy import checks
from policy.policies import ALLOW_EXPOSED_DASHBOARDS, PACK_NAME, POLICIES
from tests.pulumi_harness import REPO

POLICY_DIR = REPO / "policy"


class _RecordedPack:
    """Stands in for PolicyPack, whose constructor starts the analyzer server and never returns."""

    created: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        _RecordedPack.created.append(kwargs)


def test_main_registers_every_policy_as_mandatory(monkeypatch: pytest.MonkeyPatch) -> None:
    _RecordedPack.created.clear()
    monkeypatch.setattr(pulumi_policy, "PolicyPack", _RecordedPack)
    runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="__main__")
    assert len(_RecordedPack.created) == 1
    pack = _RecordedPack.created[0]
    assert pack["name"] == PACK_NAME == "ray-on-eks-guardrails"
    assert pack["enforcement_level"] is EnforcementLevel.MANDATORY
    assert pack["policies"] == POLICIES
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names)), names
    expected = set(checks.RESOURCE_CHECKS) | {"s3-buckets-private-and-encrypted", "data-retained"}
    assert set(names) == expected


def test_only_token_auth_is_advisory() -> None:
    levels = {p.name: p.enforcement_level for p in POLICIES}
    assert levels.pop("ray-token-auth") is EnforcementLevel.ADVISORY
    assert set(levels.values()) == {None}  # the pack default: MANDATORY


def _opts(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _policy(name: str) -> Any:
    return next(p for p in POLICIES if p.name == name)


def _validate(
    name: str, typ: str, props: dict[str, Any], config: dict[str, Any] | None = None, protect: bool = False
) -> list[str]:
    policy = _policy(name)
    assert isinstance(policy, ResourceValidationPolicy)
    found: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    args = ResourceValidationArgs(
        typ, unknown_checking_proxy(props), "urn:x", "x", _opts(protect), None, config or {}
    )
    policy.validate(args, report)
    return found


BAD: dict[str, tuple[str, dict[str, Any]]] = {
    "no-aws-access-keys": (checks.SECRET, {"stringData": {"AWS_SECRET_ACCESS_KEY": "x"}}),
    "dashboards-not-exposed": (
        checks.SERVICE,
        {"spec": {"type": "LoadBalancer", "ports": [{"name": "dashboard", "port": 8265}]}},
    ),
    "security-group-rules-restricted": (
        checks.SG_INGRESS_RULE,
        {"ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0"},
    ),
    "data-retained": ("aws:fsx/lustreFileSystem:LustreFileSystem", {"tags": {}}),
    "ray-containers-have-requests-and-limits": (
        checks.RAY_CLUSTER,
        {"spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head"}]}}}}},
    ),
    "images-pinned": (
        "kubernetes:apps/v1:Deployment",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "ray"}]}}}},
    ),
    "ray-version-matches-image": (
        checks.RAY_CLUSTER,
        {
            "spec": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {"template": {"spec": {"containers": [{"image": "rayproject/ray:2.9.0"}]}}},
            }
        },
    ),
    "ray-pods-non-root": (
        checks.RAY_CLUSTER,
        {"spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head"}]}}}}},
    ),
    "ray-token-auth": (checks.RAY_CLUSTER, {"spec": {"authOptions": {"mode": "disabled"}}}),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_resource_policy_reports_a_bad_resource(name: str) -> None:
    typ, props = BAD[name]
    assert _validate(name, typ, props), f"{name} reported nothing for {props}"


def test_every_resource_policy_has_a_bad_case() -> None:
    resource_policies = {p.name for p in POLICIES if isinstance(p, ResourceValidationPolicy)}
    assert resource_policies == set(BAD)


def test_dashboards_policy_config_allows_exposure() -> None:
    typ, props = BAD["dashboards-not-exposed"]
    assert _validate("dashboards-not-exposed", typ, props, {ALLOW_EXPOSED_DASHBOARDS: True}) == []
    schema = _policy("dashboards-not-exposed").config_schema
    assert schema.properties[ALLOW_EXPOSED_DASHBOARDS]["default"] is False


def test_retention_policy_accepts_protect_and_the_declared_tag() -> None:
    typ = "aws:fsx/lustreFileSystem:LustreFileSystem"
    assert _validate("data-retained", typ, {"tags": {}}, protect=True) == []
    assert _validate("data-retained", typ, {"tags": {checks.RETAIN_DATA_LABEL: "true"}}) == []
    assert _validate("data-retained", typ, {"tags": {checks.RETAIN_DATA_LABEL: "false"}}) == []


def test_values_unknown_during_preview_do_not_hide_known_ones() -> None:
    props = {
        "metadata": {"name": UNKNOWN_STRING_VALUE},
        "stringData": {"AWS_ACCESS_KEY_ID": "x", "other": UNKNOWN_STRING_VALUE},
    }
    assert len(_validate("no-aws-access-keys", checks.SECRET, props)) == 1


def _stack_validate(resources: list[PolicyResource]) -> list[str]:
    policy = _policy("s3-buckets-private-and-encrypted")
    assert isinstance(policy, StackValidationPolicy)
    found: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    policy.validate(StackValidationArgs(resources), report)
    return found


def test_bucket_policy_matches_controls_through_dependencies() -> None:
    def res(
        typ: str, urn: str, props: dict[str, Any], deps: list[PolicyResource] | None = None
    ) -> PolicyResource:
        return PolicyResource(
            typ, unknown_checking_proxy(props), urn, urn, _opts(), None, None, deps or [], {}
        )

    bucket = res("aws:s3/bucket:Bucket", "urn:bucket", {"bucket": UNKNOWN_STRING_VALUE})
    assert len(_stack_validate([bucket])) == 2  # no public access block, no encryption
    pab = res(
        checks.PUBLIC_ACCESS_BLOCK,
        "urn:pab",
        {
            "bucket": UNKNOWN_STRING_VALUE,
            **dict.fromkeys(
                ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True
            ),
        },
        [bucket],
    )
    sse = res(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "urn:sse",
        {
            "bucket": UNKNOWN_STRING_VALUE,
            "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}],
        },
        [bucket],
    )
    assert _stack_validate([bucket, pab, sse]) == []


# --------------------------------------------------------------------------------------------------
# Pins and runtime
# --------------------------------------------------------------------------------------------------


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s#]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(3)
    return pins


def test_policy_requirements_match_the_project_pins() -> None:
    policy_pins = _pins(POLICY_DIR / "requirements.txt")
    assert set(policy_pins) == {"pulumi-policy", "pulumi"}
    project = _pins(REPO / "requirements.txt") | _pins(REPO / "requirements-dev.txt")
    for package, version in policy_pins.items():
        assert project.get(package) == version, (
            f"policy/requirements.txt pins {package}=={version}, project pins {project.get(package)}"
        )
    assert pulumi_policy.__name__ and policy_pins["pulumi-policy"] == "1.21.0"


def test_pulumi_policy_yaml_runs_python_in_the_project_venv() -> None:
    doc = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert doc["runtime"]["name"] == "python"
    assert doc["description"].strip()
    venv = doc["runtime"]["options"]["virtualenv"]
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert (POLICY_DIR / venv).resolve() == (REPO / project["runtime"]["options"]["virtualenv"]).resolve()

"""Every check, and every policy of the pack as the engine would call it, passes on every stack file.

The program runs under mocks once per ``Pulumi.<stack>.yaml`` (``stack_runs``); each registered
resource is checked with its type and inputs. Two views:

* the plain checks with everything the harness knows (``protect`` *and* ``retainOnDelete``);
* the CrossGuard policies through their real wrappers, with only what CrossGuard sees (``protect``,
  no ``retainOnDelete``) — so the program's labels/tags that declare intent must be in place.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from components import contract
from components.kuberay_operator import CRD_TYPE
from policy import checks
from policy.policies import POLICIES
from tests.pulumi_harness import ProgramRun, Registered, run_ok, run_shared


def _stack_resources(run: ProgramRun) -> list[checks.StackResource]:
    return [
        checks.StackResource(
            type=r.type,
            urn=r.urn,
            name=r.name,
            props=r.inputs,
            dependencies=tuple(r.dependencies),
            protect=r.protect,
            retain_on_delete=r.retain_on_delete,
        )
        for r in run.resources
    ]


def _custom(run: ProgramRun) -> list[Registered]:
    resources = [r for r in run.resources if r.custom]
    assert resources, f"{run.stack}: the program registered no resources"
    return resources


@pytest.mark.parametrize("name", list(checks.RESOURCE_CHECKS))
def test_every_resource_passes_the_check(stack_run: ProgramRun, name: str) -> None:
    check = checks.RESOURCE_CHECKS[name]
    problems = [f"{r.name}: {p}" for r in _custom(stack_run) for p in check(r.type, r.inputs)]
    assert problems == [], f"Pulumi.{stack_run.stack}.yaml:\n" + "\n".join(problems)


def test_every_data_bearing_resource_is_retained(stack_run: ProgramRun) -> None:
    problems = [
        f"{r.name}: {p}"
        for r in _custom(stack_run)
        for p in checks.check_data_retained(
            r.type, r.inputs, protect=r.protect, retain_on_delete=r.retain_on_delete
        )
    ]
    assert problems == [], f"Pulumi.{stack_run.stack}.yaml:\n" + "\n".join(problems)


def test_every_bucket_is_private_and_encrypted(stack_run: ProgramRun) -> None:
    assert checks.check_buckets_private_and_encrypted(_stack_resources(stack_run)) == []


def _options(resource: Registered) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=resource.protect,
        ignore_changes=resource.ignore_changes,
        delete_before_replace=resource.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=resource.additional_secret_outputs,
    )


def _pack_violations(run: ProgramRun) -> list[str]:
    """The pack's own validate callbacks, fed the way the engine feeds them (proxied props, no config)."""
    violations: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        violations.append(message)

    resources = _custom(run)
    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(
                    r.type, unknown_checking_proxy(r.inputs), r.urn, r.name, _options(r), None, {}
                )
                policy.validate(args, report)
        else:
            assert isinstance(policy, StackValidationPolicy)
            by_urn: dict[str, PolicyResource] = {}
            for r in resources:
                by_urn[r.urn] = PolicyResource(
                    r.type, unknown_checking_proxy(r.inputs), r.urn, r.name, _options(r), None, None, [], {}
                )
            for r in resources:
                by_urn[r.urn].dependencies = [by_urn[d] for d in r.dependencies if d in by_urn]
            policy.validate(StackValidationArgs(list(by_urn.values())), report)
    return violations


def test_the_policy_pack_reports_nothing(stack_run: ProgramRun) -> None:
    violations = _pack_violations(stack_run)
    assert violations == [], f"Pulumi.{stack_run.stack}.yaml:\n" + "\n".join(violations)


def test_every_check_passes_the_crds_in_full() -> None:
    # stack_runs register the KubeRay CRDs with stand-in schemas (the pack's CrossGuard wrappers are
    # tested on those); here every check reads the real 1 MB of schema, the same files in every stack,
    # e.g. for a pattern string that looks like a key or an `image` property that looks unpinned.
    run = run_shared("dev", crd_schemas=True)
    crds = run.of_type(CRD_TYPE)
    assert run.crd_schemas and len(crds) == 3
    problems = [
        f"{crd.name} ({name}): {problem}"
        for name, check in checks.RESOURCE_CHECKS.items()
        for crd in crds
        for problem in check(crd.type, crd.inputs)
    ]
    problems += [
        f"{crd.name}: {problem}"
        for crd in crds
        for problem in checks.check_data_retained(
            crd.type, crd.inputs, protect=crd.protect, retain_on_delete=crd.retain_on_delete
        )
    ]
    assert problems == []


def test_exposed_dashboards_pass_the_pack_by_the_programs_own_annotation() -> None:
    """``exposeDashboards: true`` is a supported setting, so its real output passes the pack with the
    pack's default config (allowExposedDashboards false). Fails on the old main: the program never set
    the annotation the pack expects, so the RayCluster, the RayService and Grafana were 3 mandatory
    violations."""
    run = run_ok(
        "dev",
        {
            "exposeDashboards": True,
            "rayJobs": [{"name": "train", "workload": "dt-pytorch", "cluster": "ephemeral"}],
        },
    )
    assert _pack_violations(run) == []
    # Not vacuous: the dashboards really are exposed, and it is the annotation that makes them pass.
    exposed = [
        r
        for r in _custom(run)
        if checks.check_dashboards_not_exposed(r.type, _without_expose_annotation(r.inputs))
    ]
    assert {r.type for r in exposed} == {
        checks.RAY_CLUSTER,
        checks.RAY_JOB,
        checks.RAY_SERVICE,
        checks.HELM_RELEASE,
    }, [r.name for r in exposed]


def _without_expose_annotation(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_expose_annotation(value)
            for key, value in node.items()
            if key != checks.EXPOSE_DASHBOARDS_ANNOTATION
        }
    if isinstance(node, list):
        return [_without_expose_annotation(value) for value in node]
    return node


def test_the_program_and_the_pack_agree_on_the_annotation() -> None:
    assert contract.EXPOSE_DASHBOARDS_ANNOTATION == checks.EXPOSE_DASHBOARDS_ANNOTATION


def _data_bearing(run: ProgramRun) -> list[Registered]:
    return [r for r in run.resources if r.custom and checks.is_data_bearing(r.type, r.inputs)]


def test_stacks_with_shared_storage_register_data_bearing_resources(stack_run: ProgramRun) -> None:
    """Non-vacuity of the retention checks: FSx/S3 enabled -> a file system, bucket, PV or StorageClass."""
    storage = [
        key
        for key in ("fsx", "s3")
        if json.loads(stack_run.config.get(f"ray-on-eks:{key}", "{}")).get("enabled") is True
    ]
    if storage:
        assert _data_bearing(stack_run), (
            f"Pulumi.{stack_run.stack}.yaml enables {', '.join(storage)} but registers no data-bearing "
            "resource (needs the FSx/S3 storage components)"
        )


def test_retain_data_false_is_applied_and_declared_to_the_policy(delete_run: ProgramRun) -> None:
    """``retainData: false``: data resources are deletable AND labelled so the pack accepts it."""
    run = delete_run
    resources = _data_bearing(run)
    assert resources, "no data-bearing resource in dev (needs the FSx/S3 storage components)"
    for r in resources:
        assert not r.protect and not r.retain_on_delete, f"{r.name} is still retained"
        if r.type == checks.STORAGE_CLASS:
            assert r.inputs.get("reclaimPolicy") == "Delete", r.name
        labels = (
            r.inputs.get("tags")
            if r.type.startswith("aws:")
            else (r.inputs.get("metadata") or {}).get("labels")
        )
        assert (labels or {}).get(checks.RETAIN_DATA_LABEL) == "false", (
            f"{r.type} {r.name}: retainData is false but it is not labelled {checks.RETAIN_DATA_LABEL}: 'false'"
        )

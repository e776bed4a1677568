"""The CrossGuard policies of the ray-on-eks guardrails pack, built from the plain checks.

Importable without an engine: ``POLICIES`` is a list of policy objects; only ``policy/__main__.py``
constructs the ``PolicyPack`` (which starts the analyzer server and never returns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from policy import checks

PACK_NAME = "ray-on-eks-guardrails"
ALLOW_EXPOSED_DASHBOARDS = "allowExposedDashboards"


def _item(container: Any, key: Any) -> Any:
    try:
        return plain(container[key])
    except UnknownValueError:
        return None  # unknown during preview: the checks treat it like an absent value


def plain(node: Any) -> Any:
    """CrossGuard's property proxies -> plain dicts and lists; values unknown during preview -> None.

    Converting value by value (instead of letting the first unknown abort the whole policy) keeps
    the known parts of a resource checked during preview.
    """
    if isinstance(node, Mapping):
        return {str(key): _item(node, key) for key in node}
    if isinstance(node, Sequence) and not isinstance(node, str | bytes):
        return [_item(node, index) for index in range(len(node))]
    return node


def _resource_policy(
    name: str,
    description: str,
    check: checks.ResourceCheck,
    *,
    enforcement_level: EnforcementLevel | None = None,
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, plain(args.props)):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=enforcement_level
    )


def _validate_dashboards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    allow = bool(args.get_config().get(ALLOW_EXPOSED_DASHBOARDS, False))
    for message in checks.check_dashboards_not_exposed(
        args.resource_type, plain(args.props), allow_exposed=allow
    ):
        report_violation(message, None)


def _validate_retention(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    # CrossGuard reports `protect` but not `retainOnDelete`; the check then trusts the
    # ray-on-eks/retain-data: "true" tag the program sets next to retain_on_delete=True.
    for message in checks.check_data_retained(
        args.resource_type, plain(args.props), protect=bool(args.opts.protect), retain_on_delete=None
    ):
        report_violation(message, None)


def _validate_buckets(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = [
        checks.StackResource(
            type=r.resource_type,
            urn=r.urn,
            name=r.name,
            props=plain(r.props),
            dependencies=tuple(dep.urn for dep in r.dependencies),
            protect=bool(r.opts.protect),
        )
        for r in args.resources
    ]
    for message in checks.check_buckets_private_and_encrypted(resources):
        report_violation(message, None)


POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    _resource_policy(
        "no-aws-access-keys",
        "No AWS access keys in Kubernetes Secrets, ConfigMaps, container env, Helm values or Ray resources.",
        checks.check_no_aws_access_keys,
    ),
    ResourceValidationPolicy(
        name="dashboards-not-exposed",
        description=(
            "The Ray dashboard, Ray client and Grafana are never LoadBalancer/NodePort/Ingress unless "
            f"allowed (policy config {ALLOW_EXPOSED_DASHBOARDS}, or the resource annotation "
            f"{checks.EXPOSE_DASHBOARDS_ANNOTATION}: 'true' set by exposeDashboards: true)."
        ),
        validate=_validate_dashboards,
        config_schema=PolicyConfigSchema(
            properties={
                ALLOW_EXPOSED_DASHBOARDS: {
                    "type": "boolean",
                    "default": False,
                    "description": "Allow every dashboard to be exposed outside the cluster.",
                }
            }
        ),
    ),
    _resource_policy(
        "security-group-rules-restricted",
        "No security-group rule allows all protocols; no ingress from 0.0.0.0/0 or ::/0.",
        checks.check_security_group_rules,
    ),
    StackValidationPolicy(
        name="s3-buckets-private-and-encrypted",
        description="Every created S3 bucket has a public access block (all four true) and SSE configured.",
        validate=_validate_buckets,
    ),
    ResourceValidationPolicy(
        name="data-retained",
        description=(
            "FSx file systems, S3 buckets and their volumes/StorageClasses survive pulumi destroy unless "
            f"labelled {checks.RETAIN_DATA_LABEL}: 'false' (retainData: false)."
        ),
        validate=_validate_retention,
    ),
    _resource_policy(
        "ray-containers-have-requests-and-limits",
        "Every Ray container (head, workers, RayJob submitter) has CPU and memory requests and limits.",
        checks.check_ray_container_resources,
    ),
    _resource_policy(
        "images-pinned",
        "No :latest or untagged container images in pod specs, Ray resources or Helm values.",
        checks.check_images_pinned,
    ),
    _resource_policy(
        "ray-version-matches-image",
        "A RayCluster's rayVersion equals the Ray version in its images' tags.",
        checks.check_ray_version_matches_image,
    ),
    _resource_policy(
        "ray-pods-non-root",
        "Ray containers run as non-root, unprivileged, with allowPrivilegeEscalation: false.",
        checks.check_ray_pod_security,
    ),
    _resource_policy(
        "ray-token-auth",
        "Ray clusters use token authentication (authOptions.mode: token).",
        checks.check_ray_token_auth,
        # Advisory: tokenAuth: false is a supported (if discouraged) stack setting.
        enforcement_level=EnforcementLevel.ADVISORY,
    ),
]

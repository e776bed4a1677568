"""The guardrail checks, as plain functions: resource type and inputs in, violation messages out.

Each ``check_*`` function takes a Pulumi type token (``kubernetes:ray.io/v1:RayCluster``) and the
resource's properties as the engine sees them (camelCase keys, plain dicts and lists) and returns a
list of messages; an empty list means compliant. Every message says what is wrong, where, and how to
fix it. ``policy/policies.py`` wraps these into CrossGuard policies; the tests call them directly,
both on deliberately bad resources and on every resource each stack file produces under mocks.

No Pulumi imports here: the functions are pure so that the policy pack, the unit tests and the
secure-defaults tests share exactly the same rules.

Contract with the program (labels/tags/annotations the checks read):

* ``ray-on-eks/retain-data`` (AWS tag or Kubernetes label) on data-bearing resources: ``"false"``
  when the stack opts out of retention (``retainData: false``); ``"true"`` declares the resource is
  registered with ``retainOnDelete`` (which CrossGuard cannot see; the tests verify the option).
* ``ray-on-eks/expose-dashboards: "true"`` (Kubernetes annotation, or in Helm values next to the
  service ``type``) on a resource that deliberately exposes a dashboard (``exposeDashboards: true``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RETAIN_DATA_LABEL = "ray-on-eks/retain-data"
EXPOSE_DASHBOARDS_ANNOTATION = "ray-on-eks/expose-dashboards"

RAY_CLUSTER = "kubernetes:ray.io/v1:RayCluster"
RAY_JOB = "kubernetes:ray.io/v1:RayJob"
RAY_SERVICE = "kubernetes:ray.io/v1:RayService"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
PERSISTENT_VOLUME = "kubernetes:core/v1:PersistentVolume"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART = "kubernetes:helm.sh/v4:Chart"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
BUCKET_TYPES = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE_TYPES = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
FSX_FILE_SYSTEM_TYPES = frozenset(
    {
        "aws:fsx/lustreFileSystem:LustreFileSystem",
        "aws:fsx/openZfsFileSystem:OpenZfsFileSystem",
        "aws:fsx/ontapFileSystem:OntapFileSystem",
        "aws:fsx/windowsFileSystem:WindowsFileSystem",
    }
)
# CSI drivers whose volumes hold the stack's data (FSx for Lustre, Mountpoint for S3).
DATA_CSI_DRIVERS = frozenset({"fsx.csi.aws.com", "s3.csi.aws.com"})

AWS_KEY_NAMES = frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token"})
_ACCESS_KEY_ID = re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")
# `aws_secret_access_key = ...` in a credentials file, `AWS_ACCESS_KEY_ID=...` in an env file.
_KEY_ASSIGNMENT = re.compile(
    r"\b(aws_access_key_id|aws_secret_access_key|aws_session_token)\b\s*[=:]\s*\S", re.IGNORECASE
)
_OPEN_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
_ALL_PROTOCOLS = frozenset({"-1", "all"})
_EXPOSED_SERVICE_TYPES = frozenset({"LoadBalancer", "NodePort"})
# Ports that identify a dashboard-like endpoint: Ray dashboard, Ray client, Grafana.
DASHBOARD_PORTS = {8265: "Ray dashboard", 10001: "Ray client", 3000: "Grafana"}
_DASHBOARD_PORT_NAMES = ("dashboard", "client", "grafana", "http-web")
_VERSION_PREFIX = re.compile(r"^v?(\d+\.\d+\.\d+)")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (path, key, value) in a nested structure; list items have the index as key."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, key, value
            yield from walk(value, child)
    elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
        for index, value in enumerate(node):
            child = f"{path}[{index}]"
            yield child, index, value
            yield from walk(value, child)


def _get(node: Any, *path: str | int) -> Any:
    """``node[path[0]][path[1]]...`` or None when any step is missing."""
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, Sequence) or isinstance(node, str) or part >= len(node):
                return None
        elif not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _name(props: Mapping[str, Any]) -> str:
    name = _get(props, "metadata", "name")
    return f" {name!r}" if name else ""


def _flag(value: Any) -> bool | None:
    """A boolean written as a bool or a string ("true"/"false"); None when absent or other."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def is_kubernetes(resource_type: str) -> bool:
    return resource_type.startswith("kubernetes:") and not resource_type.startswith("pulumi:")


def ray_cluster_specs(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The RayCluster specs inside a RayCluster, RayJob (``rayClusterSpec``) or RayService."""
    found: list[tuple[str, Any]] = []
    if resource_type == RAY_CLUSTER:
        found.append(("spec", _get(props, "spec")))
    elif resource_type == RAY_JOB:
        found.append(("spec.rayClusterSpec", _get(props, "spec", "rayClusterSpec")))
    elif resource_type == RAY_SERVICE:
        found.append(("spec.rayClusterConfig", _get(props, "spec", "rayClusterConfig")))
    return [(path, spec) for path, spec in found if isinstance(spec, Mapping)]


def ray_pod_specs(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Every pod spec of a Ray resource: head, each worker group, and a RayJob's submitter pod."""
    pods: list[tuple[str, Any]] = []
    for base, spec in ray_cluster_specs(resource_type, props):
        pods.append((f"{base}.headGroupSpec.template.spec", _get(spec, "headGroupSpec", "template", "spec")))
        for index, group in enumerate(_get(spec, "workerGroupSpecs") or []):
            label = group.get("groupName", index) if isinstance(group, Mapping) else index
            pods.append((f"{base}.workerGroupSpecs[{label}].template.spec", _get(group, "template", "spec")))
    if resource_type == RAY_JOB:
        pods.append(("spec.submitterPodTemplate.spec", _get(props, "spec", "submitterPodTemplate", "spec")))
    return [(path, pod) for path, pod in pods if isinstance(pod, Mapping)]


def _containers(pod: Mapping[str, Any], *, init: bool = False) -> list[Mapping[str, Any]]:
    keys = ("containers", "initContainers") if init else ("containers",)
    return [c for key in keys for c in (pod.get(key) or []) if isinstance(c, Mapping)]


# --------------------------------------------------------------------------------------------------
# 1. No AWS access keys in Secrets, ConfigMaps, container env, Helm values or Ray resources
# --------------------------------------------------------------------------------------------------


def _decoded(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _key_in_text(text: str) -> str | None:
    if _ACCESS_KEY_ID.search(text):
        return "an AWS access key id (AKIA.../ASIA...)"
    match = _KEY_ASSIGNMENT.search(text)
    if match:
        return f"an assignment to {match.group(1)}"
    return None


def check_no_aws_access_keys(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No AWS credentials in any Kubernetes object: key names, env var names or key-shaped values."""
    if not is_kubernetes(resource_type):
        return []
    fix = (
        "Pods get AWS access from EKS Pod Identity (or IRSA) on the ray-workloads service account; "
        "remove the credentials and never store AWS keys in Kubernetes"
    )
    problems: list[str] = []
    # Secret .data and ConfigMap .binaryData values are base64: look into the decoded text too.
    encoded_root = {SECRET: "data", CONFIG_MAP: "binaryData"}.get(resource_type)
    for path, key, value in walk(props):
        if isinstance(key, str) and key.lower() in AWS_KEY_NAMES:
            problems.append(
                f"{resource_type}{_name(props)}: key {key!r} at {path} holds AWS credentials. {fix}"
            )
        if key == "name" and isinstance(value, str) and value.lower() in AWS_KEY_NAMES:
            problems.append(
                f"{resource_type}{_name(props)}: environment variable {value} at {path} passes AWS "
                f"credentials to a container. {fix}"
            )
        if isinstance(value, str):
            found = _key_in_text(value)
            if found is None and encoded_root and path.startswith(f"{encoded_root}."):
                decoded = _decoded(value)
                found = _key_in_text(decoded) if decoded else None
            if found:
                problems.append(f"{resource_type}{_name(props)}: {path} contains {found}. {fix}")
    return problems


# --------------------------------------------------------------------------------------------------
# 2. Dashboards (Ray dashboard, Ray client, Grafana) are never LoadBalancer/NodePort by default
# --------------------------------------------------------------------------------------------------


def _annotated_exposed(annotations: Any) -> bool:
    return isinstance(annotations, Mapping) and _flag(annotations.get(EXPOSE_DASHBOARDS_ANNOTATION)) is True


def _dashboard_ports(ports: Any) -> list[str]:
    found = []
    for port in ports or []:
        if not isinstance(port, Mapping):
            continue
        numbers = {port.get("port"), port.get("targetPort")}
        name = str(port.get("name") or "").lower()
        label = next(
            (DASHBOARD_PORTS[n] for n in numbers if isinstance(n, int) and n in DASHBOARD_PORTS), None
        )
        if label is None and any(word in name for word in _DASHBOARD_PORT_NAMES):
            label = f"port {name!r}"
        if label:
            found.append(label)
    return found


def _is_dashboard_service(props: Mapping[str, Any]) -> list[str]:
    reasons = _dashboard_ports(_get(props, "spec", "ports"))
    selector = _get(props, "spec", "selector") or {}
    if isinstance(selector, Mapping):
        if selector.get("ray.io/node-type") == "head":
            reasons.append("the Ray head pod")
        if "grafana" in str(selector.get("app.kubernetes.io/name", "")):
            reasons.append("Grafana")
    return reasons


def check_dashboards_not_exposed(
    resource_type: str, props: Mapping[str, Any], *, allow_exposed: bool = False
) -> list[str]:
    """Ray dashboard/client and Grafana stay ClusterIP unless exposure is explicitly allowed.

    Allowed when the policy config ``allowExposedDashboards`` is true (``allow_exposed``) or when the
    resource carries the annotation ``ray-on-eks/expose-dashboards: "true"`` (the program sets it only
    when the stack config ``exposeDashboards`` is true).
    """
    if allow_exposed:
        return []
    fix = (
        "keep it ClusterIP and reach it with kubectl port-forward, or set the stack config "
        "exposeDashboards: true (the program then annotates the resource with "
        f'{EXPOSE_DASHBOARDS_ANNOTATION}: "true")'
    )
    problems: list[str] = []
    if _annotated_exposed(_get(props, "metadata", "annotations")):
        return []
    for base, spec in ray_cluster_specs(resource_type, props):
        head = _get(spec, "headGroupSpec") or {}
        service_type = head.get("serviceType")
        if service_type in _EXPOSED_SERVICE_TYPES:
            problems.append(
                f"{resource_type}{_name(props)}: {base}.headGroupSpec.serviceType is {service_type}, which "
                f"exposes the Ray dashboard and Ray client outside the cluster; {fix}"
            )
        head_service_type = _get(head, "headService", "spec", "type")
        if head_service_type in _EXPOSED_SERVICE_TYPES:
            problems.append(
                f"{resource_type}{_name(props)}: {base}.headGroupSpec.headService.spec.type is "
                f"{head_service_type}, which exposes the Ray dashboard and Ray client; {fix}"
            )
        if _flag(head.get("enableIngress")) is True:
            problems.append(
                f"{resource_type}{_name(props)}: {base}.headGroupSpec.enableIngress is true, which "
                f"exposes the Ray dashboard through an Ingress; {fix}"
            )
    if resource_type == SERVICE:
        service_type = _get(props, "spec", "type")
        reasons = _is_dashboard_service(props)
        if service_type in _EXPOSED_SERVICE_TYPES and reasons:
            problems.append(
                f"{resource_type}{_name(props)}: spec.type is {service_type} for {', '.join(reasons)}; {fix}"
            )
    if resource_type in (HELM_RELEASE, HELM_CHART):
        values = props.get("values") or {}
        for path, key, value in walk(values):
            if key != "type" or value not in _EXPOSED_SERVICE_TYPES or not path.endswith("service.type"):
                continue
            parent_path = path.removesuffix(".type")
            parent = _get(values, *parent_path.split("."))
            if isinstance(parent, Mapping) and _annotated_exposed(parent.get("annotations")):
                continue
            if any(word in parent_path.lower() for word in ("grafana", "dashboard", "ray")) or (
                "grafana" in str(props.get("chart", "")).lower()
            ):
                problems.append(
                    f"{resource_type} {props.get('name') or props.get('chart') or ''}: Helm value "
                    f"values.{path} is {value}, which exposes a dashboard; {fix}"
                )
        grafana_ingress = _get(values, "grafana", "ingress", "enabled")
        if _flag(grafana_ingress) is True and not _annotated_exposed(
            _get(values, "grafana", "ingress", "annotations")
        ):
            problems.append(
                f"{resource_type} {props.get('name') or props.get('chart') or ''}: Helm value "
                f"values.grafana.ingress.enabled is true, which exposes Grafana; {fix}"
            )
    return problems


# --------------------------------------------------------------------------------------------------
# 3. Security groups: no all-protocol rules, no 0.0.0.0/0 or ::/0 sources
# --------------------------------------------------------------------------------------------------


def _protocol_is_all(value: Any) -> bool:
    return value is not None and str(value).lower() in _ALL_PROTOCOLS


def _open_cidrs(*values: Any) -> list[str]:
    found = []
    for value in values:
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        found += [cidr for cidr in items if isinstance(cidr, str) and cidr in _OPEN_CIDRS]
    return found


def check_security_group_rules(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No rule allowing all protocols; no ingress from 0.0.0.0/0 or ::/0."""
    protocol_fix = "name the protocol and port range (e.g. tcp 988 and 1018-1023 for FSx for Lustre)"
    source_fix = "restrict the source to the VPC CIDR or a security group (referencedSecurityGroupId)"
    rules: list[tuple[str, str, Any, list[str]]] = []  # (where, direction, protocol, open cidrs)
    if resource_type == SG_RULE:
        direction = str(props.get("type", "ingress"))
        rules.append(
            (
                "",
                direction,
                props.get("protocol"),
                _open_cidrs(props.get("cidrBlocks"), props.get("ipv6CidrBlocks")),
            )
        )
    elif resource_type in (SG_INGRESS_RULE, SG_EGRESS_RULE):
        direction = "ingress" if resource_type == SG_INGRESS_RULE else "egress"
        rules.append(
            (
                "",
                direction,
                props.get("ipProtocol"),
                _open_cidrs(props.get("cidrIpv4"), props.get("cidrIpv6")),
            )
        )
    elif resource_type == SG:
        for direction in ("ingress", "egress"):
            for index, rule in enumerate(props.get(direction) or []):
                if isinstance(rule, Mapping):
                    cidrs = _open_cidrs(rule.get("cidrBlocks"), rule.get("ipv6CidrBlocks"))
                    rules.append((f" {direction}[{index}]", direction, rule.get("protocol"), cidrs))
    problems = []
    for where, direction, protocol, cidrs in rules:
        if _protocol_is_all(protocol):
            problems.append(
                f"{resource_type}{where}: {direction} rule allows all protocols ({protocol!r}); {protocol_fix}"
            )
        if direction == "ingress" and cidrs:
            problems.append(
                f"{resource_type}{where}: ingress rule is open to {', '.join(cidrs)}; {source_fix}"
            )
    return problems


# --------------------------------------------------------------------------------------------------
# 4. S3 buckets: public access blocked and encrypted; data-bearing resources retained
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackResource:
    """What a stack-level check needs to know about one resource.

    ``retain_on_delete`` is None where it cannot be known (CrossGuard does not report that option).
    """

    type: str
    urn: str
    name: str
    props: Mapping[str, Any]
    dependencies: tuple[str, ...] = ()
    protect: bool = False
    retain_on_delete: bool | None = None


def _targets_bucket(candidate: StackResource, bucket: StackResource) -> bool:
    names = {bucket.props.get("bucket"), bucket.props.get("id")} - {None, ""}
    return bucket.urn in candidate.dependencies or candidate.props.get("bucket") in names


_PAB_FIELDS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _encrypts(props: Mapping[str, Any]) -> bool:
    rules = props.get("rules") or props.get("rule") or []
    rules = rules if isinstance(rules, Sequence) and not isinstance(rules, str) else [rules]
    return any(
        isinstance(rule, Mapping) and _get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        for rule in rules
    )


def check_buckets_private_and_encrypted(resources: Sequence[StackResource]) -> list[str]:
    """Every created bucket has a public access block (all four settings true) and SSE configured."""
    problems: list[str] = []
    for bucket in (r for r in resources if r.type in BUCKET_TYPES):
        blocks = [r for r in resources if r.type == PUBLIC_ACCESS_BLOCK and _targets_bucket(r, bucket)]
        if not blocks:
            problems.append(
                f"S3 bucket {bucket.name}: no aws.s3.BucketPublicAccessBlock targets it; add one with "
                "blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets all true"
            )
        for block in blocks:
            off = [field for field in _PAB_FIELDS if block.props.get(field) is not True]
            if off:
                problems.append(
                    f"S3 bucket {bucket.name}: public access block {block.name} leaves {', '.join(off)} "
                    "unset or false; set all four to true"
                )
        inline = _get(bucket.props, "serverSideEncryptionConfiguration", "rule")
        inline_ok = isinstance(inline, Mapping) and _encrypts({"rules": [inline]})
        sse = [r for r in resources if r.type in SSE_TYPES and _targets_bucket(r, bucket)]
        if not inline_ok and not any(_encrypts(r.props) for r in sse):
            problems.append(
                f"S3 bucket {bucket.name}: no server-side encryption configured; add an "
                "aws.s3.BucketServerSideEncryptionConfiguration with a rule "
                "applyServerSideEncryptionByDefault.sseAlgorithm (aws:kms or AES256)"
            )
    return problems


def _retain_marker(resource_type: str, props: Mapping[str, Any]) -> bool | None:
    if resource_type.startswith("aws:"):
        tags = props.get("tags") or {}
        return _flag(tags.get(RETAIN_DATA_LABEL)) if isinstance(tags, Mapping) else None
    labels = _get(props, "metadata", "labels") or {}
    return _flag(labels.get(RETAIN_DATA_LABEL)) if isinstance(labels, Mapping) else None


def is_data_bearing(resource_type: str, props: Mapping[str, Any]) -> bool:
    if resource_type in BUCKET_TYPES or resource_type in FSX_FILE_SYSTEM_TYPES:
        return True
    if resource_type == PERSISTENT_VOLUME:
        return _get(props, "spec", "csi", "driver") in DATA_CSI_DRIVERS
    if resource_type == STORAGE_CLASS:
        return props.get("provisioner") in DATA_CSI_DRIVERS
    return False


def check_data_retained(
    resource_type: str,
    props: Mapping[str, Any],
    *,
    protect: bool = False,
    retain_on_delete: bool | None = None,
) -> list[str]:
    """Data survives ``pulumi destroy`` unless the stack opted out (``retainData: false``).

    * buckets and FSx file systems: ``protect`` or ``retainOnDelete``; when ``retain_on_delete`` cannot
      be seen (CrossGuard), the tag ``ray-on-eks/retain-data: "true"`` declares it;
    * FSx/S3 PersistentVolumes: ``persistentVolumeReclaimPolicy`` Retain (absent = Retain for a static PV);
    * FSx/S3 StorageClasses: ``reclaimPolicy: Retain`` (absent = Delete);
    the opt-out is the tag/label ``ray-on-eks/retain-data: "false"``.
    """
    if not is_data_bearing(resource_type, props):
        return []
    marker = _retain_marker(resource_type, props)
    if marker is False:
        return []
    opt_out = f'(to delete data with the stack, set retainData: false, which labels it {RETAIN_DATA_LABEL}: "false")'
    if resource_type == PERSISTENT_VOLUME:
        policy = _get(props, "spec", "persistentVolumeReclaimPolicy")
        if policy not in (None, "Retain"):
            return [
                f"{resource_type}{_name(props)}: spec.persistentVolumeReclaimPolicy is {policy}; set Retain "
                f"so deleting the volume keeps the data {opt_out}"
            ]
        return []
    if resource_type == STORAGE_CLASS:
        policy = props.get("reclaimPolicy")
        if policy != "Retain":
            return [
                f"{resource_type}{_name(props)}: reclaimPolicy is {policy or 'unset (Delete)'}; set Retain so "
                f"the file systems it provisions outlive their claims {opt_out}"
            ]
        return []
    if protect or retain_on_delete:
        return []
    if retain_on_delete is None and marker is True:
        return []  # CrossGuard cannot see retainOnDelete; the program declares it with the tag
    declared = " although it is tagged retain-data: true" if marker is True else ""
    return [
        f"{resource_type}: this data-bearing resource is neither protected nor retainOnDelete{declared}; "
        f'register it with retain_on_delete=True and tag it {RETAIN_DATA_LABEL}: "true" {opt_out}'
    ]


# --------------------------------------------------------------------------------------------------
# 5. Ray containers have requests and limits; no :latest or untagged images
# --------------------------------------------------------------------------------------------------


def check_ray_container_resources(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every container of every Ray pod has CPU and memory requests AND limits."""
    problems: list[str] = []
    for path, pod in ray_pod_specs(resource_type, props):
        for index, container in enumerate(_containers(pod)):
            label = container.get("name") or index
            missing = [
                f"{kind}.{resource}"
                for kind in ("requests", "limits")
                for resource in ("cpu", "memory")
                if _get(container, "resources", kind, resource) in (None, "")
            ]
            if missing:
                problems.append(
                    f"{resource_type}{_name(props)}: container {label!r} in {path} has no "
                    f"{', '.join(missing)}; set CPU and memory requests and limits (head/workerGroups cpu "
                    "and memory in the stack config) so the scheduler and Ray see the real size"
                )
    return problems


def image_problem(image: str) -> str | None:
    """Why ``image`` is not pinned, or None when it is (a tag other than latest, or a digest)."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag"
    if last.rsplit(":", 1)[1] in ("latest", ""):
        return "uses the tag latest"
    return None


def check_images_pinned(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No ``:latest`` or untagged container images in pod specs, Ray resources or Helm values."""
    if not is_kubernetes(resource_type):
        return []
    fix = "pin an explicit version tag (or a digest); the versions live in components/versions.py"
    problems: list[str] = []
    in_helm = resource_type in (HELM_RELEASE, HELM_CHART)
    for path, key, value in walk(props.get("values") if in_helm else props, "values" if in_helm else ""):
        if key != "image":
            continue
        if isinstance(value, str):
            problem = image_problem(value)
            if problem:
                problems.append(f"{resource_type}{_name(props)}: image {value!r} at {path} {problem}; {fix}")
        elif isinstance(value, Mapping) and str(value.get("tag", "")).strip() == "latest":
            problems.append(f"{resource_type}{_name(props)}: Helm value {path}.tag is latest; {fix}")
    return problems


# --------------------------------------------------------------------------------------------------
# 6. rayVersion matches the Ray image tag
# --------------------------------------------------------------------------------------------------


def image_ray_version(image: str) -> str | None:
    """``rayproject/ray:2.60.0-py311-gpu`` -> ``2.60.0``; None when the tag carries no version."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _VERSION_PREFIX.match(last.rsplit(":", 1)[1])
    return match.group(1) if match else None


def check_ray_version_matches_image(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``rayVersion`` equals the version in the tag of every Ray container image (head and workers)."""
    problems: list[str] = []
    for base, spec in ray_cluster_specs(resource_type, props):
        version = spec.get("rayVersion")
        if not version:
            problems.append(
                f"{resource_type}{_name(props)}: {base}.rayVersion is not set; set it to the Ray version of "
                "the image (components/versions.py RAY_VERSION)"
            )
            continue
        groups = [("headGroupSpec", _get(spec, "headGroupSpec", "template", "spec"))]
        groups += [
            (f"workerGroupSpecs[{i}]", _get(group, "template", "spec"))
            for i, group in enumerate(spec.get("workerGroupSpecs") or [])
        ]
        for where, pod in groups:
            containers = _containers(pod) if isinstance(pod, Mapping) else []
            # KubeRay runs Ray in the first container of each pod.
            image = containers[0].get("image") if containers else None
            if not isinstance(image, str):
                continue
            tag_version = image_ray_version(image)
            if tag_version != str(version):
                shown = f"Ray {tag_version}" if tag_version else "no Ray version in its tag"
                problems.append(
                    f"{resource_type}{_name(props)}: {base}.{where} image {image!r} has {shown} but "
                    f"rayVersion is {version}; use an image tagged {version}-... or set rayVersion to match"
                )
    return problems


# --------------------------------------------------------------------------------------------------
# 7. Secure defaults of Ray pods: non-root, not privileged, no privilege escalation; token auth
# --------------------------------------------------------------------------------------------------


def check_ray_pod_security(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Ray containers run as non-root, unprivileged, with allowPrivilegeEscalation false."""
    problems: list[str] = []
    for path, pod in ray_pod_specs(resource_type, props):
        pod_ctx = pod.get("securityContext") or {}
        for index, container in enumerate(_containers(pod, init=True)):
            label = container.get("name") or index
            ctx = container.get("securityContext") or {}

            # A container's securityContext overrides the pod's.
            user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
            non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True or (
                isinstance(user, int) and user > 0
            )
            where = f"{resource_type}{_name(props)}: container {label!r} in {path}"
            if user == 0:
                problems.append(f"{where} runs as user 0 (root); run as the image's ray user (uid 1000)")
            elif not non_root:
                problems.append(
                    f"{where} may run as root; set securityContext.runAsNonRoot: true (and runAsUser: 1000)"
                )
            if ctx.get("privileged") is True:
                problems.append(f"{where} is privileged; remove securityContext.privileged")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where} does not set securityContext.allowPrivilegeEscalation: false")
    return problems


def check_ray_token_auth(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Ray token authentication (KubeRay ``authOptions.mode: token``) on every Ray cluster spec."""
    return [
        f"{resource_type}{_name(props)}: {base}.authOptions.mode is {_get(spec, 'authOptions', 'mode')!r}; "
        "set tokenAuth: true in the stack config so KubeRay enables Ray token authentication"
        for base, spec in ray_cluster_specs(resource_type, props)
        if _get(spec, "authOptions", "mode") != "token"
    ]


def check_head_service_cluster_ip(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """The Ray head (dashboard) Service is ClusterIP: ``serviceType`` absent or ClusterIP."""
    return [
        f"{resource_type}{_name(props)}: {base}.headGroupSpec.serviceType is {service_type}; leave it unset "
        "or ClusterIP"
        for base, spec in ray_cluster_specs(resource_type, props)
        if (service_type := _get(spec, "headGroupSpec", "serviceType")) not in (None, "ClusterIP")
    ]


# Resource-level checks the policy pack registers (name -> function), in one table for the tests.
ResourceCheck = Callable[[str, Mapping[str, Any]], list[str]]
RESOURCE_CHECKS: dict[str, ResourceCheck] = {
    "no-aws-access-keys": check_no_aws_access_keys,
    "dashboards-not-exposed": check_dashboards_not_exposed,
    "security-group-rules-restricted": check_security_group_rules,
    "ray-containers-have-requests-and-limits": check_ray_container_resources,
    "images-pinned": check_images_pinned,
    "ray-version-matches-image": check_ray_version_matches_image,
    "ray-pods-non-root": check_ray_pod_security,
    "ray-token-auth": check_ray_token_auth,
}

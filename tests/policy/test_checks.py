"""Each guardrail check against deliberately bad resources (violation, with a fix) and good ones (none)."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from policy import checks
from policy.checks import StackResource

RAY_IMAGE = "rayproject/ray:2.60.0-py311"
GPU_IMAGE = "rayproject/ray:2.60.0-py311-gpu"
SECURE_CONTEXT = {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False}


def _container(name: str, image: str = RAY_IMAGE) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}},
        "securityContext": dict(SECURE_CONTEXT),
        "env": [{"name": "RAY_AUTH_MODE", "value": "token"}],
    }


def _cluster_spec() -> dict[str, Any]:
    return {
        "rayVersion": "2.60.0",
        "authOptions": {"mode": "token"},
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},
            "template": {"spec": {"containers": [_container("ray-head")]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "gpu-workers",
                "replicas": 1,
                "template": {
                    "spec": {
                        "securityContext": {"runAsNonRoot": True},
                        "containers": [_container("ray-worker", GPU_IMAGE)],
                    }
                },
            }
        ],
    }


def ray_cluster() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "ray", "namespace": "ray"},
        "spec": _cluster_spec(),
    }


def ray_job() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "train", "namespace": "ray"},
        "spec": {
            "entrypoint": "python -m workloads.dt_pytorch.train",
            "rayClusterSpec": _cluster_spec(),
            "submitterPodTemplate": {"spec": {"containers": [_container("submitter")]}},
        },
    }


def ray_service() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "digits", "namespace": "ray"},
        "spec": {"serveConfigV2": "applications: []", "rayClusterConfig": _cluster_spec()},
    }


RAY_RESOURCES = [
    (checks.RAY_CLUSTER, ray_cluster, "spec"),
    (checks.RAY_JOB, ray_job, "spec.rayClusterSpec"),
    (checks.RAY_SERVICE, ray_service, "spec.rayClusterConfig"),
]
RAY_IDS = ["RayCluster", "RayJob", "RayService"]


def _spec(props: dict[str, Any], base: str) -> dict[str, Any]:
    node: Any = props
    for part in base.split("."):
        node = node[part]
    return node


def _head(props: dict[str, Any], base: str) -> dict[str, Any]:
    return _spec(props, base)["headGroupSpec"]["template"]["spec"]["containers"][0]


def _worker(props: dict[str, Any], base: str) -> dict[str, Any]:
    return _spec(props, base)["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]


def _one(problems: list[str], *fragments: str) -> str:
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], (fragment, problems[0])
    return problems[0]


# --------------------------------------------------------------------------------------------------
# Good resources pass every check
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
@pytest.mark.parametrize("name", list(checks.RESOURCE_CHECKS))
def test_good_ray_resources_pass_every_check(name: str, typ: str, build: Any, base: str) -> None:
    assert checks.RESOURCE_CHECKS[name](typ, build()) == []


# --------------------------------------------------------------------------------------------------
# 1. AWS access keys
# --------------------------------------------------------------------------------------------------

FAKE_KEY_ID = "AKIA" + "ABCDEFGHIJKLMNOP"  # split so secret scanners do not flag the test itself


@pytest.mark.parametrize(
    ("typ", "props", "fragment"),
    [
        (checks.SECRET, {"stringData": {"AWS_ACCESS_KEY_ID": "x"}}, "key 'AWS_ACCESS_KEY_ID'"),
        (checks.SECRET, {"stringData": {"creds": f"id={FAKE_KEY_ID}"}}, "AWS access key id"),
        (
            checks.SECRET,
            {"data": {"credentials": base64.b64encode(b"[default]\naws_secret_access_key = abc").decode()}},
            "assignment to aws_secret_access_key",
        ),
        (checks.CONFIG_MAP, {"data": {"aws_session_token": "abc"}}, "key 'aws_session_token'"),
        (checks.CONFIG_MAP, {"data": {"env": "AWS_SECRET_ACCESS_KEY=abc"}}, "assignment"),
        (
            "kubernetes:apps/v1:Deployment",
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "app", "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"}]}
                            ]
                        }
                    }
                }
            },
            "environment variable AWS_SECRET_ACCESS_KEY",
        ),
        (
            "kubernetes:batch/v1:CronJob",
            {
                "spec": {
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [
                                        {
                                            "name": "sync",
                                            "env": [
                                                {
                                                    "name": "AWS_ACCESS_KEY_ID",
                                                    "valueFrom": {
                                                        "secretKeyRef": {"name": "aws", "key": "id"}
                                                    },
                                                }
                                            ],
                                        }
                                    ]
                                }
                            }
                        }
                    }
                }
            },
            "environment variable AWS_ACCESS_KEY_ID",
        ),
        (
            checks.HELM_RELEASE,
            {"chart": "kube-prometheus-stack", "values": {"grafana": {"env": {"AWS_ACCESS_KEY_ID": "x"}}}},
            "key 'AWS_ACCESS_KEY_ID'",
        ),
    ],
    ids=[
        "secret-key",
        "secret-value",
        "secret-base64",
        "configmap-key",
        "configmap-envfile",
        "deployment",
        "cronjob",
        "helm",
    ],
)
def test_aws_keys_are_reported(typ: str, props: dict[str, Any], fragment: str) -> None:
    message = _one(checks.check_no_aws_access_keys(typ, props), fragment)
    assert "Pod Identity" in message


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
def test_aws_keys_in_ray_head_and_worker_env_are_reported(typ: str, build: Any, base: str) -> None:
    props = build()
    _head(props, base)["env"].append({"name": "AWS_ACCESS_KEY_ID", "value": FAKE_KEY_ID})
    _worker(props, base)["env"].append({"name": "aws_secret_access_key", "value": "x"})
    problems = checks.check_no_aws_access_keys(typ, props)
    assert len(problems) == 3, problems  # head: name + value; worker: name
    assert any(f"{base}.headGroupSpec" in p and "AWS_ACCESS_KEY_ID" in p for p in problems)
    assert any(f"{base}.workerGroupSpecs[0]" in p for p in problems)


def test_harmless_mentions_of_aws_keys_are_not_reported() -> None:
    code = 'import os\n# Credentials come from Pod Identity; never read os.environ["AWS_ACCESS_KEY_ID"]\n'
    assert checks.check_no_aws_access_keys(checks.CONFIG_MAP, {"data": {"train.py": code}}) == []
    # AWS resources are outside this check (IAM access keys are not created by the program at all).
    assert checks.check_no_aws_access_keys("aws:iam/role:Role", {"name": "AWS_ACCESS_KEY_ID"}) == []


# --------------------------------------------------------------------------------------------------
# 2. Dashboards exposure
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_exposed_ray_head_is_reported_unless_allowed(
    typ: str, build: Any, base: str, service_type: str
) -> None:
    props = build()
    _spec(props, base)["headGroupSpec"]["serviceType"] = service_type
    _one(
        checks.check_dashboards_not_exposed(typ, props),
        f"{base}.headGroupSpec.serviceType is {service_type}",
        "port-forward",
        "exposeDashboards",
    )
    assert checks.check_dashboards_not_exposed(typ, props, allow_exposed=True) == []
    props["metadata"]["annotations"] = {checks.EXPOSE_DASHBOARDS_ANNOTATION: "true"}
    assert checks.check_dashboards_not_exposed(typ, props) == []
    props["metadata"]["annotations"] = {checks.EXPOSE_DASHBOARDS_ANNOTATION: "false"}
    assert len(checks.check_dashboards_not_exposed(typ, props)) == 1


def test_ray_head_ingress_and_head_service_type_are_reported() -> None:
    props = ray_cluster()
    props["spec"]["headGroupSpec"]["enableIngress"] = True
    props["spec"]["headGroupSpec"]["headService"] = {"spec": {"type": "LoadBalancer"}}
    problems = checks.check_dashboards_not_exposed(checks.RAY_CLUSTER, props)
    assert len(problems) == 2
    assert any("enableIngress" in p for p in problems)
    assert any("headService.spec.type is LoadBalancer" in p for p in problems)


@pytest.mark.parametrize(
    ("ports", "selector", "fragment"),
    [
        ([{"name": "dashboard", "port": 8265}], {}, "Ray dashboard"),
        ([{"name": "client", "port": 10001}], {}, "Ray client"),
        ([{"name": "http", "port": 80, "targetPort": 3000}], {}, "Grafana"),
        ([{"name": "web", "port": 80}], {"ray.io/node-type": "head"}, "the Ray head pod"),
    ],
)
@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_exposed_dashboard_services_are_reported(
    ports: list[dict[str, Any]], selector: dict[str, str], fragment: str, service_type: str
) -> None:
    props: dict[str, Any] = {
        "metadata": {"name": "dash"},
        "spec": {"type": service_type, "ports": ports, "selector": selector},
    }
    _one(checks.check_dashboards_not_exposed(checks.SERVICE, props), f"spec.type is {service_type}", fragment)
    props["spec"]["type"] = "ClusterIP"
    assert checks.check_dashboards_not_exposed(checks.SERVICE, props) == []


def test_exposed_services_that_are_not_dashboards_pass() -> None:
    serve = {"spec": {"type": "LoadBalancer", "ports": [{"name": "serve", "port": 8000}]}}
    assert checks.check_dashboards_not_exposed(checks.SERVICE, serve) == []


def test_grafana_exposed_through_helm_values_is_reported() -> None:
    release: dict[str, Any] = {
        "chart": "kube-prometheus-stack",
        "name": "monitoring",
        "values": {"grafana": {"service": {"type": "LoadBalancer"}, "ingress": {"enabled": True}}},
    }
    problems = checks.check_dashboards_not_exposed(checks.HELM_RELEASE, release)
    assert len(problems) == 2, problems
    assert any("values.grafana.service.type is LoadBalancer" in p for p in problems)
    assert any("values.grafana.ingress.enabled" in p for p in problems)
    release["values"]["grafana"]["service"]["annotations"] = {checks.EXPOSE_DASHBOARDS_ANNOTATION: "true"}
    release["values"]["grafana"]["ingress"]["annotations"] = {checks.EXPOSE_DASHBOARDS_ANNOTATION: "true"}
    assert checks.check_dashboards_not_exposed(checks.HELM_RELEASE, release) == []
    cluster_ip = {"chart": "kube-prometheus-stack", "values": {"grafana": {"service": {"type": "ClusterIP"}}}}
    assert checks.check_dashboards_not_exposed(checks.HELM_RELEASE, cluster_ip) == []


# --------------------------------------------------------------------------------------------------
# 3. Security groups
# --------------------------------------------------------------------------------------------------

GOOD_LUSTRE_RULE = {
    "securityGroupId": "sg-0a1b2c3d4e5f60718",
    "ipProtocol": "tcp",
    "fromPort": 988,
    "toPort": 988,
    "cidrIpv4": "10.0.0.0/16",
}


@pytest.mark.parametrize(
    ("typ", "props", "fragments"),
    [
        (checks.SG_INGRESS_RULE, {**GOOD_LUSTRE_RULE, "ipProtocol": "-1"}, ["all protocols", "tcp 988"]),
        (checks.SG_INGRESS_RULE, {**GOOD_LUSTRE_RULE, "cidrIpv4": "0.0.0.0/0"}, ["0.0.0.0/0", "VPC CIDR"]),
        (checks.SG_INGRESS_RULE, {**GOOD_LUSTRE_RULE, "cidrIpv4": None, "cidrIpv6": "::/0"}, ["::/0"]),
        (checks.SG_EGRESS_RULE, {**GOOD_LUSTRE_RULE, "ipProtocol": "all"}, ["egress rule allows all"]),
        (
            checks.SG_RULE,
            {
                "type": "ingress",
                "protocol": "tcp",
                "fromPort": 988,
                "toPort": 988,
                "cidrBlocks": ["0.0.0.0/0"],
            },
            ["ingress rule is open to 0.0.0.0/0"],
        ),
        (
            checks.SG_RULE,
            {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["10.0.0.0/8"]},
            ["egress rule allows all protocols"],
        ),
        (
            checks.SG,
            {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/0"]}]},
            ["ingress[0]", "::/0"],
        ),
        (
            checks.SG,
            {"egress": [{"protocol": -1, "fromPort": 0, "toPort": 0}]},
            ["egress[0]", "all protocols"],
        ),
    ],
)
def test_open_security_group_rules_are_reported(
    typ: str, props: dict[str, Any], fragments: list[str]
) -> None:
    _one(checks.check_security_group_rules(typ, props), *fragments)


def test_restricted_security_group_rules_pass() -> None:
    assert checks.check_security_group_rules(checks.SG_INGRESS_RULE, GOOD_LUSTRE_RULE) == []
    self_rule = {**GOOD_LUSTRE_RULE, "cidrIpv4": None, "referencedSecurityGroupId": "sg-0a1b2c3d4e5f60718"}
    assert checks.check_security_group_rules(checks.SG_INGRESS_RULE, self_rule) == []
    # Egress to anywhere on one protocol is a normal rule; only ingress sources are restricted.
    https_out = {
        "type": "egress",
        "protocol": "tcp",
        "fromPort": 443,
        "toPort": 443,
        "cidrBlocks": ["0.0.0.0/0"],
    }
    assert checks.check_security_group_rules(checks.SG_RULE, https_out) == []


# --------------------------------------------------------------------------------------------------
# 4. Buckets and retention
# --------------------------------------------------------------------------------------------------

BUCKET_URN = "urn:pulumi:dev::ray-on-eks::aws:s3/bucket:Bucket::data"
PAB_ALL = {
    field: True
    for field in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
}
SSE_RULE = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]}


def _bucket_stack(
    pab: dict[str, Any] | None, sse: dict[str, Any] | None, by: str = "dependency"
) -> list[StackResource]:
    bucket = StackResource(
        type="aws:s3/bucket:Bucket", urn=BUCKET_URN, name="data", props={"bucket": "ray-data"}
    )
    link: dict[str, Any] = {"bucket": "ray-data"} if by == "name" else {"bucket": None}
    deps = (BUCKET_URN,) if by == "dependency" else ()
    resources = [bucket]
    if pab is not None:
        resources.append(
            StackResource(
                type=checks.PUBLIC_ACCESS_BLOCK,
                urn="urn:pab",
                name="data-pab",
                props={**link, **pab},
                dependencies=deps,
            )
        )
    if sse is not None:
        resources.append(
            StackResource(
                type=next(iter(sorted(checks.SSE_TYPES))),
                urn="urn:sse",
                name="data-sse",
                props={**link, **sse},
                dependencies=deps,
            )
        )
    return resources


@pytest.mark.parametrize("by", ["dependency", "name"])
def test_private_encrypted_bucket_passes(by: str) -> None:
    assert checks.check_buckets_private_and_encrypted(_bucket_stack(PAB_ALL, SSE_RULE, by)) == []


def test_bucket_without_public_access_block_is_reported() -> None:
    _one(
        checks.check_buckets_private_and_encrypted(_bucket_stack(None, SSE_RULE)),
        "no aws.s3.BucketPublicAccessBlock",
        "all true",
    )


def test_public_access_block_with_a_false_setting_is_reported() -> None:
    pab = {**PAB_ALL, "restrictPublicBuckets": False}
    _one(
        checks.check_buckets_private_and_encrypted(_bucket_stack(pab, SSE_RULE)),
        "restrictPublicBuckets",
        "all four",
    )


def test_unencrypted_bucket_is_reported() -> None:
    _one(
        checks.check_buckets_private_and_encrypted(_bucket_stack(PAB_ALL, None)),
        "server-side encryption",
        "sseAlgorithm",
    )
    _one(
        checks.check_buckets_private_and_encrypted(_bucket_stack(PAB_ALL, {"rules": []})),
        "server-side encryption",
    )


def test_controls_of_another_bucket_do_not_count() -> None:
    resources = _bucket_stack(PAB_ALL, SSE_RULE, by="name")
    other = StackResource(
        type="aws:s3/bucket:Bucket", urn="urn:other", name="other", props={"bucket": "other"}
    )
    problems = checks.check_buckets_private_and_encrypted([*resources, other])
    assert len(problems) == 2 and all("S3 bucket other" in p for p in problems)


FSX = "aws:fsx/lustreFileSystem:LustreFileSystem"


@pytest.mark.parametrize("typ", [FSX, "aws:s3/bucket:Bucket"])
def test_unretained_data_resources_are_reported(typ: str) -> None:
    _one(
        checks.check_data_retained(typ, {"tags": {}}, retain_on_delete=False),
        "retain_on_delete=True",
        "retainData: false",
    )
    # The tag alone does not satisfy the check when the option is visible (the tests' harness).
    tagged = {"tags": {checks.RETAIN_DATA_LABEL: "true"}}
    _one(checks.check_data_retained(typ, tagged, retain_on_delete=False), "although it is tagged")


@pytest.mark.parametrize("typ", [FSX, "aws:s3/bucket:Bucket"])
def test_retained_or_opted_out_data_resources_pass(typ: str) -> None:
    assert checks.check_data_retained(typ, {}, retain_on_delete=True) == []
    assert checks.check_data_retained(typ, {}, protect=True) == []
    # Under CrossGuard retainOnDelete is invisible (None): the tag declares it.
    assert checks.check_data_retained(typ, {"tags": {checks.RETAIN_DATA_LABEL: "true"}}) == []
    assert len(checks.check_data_retained(typ, {"tags": {}})) == 1
    assert checks.check_data_retained(typ, {"tags": {checks.RETAIN_DATA_LABEL: "false"}}) == []


def _pv(
    policy: str | None, driver: str = "fsx.csi.aws.com", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"csi": {"driver": driver, "volumeHandle": "fs-0123456789abcdef0"}}
    if policy:
        spec["persistentVolumeReclaimPolicy"] = policy
    return {"metadata": {"name": "fsx-pv", "labels": labels or {}}, "spec": spec}


def test_volume_and_storage_class_retention() -> None:
    pv, sc = checks.PERSISTENT_VOLUME, checks.STORAGE_CLASS
    _one(checks.check_data_retained(pv, _pv("Delete")), "persistentVolumeReclaimPolicy is Delete", "Retain")
    _one(checks.check_data_retained(pv, _pv("Recycle", "s3.csi.aws.com")), "Recycle")
    assert checks.check_data_retained(pv, _pv("Retain")) == []
    assert checks.check_data_retained(pv, _pv(None)) == []  # a static PV defaults to Retain
    assert checks.check_data_retained(pv, _pv("Delete", labels={checks.RETAIN_DATA_LABEL: "false"})) == []
    assert checks.check_data_retained(pv, _pv("Delete", driver="ebs.csi.aws.com")) == []  # not shared data
    fsx_sc = {"metadata": {"name": "fsx"}, "provisioner": "fsx.csi.aws.com"}
    _one(checks.check_data_retained(sc, fsx_sc), "reclaimPolicy is unset (Delete)")
    _one(checks.check_data_retained(sc, {**fsx_sc, "reclaimPolicy": "Delete"}), "reclaimPolicy is Delete")
    assert checks.check_data_retained(sc, {**fsx_sc, "reclaimPolicy": "Retain"}) == []
    opted_out = {**fsx_sc, "metadata": {"labels": {checks.RETAIN_DATA_LABEL: "false"}}}
    assert checks.check_data_retained(sc, opted_out) == []


# --------------------------------------------------------------------------------------------------
# 5. Requests/limits, pinned images
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
@pytest.mark.parametrize(
    ("kind", "resource"),
    [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")],
)
def test_missing_requests_or_limits_are_reported(
    typ: str, build: Any, base: str, kind: str, resource: str
) -> None:
    props = build()
    del _worker(props, base)["resources"][kind][resource]
    _one(
        checks.check_ray_container_resources(typ, props),
        f"{base}.workerGroupSpecs[gpu-workers]",
        f"{kind}.{resource}",
        "requests and limits",
    )
    del _head(props, base)["resources"]
    problems = checks.check_ray_container_resources(typ, props)
    assert len(problems) == 2
    assert any(
        "'ray-head'" in p and "requests.cpu, requests.memory, limits.cpu, limits.memory" in p
        for p in problems
    )


def test_submitter_pod_without_limits_is_reported() -> None:
    props = ray_job()
    del props["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["resources"]["limits"]
    _one(
        checks.check_ray_container_resources(checks.RAY_JOB, props),
        "submitterPodTemplate",
        "limits.cpu, limits.memory",
    )


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("rayproject/ray", "has no tag"),
        ("rayproject/ray:latest", "uses the tag latest"),
        ("registry.example:5000/ray", "has no tag"),
        ("registry.example:5000/ray:2.60.0", None),
        ("rayproject/ray@sha256:" + "a" * 64, None),
        (RAY_IMAGE, None),
    ],
)
def test_image_problem(image: str, problem: str | None) -> None:
    assert checks.image_problem(image) == problem


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
def test_unpinned_ray_images_are_reported(typ: str, build: Any, base: str) -> None:
    props = build()
    _worker(props, base)["image"] = "rayproject/ray:latest"
    _one(
        checks.check_images_pinned(typ, props),
        "'rayproject/ray:latest'",
        "workerGroupSpecs[0]",
        "components/versions.py",
    )


def test_unpinned_images_elsewhere_are_reported() -> None:
    deployment = {"spec": {"template": {"spec": {"initContainers": [{"name": "init", "image": "busybox"}]}}}}
    _one(checks.check_images_pinned("kubernetes:apps/v1:Deployment", deployment), "'busybox'", "has no tag")
    release = {
        "chart": "kuberay-operator",
        "values": {"image": {"repository": "quay.io/kuberay/operator", "tag": "latest"}},
    }
    _one(checks.check_images_pinned(checks.HELM_RELEASE, release), "values.image.tag is latest")
    # Helm values without a tag use the chart's pinned appVersion; a tagged string is fine.
    assert checks.check_images_pinned(checks.HELM_RELEASE, {"values": {"image": {"repository": "x"}}}) == []
    sidecar = {"values": {"grafana": {"sidecar": {"image": "quay.io/kiwigrid/k8s-sidecar:1.30.3"}}}}
    assert checks.check_images_pinned(checks.HELM_RELEASE, sidecar) == []


# --------------------------------------------------------------------------------------------------
# 6. rayVersion vs image tag
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "version"),
    [
        (GPU_IMAGE, "2.60.0"),
        ("rayproject/ray:2.60.0", "2.60.0"),
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com/ray:2.59.1-py311-cu128", "2.59.1"),
        ("rayproject/ray:nightly", None),
        ("rayproject/ray", None),
    ],
)
def test_image_ray_version(image: str, version: str | None) -> None:
    assert checks.image_ray_version(image) == version


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
def test_ray_version_mismatch_is_reported(typ: str, build: Any, base: str) -> None:
    props = build()
    _worker(props, base)["image"] = "rayproject/ray:2.59.0-py311-gpu"
    _one(checks.check_ray_version_matches_image(typ, props), "Ray 2.59.0", "rayVersion is 2.60.0")
    _head(props, base)["image"] = "rayproject/ray:nightly"
    assert any("no Ray version in its tag" in p for p in checks.check_ray_version_matches_image(typ, props))
    del _spec(props, base)["rayVersion"]
    _one(checks.check_ray_version_matches_image(typ, props), "rayVersion is not set")


# --------------------------------------------------------------------------------------------------
# 7. Pod security, token auth, head service type
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"runAsUser": 0}, "runs as user 0"),
        ({"runAsNonRoot": False, "runAsUser": None}, "may run as root"),
        ({"privileged": True}, "is privileged"),
        ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation: false"),
    ],
)
def test_insecure_ray_pods_are_reported(
    typ: str, build: Any, base: str, change: dict[str, Any], fragment: str
) -> None:
    props = build()
    ctx = _head(props, base)["securityContext"]
    for key, value in change.items():
        if value is None:
            ctx.pop(key)
        else:
            ctx[key] = value
    _one(checks.check_ray_pod_security(typ, props), "'ray-head'", fragment)


def test_pod_level_security_context_applies_to_containers() -> None:
    props = ray_cluster()
    worker_pod = props["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    worker_pod["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False}
    assert checks.check_ray_pod_security(checks.RAY_CLUSTER, props) == []  # pod runAsNonRoot: true
    worker_pod["securityContext"] = {"runAsUser": 0}
    _one(checks.check_ray_pod_security(checks.RAY_CLUSTER, props), "'ray-worker'", "user 0")


@pytest.mark.parametrize(("typ", "build", "base"), RAY_RESOURCES, ids=RAY_IDS)
def test_token_auth_and_head_service_type(typ: str, build: Any, base: str) -> None:
    props = build()
    _spec(props, base)["authOptions"] = {"mode": "disabled"}
    _one(checks.check_ray_token_auth(typ, props), "authOptions.mode is 'disabled'", "tokenAuth: true")
    del _spec(props, base)["authOptions"]
    _one(checks.check_ray_token_auth(typ, props), "is None")
    _spec(props, base)["headGroupSpec"]["serviceType"] = "ClusterIP"
    assert checks.check_head_service_cluster_ip(typ, props) == []
    _spec(props, base)["headGroupSpec"]["serviceType"] = "NodePort"
    _one(checks.check_head_service_cluster_ip(typ, props), "serviceType is NodePort")


def test_checks_ignore_unrelated_resources() -> None:
    unrelated = {"metadata": {"name": "x"}, "spec": {"type": "LoadBalancer"}}
    for name, check in checks.RESOURCE_CHECKS.items():
        assert check("aws:iam/role:Role", copy.deepcopy(unrelated)) == [], name

"""RayClusterStack under mocks: every stack file's Ray resources, their order, and their validity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import contract
from components.builders.ray import config_map_key
from components.config import HeadConfig, RayJobConfig, RayServiceConfig, WorkerGroupConfig
from components.kuberay_operator import CRD_TYPE
from components.ray_cluster import RayClusterStack, RayClusterStackArgs, SharedVolume, claim_name
from components.versions import KUBECTL_IMAGE, RAY_VERSION
from tests import pulumi_harness
from tests.kuberay_schemas import validation_errors
from tests.pulumi_harness import REPO, ProgramRun, run_ok, run_program, run_shared
from workloads.catalog import WORKLOADS, WORKLOADS_MOUNT_PATH, get_workload

RAY_KINDS = ("RayCluster", "RayJob", "RayService")


def _doc(resource: pulumi_harness.Registered) -> dict[str, Any]:
    return {key: resource.inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}


def _cluster(run: ProgramRun) -> pulumi_harness.Registered:
    (cluster,) = run.custom_resources("RayCluster")
    return cluster


def _cluster_pods(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]


# ---- every stack file ------------------------------------------------------------------------------


@pytest.mark.schemas
def test_every_ray_resource_validates_against_the_kuberay_crds(stack_run: ProgramRun) -> None:
    documents = [r for kind in RAY_KINDS for r in stack_run.custom_resources(kind)]
    assert documents
    for resource in documents:
        assert validation_errors(_doc(resource)) == []


def _waits_for(run: ProgramRun, urn: str) -> set[str]:
    """Every URN ``urn`` transitively depends on (what the engine creates before it)."""
    deps = {r.urn: r.dependencies for r in run.resources}
    seen: set[str] = set()
    frontier = list(deps.get(urn, []))
    while frontier:
        current = frontier.pop()
        if current not in seen:
            seen.add(current)
            frontier += deps.get(current, [])
    return seen


def test_cluster_depends_on_the_crds_and_jobs_on_the_cluster(stack_run: ProgramRun) -> None:
    cluster = _cluster(stack_run)
    crds = stack_run.of_type(CRD_TYPE)
    assert len(crds) == 3
    release = stack_run.one("kubernetes:helm.sh/v3:Release", "kuberay-release")
    for resource in [
        cluster,
        *stack_run.custom_resources("RayJob"),
        *stack_run.custom_resources("RayService"),
    ]:
        # The operator release waits for the CRDs; Ray resources wait for the release (not for the
        # whole KubeRayOperator component, whose ServiceMonitor waits for monitoring: issue 13).
        waits = _waits_for(stack_run, resource.urn)
        for crd in crds:
            assert crd.urn in waits, f"{resource.name} does not wait for {crd.name}"
        assert release.urn in resource.dependencies
    for job in stack_run.custom_resources("RayJob"):
        assert cluster.urn in job.dependencies
    assert cluster.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.state}=ready"


def test_jobs_and_services_match_the_stack_file(stack_run: ProgramRun) -> None:
    config = yaml.safe_load((REPO / f"Pulumi.{stack_run.stack}.yaml").read_text())["config"]
    jobs = {j.inputs["metadata"]["name"]: j.inputs["spec"] for j in stack_run.custom_resources("RayJob")}
    assert set(jobs) == {j["name"] for j in config.get("ray-on-eks:rayJobs", [])}
    for job in config.get("ray-on-eks:rayJobs", []):
        spec = jobs[job["name"]]
        assert spec["entrypoint"] == get_workload(job["workload"]).entrypoint()
        env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
        assert job.get("env", {}).items() <= env.items()
        if job.get("cluster", "shared") == "shared":
            assert spec["clusterSelector"] == {
                contract.RAY_CLUSTER_LABEL: _cluster(stack_run).inputs["metadata"]["name"]
            }
        else:
            assert spec["shutdownAfterJobFinishes"] is True
            assert spec["ttlSecondsAfterFinished"] == job.get("ttlSecondsAfterFinished", 3600)
    services = {s.inputs["metadata"]["name"] for s in stack_run.custom_resources("RayService")}
    assert services == {s["name"] for s in config.get("ray-on-eks:rayServices", [])}


def test_workload_config_map_is_byte_identical_and_mounted(stack_run: ProgramRun) -> None:
    config_map = stack_run.one("kubernetes:core/v1:ConfigMap", "ray-workloads")
    data = config_map.inputs["data"]
    assert config_map.inputs["immutable"] is True
    used = {
        path
        for kind in ("RayJob", "RayService")
        for r in stack_run.custom_resources(kind)
        for path in get_workload(_workload_name(stack_run, r)).files
    }
    assert set(data) == {config_map_key(p) for p in used}
    for path in used:
        assert data[config_map_key(path)].encode("utf-8") == (REPO / path).read_bytes(), path
    name = config_map.inputs["metadata"]["name"]
    for pod in _cluster_pods(_cluster(stack_run).inputs["spec"]):
        volume = next(v for v in pod["volumes"] if v.get("configMap"))
        assert volume["configMap"]["name"] == name
        assert len(volume["configMap"]["items"]) == len(data)
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert WORKLOADS_MOUNT_PATH in mounts


def _workload_name(run: ProgramRun, resource: pulumi_harness.Registered) -> str:
    config = yaml.safe_load((REPO / f"Pulumi.{run.stack}.yaml").read_text())["config"]
    key = "ray-on-eks:rayJobs" if resource.inputs["kind"] == "RayJob" else "ray-on-eks:rayServices"
    (entry,) = [e for e in config[key] if e["name"] == resource.inputs["metadata"]["name"]]
    return str(entry.get("workload", "serve"))


def test_namespace_service_account_and_pod_security(stack_run: ProgramRun) -> None:
    namespace = stack_run.one("kubernetes:core/v1:Namespace", "ray-namespace")
    labels = namespace.inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    account = stack_run.one("kubernetes:core/v1:ServiceAccount", "ray-service-account")
    assert account.inputs["metadata"]["name"] == contract.RAY_SERVICE_ACCOUNT
    assert account.inputs["automountServiceAccountToken"] is False
    for kind in RAY_KINDS:
        for resource in stack_run.custom_resources(kind):
            spec = resource.inputs["spec"]
            cluster_spec = spec.get("rayClusterSpec") or spec.get("rayClusterConfig")
            if "headGroupSpec" in spec:
                cluster_spec = spec
            if not cluster_spec:
                continue  # a RayJob on the shared cluster has no pods of its own
            for pod in _cluster_pods(cluster_spec):
                assert pod["serviceAccountName"] == contract.RAY_SERVICE_ACCOUNT
                assert pod["securityContext"]["runAsNonRoot"] is True
                for container in pod["containers"]:
                    assert container["securityContext"]["runAsUser"] == 1000
                    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_token_auth_and_dashboard_defaults(stack_run: ProgramRun) -> None:
    spec = _cluster(stack_run).inputs["spec"]
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    for job in stack_run.custom_resources("RayJob"):
        if "rayClusterSpec" in job.inputs["spec"]:
            assert job.inputs["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}


def test_stack_outputs(stack_run: ProgramRun) -> None:
    exports = stack_run.exports
    name = _cluster(stack_run).inputs["metadata"]["name"]
    namespace = _cluster(stack_run).inputs["metadata"]["namespace"]
    assert exports["rayClusterName"] == name
    assert exports["headServiceName"] == f"{name}-head-svc"
    assert (
        exports["dashboardPortForwardCommand"]
        == f"kubectl port-forward -n {namespace} svc/{name}-head-svc 8265:8265"
    )
    assert exports["rayAuthTokenSecretName"] == name
    services = stack_run.custom_resources("RayService")
    assert set(exports.get("rayServices", {})) == {svc.inputs["metadata"]["name"] for svc in services}
    for svc in services:
        service_name = svc.inputs["metadata"]["name"]
        assert exports["rayServices"][service_name] == {
            "namespace": namespace,
            "serveService": f"{service_name}-serve-svc",
            "port": 8000,
            "portForwardCommand": f"kubectl port-forward -n {namespace} svc/{service_name}-serve-svc 8000:8000",
        }


def test_hyperpod_gets_the_stuck_pod_cleanup_and_eks_does_not(stack_run: ProgramRun) -> None:
    cronjobs = [
        c for c in stack_run.of_type("kubernetes:batch/v1:CronJob") if c.name == "ray-stuck-pod-cleanup"
    ]
    if stack_run.config["ray-on-eks:clusterType"] != "hyperpod":
        assert cronjobs == []
        return
    (cronjob,) = cronjobs
    pod = cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == KUBECTL_IMAGE and not KUBECTL_IMAGE.endswith(":latest")
    assert "UnexpectedAdmissionError" in container["command"][-1]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] == container["resources"]["limits"]
    role = stack_run.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "ray-cleanup-role")
    assert role.inputs["metadata"]["namespace"] == cronjob.inputs["metadata"]["namespace"]
    assert role.inputs["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]}
    ]
    binding = stack_run.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "ray-cleanup-role-binding")
    assert binding.inputs["subjects"][0]["name"] == pod["serviceAccountName"]
    assert binding.inputs["roleRef"]["name"] == role.inputs["metadata"]["name"]


def test_hyperpod_pins_every_group_including_the_head() -> None:
    run = run_shared("hyperpod")
    for resource in [*run.custom_resources("RayCluster"), *run.custom_resources("RayJob")]:
        spec = resource.inputs["spec"]
        cluster_spec = spec.get("rayClusterSpec", spec)
        if "headGroupSpec" not in cluster_spec:
            continue
        for pod in _cluster_pods(cluster_spec):
            assert pod["nodeSelector"]["sagemaker.amazonaws.com/node-health-status"] == "Schedulable"
            assert pod["nodeSelector"]["node.kubernetes.io/instance-type"].startswith("ml.")


# ---- variants --------------------------------------------------------------------------------------


@pytest.mark.schemas
def test_autoscaler_and_gcs_ft_variant_validates() -> None:
    run = run_program(
        "dev",
        {
            "autoscaler": {"enabled": True, "idleTimeoutSeconds": 30},
            "gcsFaultTolerance": {
                "enabled": True,
                "redisAddress": "redis.example:6379",
                "redisPasswordSecret": {"name": "redis", "key": "password"},
            },
            "exposeDashboards": True,
            "rayJobs": [{"name": "train", "workload": "dt-pytorch", "cluster": "ephemeral"}],
        },
    )
    assert run.error is None, run.error
    spec = _cluster(run).inputs["spec"]
    assert spec["gcsFaultToleranceOptions"]["redisAddress"] == "redis.example:6379"
    assert spec["autoscalerOptions"]["version"] == "v2"
    for kind in RAY_KINDS:
        for resource in run.custom_resources(kind):
            assert validation_errors(_doc(resource)) == []


def test_token_auth_off_drops_the_secret_output() -> None:
    run = run_ok("dev", {"tokenAuth": False})
    assert "authOptions" not in _cluster(run).inputs["spec"]
    assert "rayAuthTokenSecretName" not in run.exports


def test_changing_a_script_renames_the_config_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import components.ray_cluster as module

    before = run_shared("dev")  # the repository's own scripts (nothing is patched yet)
    copy = tmp_path / "repo"
    for path in {p for w in WORKLOADS.values() for p in w.files}:
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / path).write_bytes((REPO / path).read_bytes())
    (copy / "workloads/quickstart/main.py").write_text("print('changed')\n")
    monkeypatch.setattr(module, "REPO_ROOT", copy)
    after = run_program("dev")
    old = before.one("kubernetes:core/v1:ConfigMap", "ray-workloads").inputs["metadata"]["name"]
    new = after.one("kubernetes:core/v1:ConfigMap", "ray-workloads").inputs["metadata"]["name"]
    assert old != new
    volume = _cluster_pods(_cluster(after).inputs["spec"])[0]["volumes"][0]
    assert volume["configMap"]["name"] == new


# ---- bad input: rejected before anything is created ------------------------------------------------

BAD = [
    (
        "unknown workload",
        {"rayJobs": [{"name": "x", "workload": "nope"}]},
        "rayJobs[0].workload",
        "quickstart",
    ),
    (
        "service as a job",
        {"rayJobs": [{"name": "x", "workload": "serve"}]},
        "rayJobs[0].workload",
        "rayServices",
    ),
    (
        "job as a service",
        {"rayServices": [{"name": "x", "workload": "dt-pytorch"}]},
        "rayServices[0].workload",
        "serve",
    ),
    (
        "env outside the contract",
        {"rayJobs": [{"name": "x", "workload": "quickstart", "env": {"EPOCH": "1"}}]},
        "rayJobs[0].env",
        "EPOCHS",
    ),
    (
        "incremental upgrade",
        {"rayServices": [{"name": "x", "upgradeStrategy": "NewClusterWithIncrementalUpgrade"}]},
        "rayServices[0].upgradeStrategy",
        "NewCluster",
    ),
    (
        "secretEnv on the shared cluster",
        {
            "rayJobs": [
                {
                    "name": "x",
                    "workload": "llm-finetune",
                    "secretEnv": {"HF_TOKEN": {"name": "hf", "key": "t"}},
                }
            ]
        },
        "rayJobs[0]",
        "needs cluster: ephemeral",
    ),
    (
        "secretEnv outside the contract",
        {
            "rayJobs": [
                {
                    "name": "x",
                    "workload": "llm-finetune",
                    "cluster": "ephemeral",
                    "secretEnv": {"TOKEN": {"name": "hf", "key": "t"}},
                }
            ]
        },
        "rayJobs[0].secretEnv",
        "HF_TOKEN",
    ),
    (
        "credential as a literal",
        {"rayJobs": [{"name": "x", "workload": "llm-finetune", "env": {"HF_TOKEN": "hf_abc"}}]},
        "rayJobs[0].env",
        "never a literal in stack config",
    ),
    ("long cluster name", {"rayClusterName": "r" * 51}, "rayClusterName", "at most 50"),
    (
        "bad worker group bounds",
        {"workerGroups": [{"name": "g", "instanceType": "g5.xlarge", "replicas": 5, "maxReplicas": 2}]},
        "workerGroups[0]",
        "maxReplicas",
    ),
    (
        "bad worker group name",
        {"workerGroups": [{"name": "GPU_Workers", "instanceType": "g5.xlarge"}]},
        "workerGroups[0].name",
        "DNS label",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_ray_config_is_rejected_before_anything_is_created(
    overrides: dict[str, Any], key: str, fragment: str
) -> None:
    run = run_program("dev", overrides)
    assert run.error is not None
    assert f"ray-on-eks:{key}" in str(run.error)
    assert fragment in str(run.error)
    assert "hf_abc" not in str(run.error)  # a refused credential is never echoed
    assert run.resources == []


def test_hyperpod_head_without_ml_instance_type_is_rejected() -> None:
    run = run_program("hyperpod", {"head": {"cpu": "4", "memory": "16Gi"}})
    assert run.error is not None
    assert "ray-on-eks:head.instanceType" in str(run.error) and "ml." in str(run.error)
    assert run.resources == []


# ---- the component's hooks (volumes, head env, IRSA annotation) -----------------------------------


def _hooked_program() -> None:
    RayClusterStack(
        "ray",
        RayClusterStackArgs(
            cluster_type="eks",
            namespace="ray",
            ray_cluster_name="ray",
            head=HeadConfig(),
            worker_groups=[WorkerGroupConfig(name="cpu", instance_type="m6i.2xlarge")],
            ray_jobs=[RayJobConfig(name="train", workload="dt-pytorch")],
            volumes=[
                SharedVolume(
                    name="fsx",
                    mount_path=contract.FSX_MOUNT_PATH,
                    claim_spec={"accessModes": ["ReadWriteMany"], "storageClassName": "fsx"},
                ),
                SharedVolume(name="s3", mount_path=contract.S3_MOUNT_PATH, claim_spec={}, read_only=True),
            ],
            storage_path="/fsx/ray-results",
            head_env={"RAY_GRAFANA_HOST": pulumi.Output.from_input("http://grafana.monitoring")},
            service_account_annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ray"},
            retain_data=True,
        ),
    )


def test_volumes_head_env_and_service_account_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi_harness, "_run_main", _hooked_program)
    run = run_ok("dev")
    claims = {
        c.inputs["metadata"]["name"]: c for c in run.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    }
    assert set(claims) == {claim_name("fsx"), claim_name("s3")}
    assert claims["fsx-claim"].inputs["spec"]["storageClassName"] == "fsx"
    assert claims["fsx-claim"].retain_on_delete
    cluster = _cluster(run)
    for claim in claims.values():
        assert claim.urn in cluster.dependencies
    head, worker = _cluster_pods(cluster.inputs["spec"])
    for pod in (head, worker):
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["/fsx"]["readOnly"] is False
        assert mounts["/s3"]["readOnly"] is True
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["STORAGE_PATH"] == "/fsx/ray-results"
    head_env = {e["name"]: e.get("value") for e in head["containers"][0]["env"]}
    assert head_env["RAY_GRAFANA_HOST"] == "http://grafana.monitoring"
    account = run.one("kubernetes:core/v1:ServiceAccount", "ray-service-account")
    assert account.inputs["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ray"
    }
    (job,) = run.custom_resources("RayJob")
    assert (
        yaml.safe_load(job.inputs["spec"]["runtimeEnvYAML"])["env_vars"]["STORAGE_PATH"] == "/fsx/ray-results"
    )


def test_every_cluster_runs_the_pinned_ray_version(stack_run: ProgramRun) -> None:
    specs = [_cluster(stack_run).inputs["spec"]]
    for kind in ("RayJob", "RayService"):
        for resource in stack_run.custom_resources(kind):
            spec = resource.inputs["spec"]
            specs += [s for s in (spec.get("rayClusterSpec"), spec.get("rayClusterConfig")) if s]
    for spec in specs:
        assert spec["rayVersion"] == RAY_VERSION
        for pod in _cluster_pods(spec):
            for container in pod["containers"]:
                assert container["image"].split(":")[1].startswith(f"{RAY_VERSION}-"), container["image"]


def test_no_jobs_or_services_means_no_code_volume() -> None:
    run = run_ok("dev", {"rayJobs": [], "rayServices": []})
    assert [c for c in run.of_type("kubernetes:core/v1:ConfigMap") if c.name == "ray-workloads"] == []
    for pod in _cluster_pods(_cluster(run).inputs["spec"]):
        assert all("configMap" not in v for v in pod.get("volumes", []))
        assert {"name": "PYTHONPATH", "value": "/opt/ray-on-eks"} in pod["containers"][0]["env"]


def _output_hooked_program() -> None:
    # The shapes the storage components produce: STORAGE_PATH from a generated bucket name and the
    # IRSA annotation as an Output of the whole mapping.
    RayClusterStack(
        "ray",
        RayClusterStackArgs(
            cluster_type="eks",
            namespace="ray",
            ray_cluster_name="ray",
            head=HeadConfig(),
            worker_groups=[WorkerGroupConfig(name="cpu", instance_type="m6i.2xlarge")],
            ray_jobs=[RayJobConfig(name="train", workload="dt-pytorch")],
            ray_services=[RayServiceConfig(name="digits")],
            storage_path=pulumi.Output.from_input("s3://bucket-1234/ray-results"),
            service_account_annotations=pulumi.Output.from_input(
                {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ray"}
            ),
        ),
    )


def test_storage_path_and_annotations_may_be_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi_harness, "_run_main", _output_hooked_program)
    run = run_ok("dev")
    cluster = _cluster(run)
    assert cluster.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.state}=ready"
    for pod in _cluster_pods(cluster.inputs["spec"]):
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["STORAGE_PATH"] == "s3://bucket-1234/ray-results"
    (job,) = run.custom_resources("RayJob")
    assert cluster.urn in job.dependencies
    runtime_env = yaml.safe_load(job.inputs["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["STORAGE_PATH"] == "s3://bucket-1234/ray-results"
    (service,) = run.custom_resources("RayService")
    serve = yaml.safe_load(service.inputs["spec"]["serveConfigV2"])
    assert (
        serve["applications"][0]["runtime_env"]["env_vars"]["STORAGE_PATH"] == "s3://bucket-1234/ray-results"
    )
    account = run.one("kubernetes:core/v1:ServiceAccount", "ray-service-account")
    assert account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/ray")


def test_own_code_job_ships_in_the_config_map_and_runs_from_it() -> None:
    job = {
        "name": "hello",
        "code": "examples/hello_ray",
        "entrypoint": "python main.py",
        "env": {"GREETING": "hi"},
    }
    run = run_ok("dev", {"rayJobs": [job], "rayServices": []})
    config_map = run.one("kubernetes:core/v1:ConfigMap", "ray-workloads")
    data = config_map.inputs["data"]
    assert data["code--hello--main.py"].encode() == (REPO / "examples/hello_ray/main.py").read_bytes()
    (ray_job,) = run.custom_resources("RayJob")
    spec = ray_job.inputs["spec"]
    assert spec["entrypoint"] == f"cd {WORKLOADS_MOUNT_PATH}/code/hello && python main.py"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env["GREETING"] == "hi" and env["PYTHONPATH"].startswith(f"{WORKLOADS_MOUNT_PATH}/code/hello:")
    for pod in _cluster_pods(_cluster(run).inputs["spec"]):
        volume = next(v for v in pod["volumes"] if v.get("configMap"))
        assert {"key": "code--hello--main.py", "path": "code/hello/main.py"} in volume["configMap"]["items"]
    # A code change changes the ConfigMap's content-hashed name (and so rolls the pods).
    other = run_ok("dev", {"rayJobs": [{**job, "code": "workloads/quickstart"}], "rayServices": []})
    renamed = other.one("kubernetes:core/v1:ConfigMap", "ray-workloads").inputs["metadata"]["name"]
    assert renamed != config_map.inputs["metadata"]["name"]


def test_own_serve_app_ships_in_the_config_map_with_its_import_path() -> None:
    service = {"name": "hello", "code": "examples/hello_serve", "importPath": "app:deployment"}
    run = run_ok("dev", {"rayJobs": [], "rayServices": [service]})
    data = run.one("kubernetes:core/v1:ConfigMap", "ray-workloads").inputs["data"]
    assert data["code--hello--app.py"].encode() == (REPO / "examples/hello_serve/app.py").read_bytes()
    (ray_service,) = run.custom_resources("RayService")
    (application,) = yaml.safe_load(ray_service.inputs["spec"]["serveConfigV2"])["applications"]
    assert application["import_path"] == "app:deployment" and "deployments" not in application
    assert application["runtime_env"]["env_vars"]["PYTHONPATH"].startswith(
        f"{WORKLOADS_MOUNT_PATH}/code/hello:"
    )
    assert run.exports["rayServices"]["hello"]["serveService"] == "hello-serve-svc"


def test_the_cluster_is_force_applied_exactly_when_the_autoscaler_is_on(stack_run: ProgramRun) -> None:
    """Issue 11, defect 5: see tests/components/builders/test_ray_ownership.py for why."""
    autoscaler = json.loads(stack_run.config.get("ray-on-eks:autoscaler", "{}")).get("enabled", False)
    annotations = _cluster(stack_run).inputs["metadata"].get("annotations") or {}
    assert (annotations.get("pulumi.com/patchForce") == "true") is autoscaler
    for kind in ("RayJob", "RayService"):
        for resource in stack_run.custom_resources(kind):
            assert "pulumi.com/patchForce" not in (resource.inputs["metadata"].get("annotations") or {})

"""KubeRay manifest builders: pure functions, no mocks. Schema checks use the real v1.7.0 CRDs."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import contract
from components.builders.placement import GPU_TAINT_KEY, HYPERPOD_HEALTH_LABEL, INSTANCE_TYPE_LABEL
from components.builders.ray import (
    AUTOSCALER_RESOURCES,
    EFA_RESOURCE,
    GPU_RESOURCE,
    PATCH_FORCE,
    WAIT_FOR_READY,
    ClaimMount,
    ClusterShape,
    PodContext,
    build_ray_cluster,
    build_ray_cluster_spec,
    build_ray_job,
    build_ray_service,
    build_submitter_template,
    build_workloads_config_map_data,
    config_map_key,
    content_hash,
    port_forward_command,
    read_workload_files,
    run_env,
    workload_files,
)
from components.config import (
    AutoscalerConfig,
    GcsFaultToleranceConfig,
    HeadConfig,
    RayJobConfig,
    RayServiceConfig,
    WorkerGroupConfig,
)
from components.versions import RAY_VERSION, ray_image
from tests.kuberay_schemas import validation_errors
from tests.kuberay_validation import validate
from tests.pulumi_harness import REPO
from workloads.catalog import CODE_ROOT, WORKLOADS, WORKLOADS_MOUNT_PATH, get_workload
from workloads.serve.config import build_serve_config

CPU = WorkerGroupConfig(name="cpu", instance_type="m6i.2xlarge", replicas=1, min_replicas=1, max_replicas=3)
GPU = WorkerGroupConfig(
    name="gpu", instance_type="g5.12xlarge", replicas=0, max_replicas=2, gpus=4, efa_devices=1, cpu="40"
)
HP_GPU = GPU.model_copy(update={"instance_type": "ml.g5.12xlarge"})


def _shape(**changes: Any) -> ClusterShape:
    base: dict[str, Any] = {
        "cluster_type": "eks",
        "head": HeadConfig(),
        "worker_groups": (CPU, GPU),
    }
    base.update(changes)
    return ClusterShape(**base)


PODS = PodContext(
    workloads_config_map="ray-workloads-abc",
    workloads_items=(("catalog.py", "catalog.py"),),
    claims=(ClaimMount(volume_name="fsx", claim_name="fsx-claim", mount_path=contract.FSX_MOUNT_PATH),),
    storage_path="/fsx/ray-results",
    head_env={"RAY_GRAFANA_HOST": "http://grafana.monitoring:80"},
)


def _pods(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Pod specs of the head and every worker group of a cluster spec."""
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        group["template"]["spec"] for group in spec["workerGroupSpecs"]
    ]


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for pod in _pods(spec) for c in pod["containers"]]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# ---- versions and images --------------------------------------------------------------------------


def test_ray_version_matches_every_image_tag() -> None:
    spec = build_ray_cluster_spec(_shape(), PODS)
    assert spec["rayVersion"] == RAY_VERSION
    for container in _containers(spec):
        tag = container["image"].split(":", 1)[1]
        assert tag.split("-")[0] == spec["rayVersion"], container["image"]


def test_gpu_groups_use_the_gpu_image_from_the_configured_repository() -> None:
    repo = "123456789012.dkr.ecr.us-west-2.amazonaws.com/ray"
    spec = build_ray_cluster_spec(_shape(image_repository=repo), PODS)
    head, cpu, gpu = _containers(spec)
    assert head["image"] == ray_image(gpu=False, repository=repo)
    assert cpu["image"] == ray_image(gpu=False, repository=repo)
    assert gpu["image"] == ray_image(gpu=True, repository=repo)


# ---- head ------------------------------------------------------------------------------------------


def test_head_is_a_coordinator_with_dashboard_on_cluster_ip() -> None:
    head = build_ray_cluster_spec(_shape(), PODS)["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert head["serviceType"] == "ClusterIP"
    (container,) = head["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["dashboard"] == 8265
    assert ports[contract.RAY_METRICS_PORT_NAME] == contract.RAY_METRICS_PORT
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert "ray stop" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])


def test_head_num_cpus_follows_config() -> None:
    head = build_ray_cluster_spec(_shape(head=HeadConfig(num_cpus=4)), PODS)["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "4"


def test_dashboard_is_not_exposed_by_default_and_only_internally_when_asked() -> None:
    default = build_ray_cluster_spec(_shape(), PODS)
    assert default["headGroupSpec"]["serviceType"] not in {"LoadBalancer", "NodePort"}
    assert "headServiceAnnotations" not in default
    exposed = build_ray_cluster_spec(_shape(expose_dashboards=True), PODS)
    assert exposed["headGroupSpec"]["serviceType"] == "LoadBalancer"
    assert exposed["headServiceAnnotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == (
        "internal"
    )


def test_head_env_goes_to_the_head_only_and_common_env_everywhere() -> None:
    spec = build_ray_cluster_spec(_shape(), PODS)
    head, *workers = _containers(spec)
    assert _env(head)["RAY_GRAFANA_HOST"] == "http://grafana.monitoring:80"
    for container in [head, *workers]:
        assert _env(container)["PYTHONPATH"] == CODE_ROOT
        assert _env(container)["STORAGE_PATH"] == "/fsx/ray-results"
    for container in workers:
        assert "RAY_GRAFANA_HOST" not in _env(container)


def test_no_storage_path_means_no_storage_env() -> None:
    spec = build_ray_cluster_spec(_shape(), PodContext())
    for container in _containers(spec):
        assert "STORAGE_PATH" not in _env(container)
        assert _env(container)["PYTHONPATH"] == CODE_ROOT


def test_workload_code_and_claims_are_mounted_in_every_ray_container() -> None:
    spec = build_ray_cluster_spec(_shape(), PODS)
    for pod in _pods(spec):
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["workloads"]["configMap"]["name"] == "ray-workloads-abc"
        assert volumes["fsx"]["persistentVolumeClaim"]["claimName"] == "fsx-claim"
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[WORKLOADS_MOUNT_PATH]["readOnly"] is True
        assert mounts[contract.FSX_MOUNT_PATH]["name"] == "fsx"


# ---- workers -----------------------------------------------------------------------------------------


def test_worker_groups_carry_size_bounds_and_metrics_port() -> None:
    groups = build_ray_cluster_spec(_shape(), PODS)["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["cpu", "gpu"]
    cpu = groups[0]
    assert (cpu["replicas"], cpu["minReplicas"], cpu["maxReplicas"]) == (1, 1, 3)
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == 8080
        assert container["resources"]["requests"] == container["resources"]["limits"]


def test_gpu_groups_request_gpus_efa_and_tolerate_the_gpu_taint() -> None:
    cpu, gpu = build_ray_cluster_spec(_shape(), PODS)["workerGroupSpecs"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits[GPU_RESOURCE] == 4
    assert limits[EFA_RESOURCE] == 1
    assert {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in gpu["template"]["spec"][
        "tolerations"
    ]
    cpu_limits = cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert GPU_RESOURCE not in cpu_limits and EFA_RESOURCE not in cpu_limits
    assert "tolerations" not in cpu["template"]["spec"]


def test_user_tolerations_and_node_selector_are_kept() -> None:
    group = CPU.model_validate(
        {
            **CPU.model_dump(by_alias=True),
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ray", "effect": "NoSchedule"}
            ],
            "nodeSelector": {"team": "ml", INSTANCE_TYPE_LABEL: "overridden"},
        }
    )
    (spec,) = build_ray_cluster_spec(_shape(worker_groups=(group,)), PODS)["workerGroupSpecs"]
    pod = spec["template"]["spec"]
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ray", "effect": "NoSchedule"}
    ]
    # The configured instance type wins over a conflicting user label.
    assert pod["nodeSelector"] == {"team": "ml", INSTANCE_TYPE_LABEL: "m6i.2xlarge"}


def test_hyperpod_pins_every_group_including_the_head_to_healthy_ml_nodes() -> None:
    shape = _shape(
        cluster_type="hyperpod",
        head=HeadConfig(instance_type="ml.m5.2xlarge"),
        worker_groups=(HP_GPU,),
    )
    spec = build_ray_cluster_spec(shape, PODS)
    pods = _pods(spec)
    assert len(pods) == 2
    for pod in pods:
        assert pod["nodeSelector"][HYPERPOD_HEALTH_LABEL] == "Schedulable"
        assert pod["nodeSelector"][INSTANCE_TYPE_LABEL].startswith("ml.")


def test_eks_pods_have_no_hyperpod_label() -> None:
    for pod in _pods(build_ray_cluster_spec(_shape(), PODS)):
        assert HYPERPOD_HEALTH_LABEL not in pod.get("nodeSelector", {})


# ---- security -------------------------------------------------------------------------------------


def _assert_non_root(pod: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    for container in containers:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 1000
        assert context["allowPrivilegeEscalation"] is False
        assert context.get("privileged", False) is False
        assert context["capabilities"]["drop"] == ["ALL"]
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), container["name"]


def test_every_ray_pod_is_non_root_with_cpu_and_memory_requests_and_limits() -> None:
    spec = build_ray_cluster_spec(_shape(autoscaler=AutoscalerConfig(enabled=True)), PODS)
    for pod in _pods(spec):
        _assert_non_root(pod, pod["containers"])
        assert pod["serviceAccountName"] == contract.RAY_SERVICE_ACCOUNT
    autoscaler = spec["autoscalerOptions"]
    assert autoscaler["securityContext"]["runAsNonRoot"] is True
    assert autoscaler["securityContext"]["allowPrivilegeEscalation"] is False
    assert autoscaler["resources"] == {"requests": AUTOSCALER_RESOURCES, "limits": AUTOSCALER_RESOURCES}


def test_only_the_autoscaling_head_mounts_a_service_account_token() -> None:
    plain = build_ray_cluster_spec(_shape(), PODS)
    assert all(pod["automountServiceAccountToken"] is False for pod in _pods(plain))
    scaled = build_ray_cluster_spec(_shape(autoscaler=AutoscalerConfig(enabled=True)), PODS)
    head, *workers = _pods(scaled)
    assert head["automountServiceAccountToken"] is True
    assert all(pod["automountServiceAccountToken"] is False for pod in workers)


# ---- cluster options ---------------------------------------------------------------------------------


def test_token_auth_is_on_by_default_and_can_be_turned_off() -> None:
    assert ClusterShape(cluster_type="eks", head=HeadConfig(), worker_groups=(CPU,)).token_auth is True
    assert build_ray_cluster_spec(_shape(), PODS)["authOptions"] == {"mode": "token"}
    assert "authOptions" not in build_ray_cluster_spec(_shape(token_auth=False), PODS)


def test_autoscaler_v2_owns_replicas() -> None:
    autoscaler = AutoscalerConfig(enabled=True, idle_timeout_seconds=120, upscaling_mode="Aggressive")
    spec = build_ray_cluster_spec(_shape(autoscaler=autoscaler), PODS)
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == 120
    assert spec["autoscalerOptions"]["upscalingMode"] == "Aggressive"
    for group in spec["workerGroupSpecs"]:
        assert "replicas" not in group
    for pod in _pods(spec):
        assert pod["restartPolicy"] == "Never"


def test_autoscaler_off_by_default() -> None:
    spec = build_ray_cluster_spec(_shape(), PODS)
    assert "enableInTreeAutoscaling" not in spec and "autoscalerOptions" not in spec
    assert all("restartPolicy" not in pod for pod in _pods(spec))


def _gcs_ft() -> GcsFaultToleranceConfig:
    return GcsFaultToleranceConfig.model_validate(
        {
            "enabled": True,
            "redisAddress": "redis.example:6379",
            "redisPasswordSecret": {"name": "redis-password", "key": "password"},
        }
    )


def test_gcs_fault_tolerance_uses_external_redis_with_password_from_a_secret() -> None:
    spec = build_ray_cluster_spec(_shape(gcs_fault_tolerance=_gcs_ft()), PODS)
    assert spec["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis.example:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis-password", "key": "password"}}},
    }
    assert "gcsFaultToleranceOptions" not in build_ray_cluster_spec(_shape(), PODS)


def test_stack_cluster_waits_for_ready_and_recreates_pods_on_template_change() -> None:
    doc = build_ray_cluster(name="ray", namespace="ray", shape=_shape(), pods=PODS)
    assert doc["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.state}=ready"
    assert doc["metadata"]["annotations"] == WAIT_FOR_READY
    assert doc["spec"]["upgradeStrategy"] == {"type": "Recreate"}


def test_only_the_autoscaled_stack_cluster_is_applied_with_patch_force() -> None:
    """Issue 11, defect 5: the autoscaler co-owns workerGroupSpecs (see test_ray_ownership.py)."""
    autoscaled = _shape(autoscaler=AutoscalerConfig(enabled=True))
    doc = build_ray_cluster(name="ray", namespace="ray", shape=autoscaled, pods=PODS)
    assert doc["metadata"]["annotations"] == {**WAIT_FOR_READY, **PATCH_FORCE}
    static = build_ray_cluster(name="ray", namespace="ray", shape=_shape(), pods=PODS)
    assert "pulumi.com/patchForce" not in static["metadata"]["annotations"]
    # The clusters of RayJobs and RayServices are KubeRay's to apply and the autoscaler's to patch.
    job = build_ray_job(
        job=_job(cluster="ephemeral"),
        workload=get_workload("dt-pytorch"),
        namespace="ray",
        cluster_name="ray",
        shape=autoscaled,
        pods=PODS,
    )
    service = _service_doc(autoscaler=AutoscalerConfig(enabled=True))
    for other in (job, service):
        assert "pulumi.com/patchForce" not in (other["metadata"].get("annotations") or {})


def test_exposed_resources_are_declared_to_the_policy_pack() -> None:
    """Issue 11, defect 8: exactly the resources whose head Service becomes a LoadBalancer."""
    for expose in (False, True):
        shape = _shape(expose_dashboards=expose)
        docs = {
            "cluster": build_ray_cluster(name="ray", namespace="ray", shape=shape, pods=PODS),
            "ephemeral-job": build_ray_job(
                job=_job(cluster="ephemeral"),
                workload=get_workload("dt-pytorch"),
                namespace="ray",
                cluster_name="ray",
                shape=shape,
                pods=PODS,
            ),
            "service": _service_doc(expose_dashboards=expose),
        }
        for name, doc in docs.items():
            spec = doc["spec"].get("rayClusterSpec") or doc["spec"].get("rayClusterConfig") or doc["spec"]
            exposed = spec["headGroupSpec"]["serviceType"] == "LoadBalancer"
            annotations = doc["metadata"].get("annotations") or {}
            assert exposed is expose, name
            assert (annotations.get(contract.EXPOSE_DASHBOARDS_ANNOTATION) == "true") is expose, name
    shared = build_ray_job(
        job=_job(),
        workload=get_workload("dt-pytorch"),
        namespace="ray",
        cluster_name="ray",
        shape=_shape(expose_dashboards=True),
        pods=PODS,
    )
    assert "annotations" not in shared["metadata"], "a shared job exposes nothing of its own"


def test_port_forward_command_targets_the_head_service() -> None:
    assert port_forward_command("ray", "ray") == "kubectl port-forward -n ray svc/ray-head-svc 8265:8265"


# ---- workload ConfigMap --------------------------------------------------------------------------


def test_config_map_data_is_byte_identical_to_the_workload_files() -> None:
    paths = workload_files(WORKLOADS.values())
    data, items = build_workloads_config_map_data(read_workload_files(paths, REPO))
    assert len(data) == len(paths) == len(items)
    by_key = {item["key"]: item["path"] for item in items}
    for path in paths:
        key = config_map_key(path)
        assert re.match(r"^[-._a-zA-Z0-9]+$", key), key
        assert data[key].encode("utf-8") == (REPO / path).read_bytes()
        # Mounted at WORKLOADS_MOUNT_PATH, the item path recreates the repo layout.
        assert f"{WORKLOADS_MOUNT_PATH}/{by_key[key]}" == f"{CODE_ROOT}/{path}"


def test_content_hash_changes_with_any_byte() -> None:
    data = {"a.py": "print(1)\n", "b.py": "x = 2\n"}
    changed = {**data, "b.py": "x = 3\n"}
    assert content_hash(data) == content_hash(dict(reversed(list(data.items()))))
    assert content_hash(data) != content_hash(changed)


def test_files_outside_workloads_are_refused() -> None:
    with pytest.raises(ValueError, match="not under workloads/"):
        config_map_key("components/config.py")


# ---- RayJob / RayService --------------------------------------------------------------------------


def _job(**fields: Any) -> RayJobConfig:
    return RayJobConfig.model_validate({"name": "train", "workload": "dt-pytorch", **fields})


def test_shared_job_targets_the_stack_cluster() -> None:
    job = _job(env={"EPOCHS": "3"}, activeDeadlineSeconds=600)
    workload = get_workload("dt-pytorch")
    doc = build_ray_job(
        job=job, workload=workload, namespace="ray", cluster_name="ray", shape=_shape(), pods=PODS
    )
    spec = doc["spec"]
    assert spec["entrypoint"] == workload.entrypoint()
    assert spec["clusterSelector"] == {contract.RAY_CLUSTER_LABEL: "ray"}
    assert "rayClusterSpec" not in spec
    assert spec["activeDeadlineSeconds"] == 600
    # KubeRay v1.7.0 refuses backoffLimit > 0 with clusterSelector; the field is not written at all.
    assert "backoffLimit" not in spec
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["EPOCHS"] == "3"
    assert runtime_env["env_vars"]["STORAGE_PATH"] == "/fsx/ray-results"
    assert runtime_env["env_vars"]["NUM_WORKERS"] == workload.env_defaults["NUM_WORKERS"]
    assert runtime_env["pip"] == list(workload.pip)
    assert "working_dir" not in runtime_env


def test_a_shared_job_with_retries_is_refused() -> None:
    with pytest.raises(ValueError, match="backoffLimit needs cluster: ephemeral"):
        build_ray_job(
            job=_job(backoffLimit=1),
            workload=get_workload("dt-pytorch"),
            namespace="ray",
            cluster_name="ray",
            shape=_shape(),
            pods=PODS,
        )


def test_ephemeral_job_gets_its_own_cluster_that_shuts_down() -> None:
    job = _job(cluster="ephemeral", ttlSecondsAfterFinished=600, backoffLimit=2)
    doc = build_ray_job(
        job=job,
        workload=get_workload("dt-pytorch"),
        namespace="ray",
        cluster_name="ray",
        shape=_shape(gcs_fault_tolerance=_gcs_ft()),
        pods=PODS,
    )
    spec = doc["spec"]
    assert "clusterSelector" not in spec
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["backoffLimit"] == 2
    assert spec["rayClusterSpec"]["rayVersion"] == RAY_VERSION
    assert "gcsFaultToleranceOptions" not in spec["rayClusterSpec"]
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}


def test_job_submitter_is_non_root_and_sized() -> None:
    doc = build_ray_job(
        job=_job(),
        workload=get_workload("quickstart"),
        namespace="ray",
        cluster_name="ray",
        shape=_shape(),
        pods=PODS,
    )
    template = doc["spec"]["submitterPodTemplate"]
    _assert_non_root(template["spec"], template["spec"]["containers"])
    quickstart_env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
    assert "pip" not in quickstart_env  # nothing beyond the stock image


def test_user_storage_path_override_wins() -> None:
    env = run_env(get_workload("dt-pytorch"), {"STORAGE_PATH": "s3://other/x"}, "/fsx/ray-results")
    assert env["STORAGE_PATH"] == "s3://other/x"


def test_service_workload_is_refused_as_a_job() -> None:
    with pytest.raises(ValueError, match="is a service, not a job"):
        build_ray_job(
            job=RayJobConfig.model_construct(name="x", workload="serve", cluster="shared", env={}),
            workload=get_workload("serve"),
            namespace="ray",
            cluster_name="ray",
            shape=_shape(),
            pods=PODS,
        )


def _service_doc(**changes: Any) -> dict[str, Any]:
    service = RayServiceConfig(name="digits", num_replicas=2)
    workload = get_workload("serve")
    env = run_env(workload, service.env, PODS.storage_path)
    return build_ray_service(
        service=service,
        workload=workload,
        namespace="ray",
        shape=_shape(**changes),
        pods=PODS,
        serve_config=build_serve_config(env=env, num_replicas=service.num_replicas, pip=workload.pip),
    )


def test_ray_service_serves_from_mounted_code_with_the_same_cluster_builder() -> None:
    doc = _service_doc()
    spec = doc["spec"]
    serve = yaml.safe_load(spec["serveConfigV2"])
    (app,) = serve["applications"]
    assert app["import_path"] == "workloads.serve.app:app"
    assert app["deployments"][0]["num_replicas"] == 2
    assert app["runtime_env"]["env_vars"]["STORAGE_PATH"] == "/fsx/ray-results"
    assert "working_dir" not in app["runtime_env"]  # code comes from the ConfigMap, not a zip
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}
    assert spec["rayClusterConfig"]["rayVersion"] == RAY_VERSION
    head_ports = {
        p["name"]
        for p in spec["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert "serve" in head_ports


def _container_env(spec: dict[str, Any]) -> list[dict[str, str]]:
    """The env of the head's and every worker group's Ray container (in that order)."""
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [
        {e["name"]: e.get("value") for e in group["template"]["spec"]["containers"][0]["env"]}
        for group in groups
    ]


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            RayServiceConfig(name="digits"),
            {
                "RAY_SERVE_ENABLE_HA_PROXY": "1",
                "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
            },
        ),
        (
            RayServiceConfig(name="own", code="examples/hello_serve", import_path="app:deployment"),
            {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
        ),
        (RayServiceConfig(name="digits", high_throughput_ingress=False), {}),
    ],
    ids=["catalog", "own-code", "off"],
)
def test_ray_service_containers_carry_the_serve_ingress_env(
    service: RayServiceConfig, expected: dict[str, str]
) -> None:
    """HAProxy + direct ingress on every Ray container of a RayService (HAProxy runs on every node);
    only the catalog's pure-inference apps let HAProxy replay a request a dying replica dropped."""
    workload = get_workload("serve")
    doc = build_ray_service(
        service=service,
        workload=workload,
        namespace="ray",
        shape=_shape(),
        pods=PODS,
        serve_config=build_serve_config(env=run_env(workload, {}, PODS.storage_path), num_replicas=1),
    )
    envs = _container_env(doc["spec"]["rayClusterConfig"])
    assert len(envs) >= 2  # the head and at least one worker group
    for env in envs:
        assert {k: v for k, v in env.items() if k.startswith("RAY_SERVE_")} == expected
    # A RayCluster (no Serve) never gets them.
    plain = build_ray_cluster(name="ray", namespace="ray", shape=_shape(), pods=PODS)
    for env in _container_env(plain["spec"]):
        assert not any(name.startswith("RAY_SERVE_") for name in env)


# ---- schema validation of the variants ---------------------------------------------------------


def _variants() -> dict[str, dict[str, Any]]:
    autoscaled = _shape(autoscaler=AutoscalerConfig(enabled=True))
    hyperpod = _shape(
        cluster_type="hyperpod", head=HeadConfig(instance_type="ml.m5.2xlarge"), worker_groups=(HP_GPU,)
    )
    return {
        "plain": build_ray_cluster(name="ray", namespace="ray", shape=_shape(), pods=PODS),
        "autoscaler": build_ray_cluster(name="ray", namespace="ray", shape=autoscaled, pods=PODS),
        "gcs-ft": build_ray_cluster(
            name="ray", namespace="ray", shape=_shape(gcs_fault_tolerance=_gcs_ft()), pods=PODS
        ),
        "exposed-no-auth": build_ray_cluster(
            name="ray",
            namespace="ray",
            shape=_shape(expose_dashboards=True, token_auth=False),
            pods=PodContext(),
        ),
        "hyperpod": build_ray_cluster(name="ray", namespace="ray", shape=hyperpod, pods=PODS),
        "ephemeral-job": build_ray_job(
            job=_job(cluster="ephemeral", activeDeadlineSeconds=100),
            workload=get_workload("dt-pytorch"),
            namespace="ray",
            cluster_name="ray",
            shape=autoscaled,
            pods=PODS,
        ),
        "shared-job": build_ray_job(
            job=_job(),
            workload=get_workload("quickstart"),
            namespace="ray",
            cluster_name="ray",
            shape=_shape(),
            pods=PODS,
        ),
        "service": _service_doc(),
        "service-autoscaled-gcs-ft": _service_doc(
            autoscaler=AutoscalerConfig(enabled=True), gcs_fault_tolerance=_gcs_ft()
        ),
    }


@pytest.mark.schemas
@pytest.mark.parametrize("variant", list(_variants()))
def test_variant_validates_against_the_kuberay_crd(variant: str) -> None:
    problems = validation_errors(_variants()[variant])
    assert problems == []


@pytest.mark.parametrize("variant", list(_variants()))
def test_variant_passes_kuberays_own_validation(variant: str) -> None:
    assert validate(_variants()[variant]) == []


@pytest.mark.schemas
@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d["spec"]["headGroupSpec"].update(rayStartParam={}), "rayStartParam"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"), "groupName"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas="one"), "minReplicas"),
        (lambda d: d["spec"].update(authOptions={"mode": "password"}), "authOptions"),
        (lambda d: d["spec"]["autoscalerOptions"].update(version="v3"), "autoscalerOptions"),
        (lambda d: d.update(apiVersion="ray.io/v1alpha1"), "apiVersion"),
    ],
)
def test_schema_validation_rejects_a_broken_document(breakage: Any, expected: str) -> None:
    doc = copy.deepcopy(_variants()["autoscaler"])
    breakage(doc)
    problems = validation_errors(doc)
    assert problems, "a broken RayCluster passed validation"
    assert any(expected in p for p in problems), problems


# --- own code from rayJobs[].code -----------------------------------------------------------------


def test_own_code_job_runs_from_its_mounted_directory_with_any_env() -> None:
    from components.builders.ray import job_workload, own_code_mount_path

    job = RayJobConfig.model_validate(
        {
            "name": "mine",
            "code": "examples/hello_ray",
            "entrypoint": "python main.py",
            "env": {"GREETING": "hi"},
        }
    )
    workload = job_workload(job)
    doc = build_ray_job(
        job=job, workload=workload, namespace="ray", cluster_name="ray", shape=_shape(), pods=PODS
    )
    spec = doc["spec"]
    directory = own_code_mount_path("mine")
    assert directory == f"{WORKLOADS_MOUNT_PATH}/code/mine"
    assert spec["entrypoint"] == f"cd {directory} && python main.py"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env == {
        "GREETING": "hi",
        "PYTHONPATH": f"{directory}:{CODE_ROOT}",
        "STORAGE_PATH": "/fsx/ray-results",
    }
    assert validation_errors(doc) == []


def test_own_code_goes_into_the_config_map_under_code(tmp_path: Path) -> None:
    from components.builders.ray import add_own_code, build_workloads_config_map_data, read_own_code

    project = tmp_path / "jobs" / "mine"
    (project / "pkg" / "__pycache__").mkdir(parents=True)
    (project / "main.py").write_text("import pkg.util\n")
    (project / "pkg" / "util.py").write_text("X = 1\n")
    (project / "pkg" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\x00\xff")
    (project / ".env").write_text("SECRET=1\n")
    files = read_own_code("jobs/mine", tmp_path)
    assert files == {"main.py": "import pkg.util\n", "pkg/util.py": "X = 1\n"}
    data, items = build_workloads_config_map_data({"workloads/catalog.py": "# catalog\n"})
    add_own_code(data, items, job_name="mine", code_dir="jobs/mine", files=files)
    assert data["code--mine--pkg--util.py"] == "X = 1\n"
    assert {"key": "code--mine--pkg--util.py", "path": "code/mine/pkg/util.py"} in items
    (project / "weights.bin").write_bytes(b"\x00\xff\xfe")
    with pytest.raises(
        ValueError, match=r"weights.bin is not UTF-8 text .* `python -m workloads submit jobs/mine"
    ):
        read_own_code("jobs/mine", tmp_path)


def test_config_map_over_the_limit_names_the_alternative() -> None:
    from components.builders.ray import CONFIG_MAP_LIMIT_BYTES, check_config_map_size

    assert check_config_map_size({"a": "x" * 1000}, what="the ConfigMap") == 1001
    with pytest.raises(ValueError) as caught:
        check_config_map_size({"big": "x" * CONFIG_MAP_LIMIT_BYTES}, what="the workloads ConfigMap")
    message = str(caught.value)
    assert "Kubernetes refuses objects over 1 MiB" in message
    assert "python -m workloads submit DIR --stack <stack> --entrypoint CMD" in message


# ---- HyperPod pinning, images and accelerators ---------------------------------------------------


def test_submitters_are_pinned_on_hyperpod_and_free_on_eks() -> None:
    hyperpod = _shape(
        cluster_type="hyperpod", head=HeadConfig(instance_type="ml.m5.2xlarge"), worker_groups=(HP_GPU,)
    )
    submitter = build_submitter_template(hyperpod, PODS)["spec"]
    assert submitter["nodeSelector"] == {HYPERPOD_HEALTH_LABEL: "Schedulable"}
    assert "nodeSelector" not in build_submitter_template(_shape(), PODS)["spec"]


def test_group_and_head_images_override_the_default_and_the_submitter_follows_the_head() -> None:
    image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/ray-cuda:2.60.0-cu128"
    head_image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/ray:2.60.0@sha256:" + "a" * 64
    shape = _shape(
        head=HeadConfig(image=head_image), worker_groups=(CPU, GPU.model_copy(update={"image": image}))
    )
    spec = build_ray_cluster_spec(shape, PODS)
    images = [pod["containers"][0]["image"] for pod in _pods(spec)]
    assert images == [head_image, ray_image(gpu=False), image]
    submitter = build_submitter_template(shape, PODS)["spec"]["containers"][0]
    assert submitter["image"] == head_image


def test_shm_is_sized_from_config_and_only_on_accelerator_groups() -> None:
    sized = GPU.model_copy(update={"shm_size": "4Gi"})
    spec = build_ray_cluster_spec(_shape(worker_groups=(CPU, sized)), PODS)
    head, cpu, gpu = _pods(spec)
    assert all(v["name"] != "dshm" for v in head["volumes"] + cpu["volumes"])
    (shm,) = [v for v in gpu["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "4096Mi"}


def test_secret_env_reaches_the_ray_containers_as_secret_key_refs_only() -> None:
    job = _job(cluster="ephemeral", secretEnv={"HF_TOKEN": {"name": "hf-token", "key": "token"}})
    doc = build_ray_job(
        job=job,
        workload=get_workload("dt-pytorch"),
        namespace="ray",
        cluster_name="ray",
        shape=_shape(),
        pods=PODS,
    )
    expected = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    cluster = doc["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    assert len(templates) >= 2
    for template in templates:
        (ray,) = [c for c in template["spec"]["containers"] if c["name"] in ("ray-head", "ray-worker")]
        assert ray["env"].count(expected) == 1
    # Not in the runtime env (it would override the container's value) nor on the submitter.
    assert "HF_TOKEN" not in yaml.safe_load(doc["spec"]["runtimeEnvYAML"])["env_vars"]
    submitter = doc["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    assert all(entry.get("name") != "HF_TOKEN" for entry in submitter.get("env", []))
    # Nothing else in the document mentions a secret value: only the Secret's name and key.
    assert "secretKeyRef" in json.dumps(doc)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"secretEnv": {"HF_TOKEN": {"name": "hf-token", "key": "token"}}}, "needs cluster: ephemeral"),
        (
            {"cluster": "ephemeral", "secretEnv": {"TOKEN": {"name": "hf", "key": "t"}}},
            "not in the workload env contract",
        ),
        (
            {"cluster": "ephemeral", "secretEnv": {"HF-TOKEN": {"name": "hf", "key": "t"}}},
            "not an environment variable name",
        ),
        (
            {
                "cluster": "ephemeral",
                "env": {"HF_TOKEN": "hf_abc"},
                "secretEnv": {"HF_TOKEN": {"name": "hf", "key": "t"}},
            },
            "never a literal in stack config",
        ),
        ({"cluster": "ephemeral", "secretEnv": {"HF_TOKEN": {"name": "Not_A_Label", "key": "t"}}}, "name"),
    ],
)
def test_bad_secret_env_is_refused_with_the_fix(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        _job(**fields)


def test_a_credential_is_never_a_literal_env_value() -> None:
    with pytest.raises(ValueError, match=r"secretEnv: \{HF_TOKEN: \{name: hf-token, key: token\}\}"):
        _job(env={"HF_TOKEN": "hf_literal"})
    with pytest.raises(ValueError, match="never a literal"):
        RayServiceConfig.model_validate({"name": "llm", "env": {"HF_TOKEN": "hf_literal"}})
    # Own code takes any names, credentials included: the user's code, the user's choice.
    assert _job(workload=None, code="examples/hello_ray", entrypoint="python main.py", env={"HF_TOKEN": "x"})

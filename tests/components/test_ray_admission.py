"""KubeRay's own admission rules (``tests/kuberay_validation.py``) on everything the program renders.

The CRD schema is necessary but not sufficient: KubeRay v1.7.0 stores a RayJob that its controller
then refuses (``ValidationFailed``) while ``pulumi up`` reports success. Three views:

* every RayCluster/RayJob/RayService of every ``Pulumi.<stack>.yaml``, run through ``__main__.py``;
* whole-program variants that combine the knobs (autoscaler, shared/ephemeral jobs, retries,
  deadlines, GCS fault tolerance, token auth, every upgradeStrategy, the longest accepted names);
* the full cartesian product of those knobs through the same config parser and builders the
  program uses (pure, so 256 combinations cost well under a second).

Config that KubeRay would refuse must fail in ``components/config.py`` instead: retries on the shared
cluster here, names in ``tests/components/test_config.py``, NewClusterWithIncrementalUpgrade (it needs
a Gateway controller the stack does not install) in ``tests/components/test_ray_cluster.py``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import yaml

from components.builders.ray import (
    ClusterShape,
    PodContext,
    build_ray_cluster,
    build_ray_job,
    build_ray_service,
    job_workload,
    run_env,
    service_workload,
)
from components.config import ConfigError, StackConfig, parse_stack_config
from components.versions import KUBERAY_FEATURE_GATES
from tests.kuberay_validation import validate
from tests.pulumi_harness import HYPERPOD_ARN, HYPERPOD_CLUSTERS, ProgramRun, hyperpod_description, run_ok
from workloads.serve.config import build_serve_config

RAY_KINDS = ("RayCluster", "RayJob", "RayService")


def _gates(run: ProgramRun) -> dict[str, bool]:
    """The operator's gates for this stack: the chart defaults plus the stack's kuberay.featureGates."""
    kuberay = json.loads(run.config.get("ray-on-eks:kuberay", "{}"))
    return {**KUBERAY_FEATURE_GATES, **(kuberay.get("featureGates") or {})}


def _violations(run: ProgramRun) -> list[str]:
    documents = [r for kind in RAY_KINDS for r in run.custom_resources(kind)]
    assert documents, f"{run.stack}: no Ray documents rendered"
    problems = []
    for resource in documents:
        doc = {key: resource.inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}
        problems += validate(doc, feature_gates=_gates(run))
    return problems


def test_every_stack_passes_kuberays_own_validation(stack_run: ProgramRun) -> None:
    """Fails on the old main: Pulumi.dev.yaml's train-digits job had backoffLimit 1 on the shared cluster."""
    assert _violations(stack_run) == []


# ---- whole-program variants ------------------------------------------------------------------------

_FT = {
    "enabled": True,
    "redisAddress": "redis.example:6379",
    "redisPasswordSecret": {"name": "redis", "key": "password"},
}
_LONGEST_JOB = "j" + "-x" * 23  # 47 characters, KubeRay's MaxRayJobNameLength
_LONGEST_SERVICE = "s" * 47
PROGRAM_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "autoscaler-ft-token-every-job-kind": (
        "dev",
        {
            "autoscaler": {"enabled": True, "idleTimeoutSeconds": 30, "upscalingMode": "Aggressive"},
            "gcsFaultTolerance": _FT,
            "tokenAuth": True,
            "rayJobs": [
                {"name": "shared-deadline", "workload": "quickstart", "activeDeadlineSeconds": 600},
                {
                    "name": "ephemeral-retries",
                    "workload": "dt-pytorch",
                    "cluster": "ephemeral",
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": 7200,
                    "ttlSecondsAfterFinished": 0,
                },
            ],
            "rayServices": [{"name": "digits", "upgradeStrategy": "NewCluster"}],
        },
    ),
    "static-no-auth-no-ft-upgrade-none": (
        "dev",
        {
            "autoscaler": {"enabled": False},
            "tokenAuth": False,
            "rayJobs": [
                {"name": "shared", "workload": "dt-pytorch"},
                {"name": "ephemeral", "workload": "quickstart", "cluster": "ephemeral"},
            ],
            "rayServices": [{"name": "digits", "upgradeStrategy": "None"}],
        },
    ),
    "longest-names-exposed-autoscaled": (
        "dev",
        {
            "rayClusterName": "r" * 50,
            "autoscaler": {"enabled": True},
            "exposeDashboards": True,
            "rayJobs": [
                {"name": _LONGEST_JOB, "workload": "quickstart", "cluster": "ephemeral", "backoffLimit": 1}
            ],
            "rayServices": [{"name": _LONGEST_SERVICE, "upgradeStrategy": "None"}],
        },
    ),
    "hyperpod-ft-services": (
        "hyperpod",
        {
            "gcsFaultTolerance": _FT,
            "rayServices": [{"name": "digits"}, {"name": "digits-b", "upgradeStrategy": "None"}],
        },
    ),
}


@pytest.mark.parametrize("variant", list(PROGRAM_VARIANTS))
def test_program_variants_pass_kuberays_own_validation(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stack, overrides = PROGRAM_VARIANTS[variant]
    if stack == "hyperpod":
        # 4 Ray clusters at once (RayCluster, ephemeral job, 2 RayServices): a HyperPod cluster with
        # room for them, or the fit check refuses the stack before any resource.
        groups = [("controller", "ml.m5.2xlarge", 4), ("workers", "ml.g5.12xlarge", 8)]
        monkeypatch.setitem(HYPERPOD_CLUSTERS, HYPERPOD_ARN, hyperpod_description(groups=groups))
    assert _violations(run_ok(stack, overrides)) == []


# ---- the cartesian product, through the config parser and the builders ------------------------------

_BASE: dict[str, Any] = {
    "region": "us-west-2",
    "clusterName": "ml-dev",
    "workerGroups": [
        {
            "name": "cpu-workers",
            "instanceType": "m6i.2xlarge",
            "replicas": 1,
            "minReplicas": 1,
            "maxReplicas": 4,
        },
        {"name": "gpu-workers", "instanceType": "g5.2xlarge", "replicas": 0, "maxReplicas": 2, "gpus": 1},
    ],
}
KNOBS: dict[str, tuple[Any, ...]] = {
    "autoscaler": (False, True),
    "gcs_ft": (False, True),
    "token_auth": (False, True),
    "job_cluster": ("shared", "ephemeral"),
    "retries": (0, 2),
    "deadline": (None, 3600),
    "upgrade": ("NewCluster", "None"),
    "expose": (False, True),
}


def _config(combo: dict[str, Any]) -> StackConfig:
    job: dict[str, Any] = {"name": "train", "workload": "dt-pytorch", "cluster": combo["job_cluster"]}
    if combo["retries"]:
        job["backoffLimit"] = combo["retries"]
    if combo["deadline"]:
        job["activeDeadlineSeconds"] = combo["deadline"]
    raw = {
        **_BASE,
        "autoscaler": {"enabled": combo["autoscaler"]},
        "gcsFaultTolerance": _FT if combo["gcs_ft"] else {"enabled": False},
        "tokenAuth": combo["token_auth"],
        "exposeDashboards": combo["expose"],
        "rayJobs": [job],
        "rayServices": [{"name": "digits", "upgradeStrategy": combo["upgrade"]}],
    }
    return parse_stack_config(raw)


def _documents(config: StackConfig) -> list[dict[str, Any]]:
    """The Ray documents RayClusterStack builds for ``config`` (same builders, same shape)."""
    shape = ClusterShape(
        cluster_type=config.cluster_type,
        head=config.head,
        worker_groups=config.worker_groups,
        autoscaler=config.autoscaler,
        gcs_fault_tolerance=config.gcs_fault_tolerance,
        token_auth=config.token_auth,
        expose_dashboards=config.expose_dashboards,
    )
    pods = PodContext(storage_path="/fsx/ray-results")
    docs = [build_ray_cluster(name=config.ray_cluster_name, namespace="ray", shape=shape, pods=pods)]
    for job in config.ray_jobs:
        docs.append(
            build_ray_job(
                job=job,
                workload=job_workload(job),
                namespace="ray",
                cluster_name=config.ray_cluster_name,
                shape=shape,
                pods=pods,
            )
        )
    for service in config.ray_services:
        workload = service_workload(service)
        serve = build_serve_config(
            env=run_env(workload, service.env, None),
            num_replicas=1,
            pip=workload.pip,
            import_path=service.import_path,
        )
        docs.append(
            build_ray_service(
                service=service,
                workload=workload,
                namespace="ray",
                shape=shape,
                pods=pods,
                serve_config=serve,
            )
        )
    return docs


def test_every_accepted_combination_passes_and_every_refused_one_is_refused_in_config() -> None:
    accepted = refused = 0
    failures: list[str] = []
    for values in itertools.product(*KNOBS.values()):
        combo = dict(zip(KNOBS, values, strict=True))
        try:
            config = _config(combo)
        except ConfigError as exc:
            refused += 1
            # The only combination KubeRay refuses among these knobs: retries on the shared cluster.
            assert combo["job_cluster"] == "shared" and combo["retries"], f"{combo}: refused: {exc}"
            assert "rayJobs[0].backoffLimit" in str(exc) and "cluster: ephemeral" in str(exc)
            continue
        accepted += 1
        failures += [f"{combo}: {p}" for doc in _documents(config) for p in validate(doc)]
    assert failures == []
    assert (accepted, refused) == (192, 64)


def test_own_code_jobs_and_services_pass_kuberay_validation() -> None:
    """rayJobs[].code / rayServices[].code render documents KubeRay v1.7.0 admits (shared + ephemeral)."""
    jobs = [
        {"name": "mine", "code": "examples/hello_ray", "entrypoint": "python main.py", "env": {"A": "1"}},
        {
            "name": "mine-eph",
            "code": "examples/hello_ray",
            "entrypoint": "python main.py",
            "cluster": "ephemeral",
        },
    ]
    services = [{"name": "hello", "code": "examples/hello_serve", "importPath": "app:deployment"}]
    run = run_ok("dev", {"rayJobs": jobs, "rayServices": services})
    assert _violations(run) == []
    assert len(run.custom_resources("RayJob")) == 2 and len(run.custom_resources("RayService")) == 1


def test_every_catalog_workload_renders_documents_kuberay_admits() -> None:
    """Each catalog job (shared) and service (its own RayService) on the dev stack, plus llm-finetune on
    an ephemeral cluster with its token from a Secret: KubeRay v1.7.0's validation and the CRD schema."""
    from tests.kuberay_schemas import validation_errors
    from workloads.catalog import WORKLOADS

    jobs: list[dict[str, Any]] = [
        {"name": f"job-{w.name}", "workload": w.name} for w in WORKLOADS.values() if w.kind == "job"
    ]
    jobs.append(
        {
            "name": "job-llm-gpu",
            "workload": "llm-finetune",
            "cluster": "ephemeral",
            "env": {"USE_GPU": "true", "MODEL_NAME": "meta-llama/Llama-3.2-1B"},
            "secretEnv": {"HF_TOKEN": {"name": "hf-token", "key": "token"}},
        }
    )
    services = [
        {"name": f"svc-{w.name}", "workload": w.name} for w in WORKLOADS.values() if w.kind == "service"
    ]
    run = run_ok("dev", {"rayJobs": jobs, "rayServices": services})
    assert _violations(run) == []
    rendered = {
        r.inputs["metadata"]["name"]: r.inputs for kind in RAY_KINDS for r in run.custom_resources(kind)
    }
    for name, inputs in rendered.items():
        doc = {key: inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}
        assert validation_errors(doc) == [], name
    assert {f"svc-{w.name}" for w in WORKLOADS.values() if w.kind == "service"} <= set(rendered)
    # Each service's Serve document routes under its own prefix (one Serve instance locally).
    prefixes = {}
    for w in WORKLOADS.values():
        if w.serve_app is not None:
            serve_config = yaml.safe_load(rendered[f"svc-{w.name}"]["spec"]["serveConfigV2"])
            (application,) = serve_config["applications"]
            prefixes[w.name] = application["route_prefix"]
            assert application["import_path"] == w.serve_app.import_path
    assert len(set(prefixes.values())) == len(prefixes)
    # The token reaches the GPU job's Ray pods only as a reference to the Secret.
    cluster = rendered["job-llm-gpu"]["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for template in templates:
        env = [e for c in template["spec"]["containers"] for e in c.get("env", []) if e["name"] == "HF_TOKEN"]
        assert env == [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
        ]

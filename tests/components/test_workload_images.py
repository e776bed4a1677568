"""Workload images under mocks: the ECR repository and (opt-in) builds exist with the configured settings,
every Ray pod template runs the digest-pinned image, and no RayJob/RayService installs packages."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
import yaml

from components.builders.images import Flavour, content_hash, content_tag, is_digest_ref
from components.config import ConfigError
from components.versions import RAY_VERSION, ray_image
from policy import checks
from tests.kuberay_validation import validate
from tests.pulumi_harness import SECRET_SIG, SECRET_VALUE, ProgramRun, run_ok, run_program, run_shared

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
IMAGE = "docker-build:index:Image"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
DIGEST = "sha256:" + "cd" * 32
REGISTRY = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
RAY_IMAGES = {
    "cpu": f"{REGISTRY}/ray-on-eks/dev:{RAY_VERSION}-py311-cpu-0123456789abcdef@{DIGEST}",
    "gpu": f"{REGISTRY}/ray-on-eks/dev:{RAY_VERSION}-py311-gpu-0123456789abcdef@sha256:{'ef' * 32}",
}
BUILD = {"ecrRepository": {"enabled": True}, "buildImages": True}


def _pod_specs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]


def _images_by_pod(run: ProgramRun) -> list[tuple[str, int, str]]:
    """(where, gpus, image) of every Ray pod template: clusters, job clusters, service clusters, submitters."""
    found: list[tuple[str, int, str]] = []

    def cluster(where: str, spec: dict[str, Any]) -> None:
        for pod in _pod_specs(spec):
            container = pod["containers"][0]
            gpus = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
            found.append((where, gpus, container["image"]))

    for resource in run.custom_resources("RayCluster"):
        cluster("RayCluster", resource.inputs["spec"])
    for resource in run.custom_resources("RayJob"):
        spec = resource.inputs["spec"]
        if "rayClusterSpec" in spec:
            cluster(f"RayJob {resource.name}", spec["rayClusterSpec"])
        submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
        found.append((f"submitter {resource.name}", 0, submitter["image"]))
    for resource in run.custom_resources("RayService"):
        cluster(f"RayService {resource.name}", resource.inputs["spec"]["rayClusterConfig"])
    return found


def _runtime_envs(run: ProgramRun) -> list[dict[str, Any]]:
    envs = [yaml.safe_load(r.inputs["spec"]["runtimeEnvYAML"]) for r in run.custom_resources("RayJob")]
    for service in run.custom_resources("RayService"):
        config = yaml.safe_load(service.inputs["spec"]["serveConfigV2"])
        envs += [app["runtime_env"] for app in config["applications"]]
    return envs


def _warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    messages: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: messages.append(message))
    return messages


# ---- the ECR repository -----------------------------------------------------------------------------


def test_dev_stack_creates_the_repository_immutable_scanned_and_kept(
    stack_runs: dict[str, ProgramRun],
) -> None:
    run = stack_runs["dev"]
    repository = run.one(REPOSITORY)
    assert repository.inputs["name"] == "ray-on-eks/dev"
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    assert repository.retain_on_delete is True and repository.inputs["forceDelete"] is False
    assert repository.import_id == "", "nothing to adopt on a first `pulumi up`"
    lifecycle = run.one(LIFECYCLE)
    assert lifecycle.inputs["repository"] == "ray-on-eks/dev"
    assert lifecycle.retain_on_delete is True
    rules = json.loads(lifecycle.inputs["policy"])["rules"]
    assert {r["selection"].get("countNumber") for r in rules if r["selection"]["tagStatus"] == "tagged"} == {
        10
    }
    assert run.of_type(IMAGE) == [], "builds are opt-in"
    assert run.exports["workloadImageRepositoryUrl"] == f"{REGISTRY}/ray-on-eks/dev"
    policy = json.loads(run.exports["workloadImagePushPolicy"])
    assert (
        policy["Statement"][1]["Resource"] == "arn:aws:ecr:us-west-2:123456789012:repository/ray-on-eks/dev"
    )


def test_without_retain_data_the_repository_goes_with_the_stack() -> None:
    run = run_ok(
        "dev", {"retainData": False, "ecrRepository": {"enabled": True, "name": "team/ray", "keepImages": 3}}
    )
    repository = run.one(REPOSITORY)
    assert repository.inputs["name"] == "team/ray"
    assert repository.retain_on_delete is False and repository.inputs["forceDelete"] is True
    lifecycle = run.one(LIFECYCLE)
    assert lifecycle.retain_on_delete is False
    counts = {r["selection"].get("countNumber") for r in json.loads(lifecycle.inputs["policy"])["rules"]}
    assert 3 in counts


def test_a_kept_repository_is_adopted_by_the_next_up() -> None:
    # After `pulumi destroy` with retainData the repository still exists under its fixed name.
    run = run_ok("dev", ecr={"ray-on-eks/dev": {}})
    assert run.one(REPOSITORY).import_id == "ray-on-eks/dev"


def test_no_repository_and_no_component_children_when_off() -> None:
    run = run_ok("dev", {"ecrRepository": {"enabled": False}})
    assert run.of_type(REPOSITORY) == [] and run.of_type(LIFECYCLE) == [] and run.of_type(IMAGE) == []
    assert "workloadImageRepositoryUrl" not in run.exports


# ---- opt-in build during `pulumi up` ----------------------------------------------------------------


def test_build_creates_one_image_per_flavour_tagged_by_content_hash() -> None:
    run = run_shared("dev", BUILD)
    images = {r.name: r for r in run.of_type(IMAGE)}
    assert set(images) == {"images-cpu", "images-gpu"}  # dev has CPU and GPU worker groups
    for flavour in ("cpu", "gpu"):
        image = images[f"images-{flavour}"]
        assert image.inputs["tags"] == [f"{REGISTRY}/ray-on-eks/dev:{content_tag(flavour)}"]
        assert image.inputs["push"] is True
        assert image.inputs["buildOnPreview"] is False, "previews never build"
        assert image.inputs["platforms"] == ["linux/amd64"]
        assert image.inputs["context"] == {"location": "images"}
        assert image.inputs["dockerfile"] == {"location": f"images/{flavour}/Dockerfile"}
        assert image.inputs["buildArgs"] == {"REVISION": content_hash(flavour)}
        assert image.inputs["registries"][0]["address"] == f"{REGISTRY}/ray-on-eks/dev"
        assert image.inputs["registries"][0]["username"] == "AWS"
        password = image.wire_inputs["registries"][0]["password"]
        assert password.get(SECRET_SIG) == SECRET_VALUE, "the ECR password is a secret"
        assert image.retain_on_delete is True, "a dropped build must not delete a tag pods still pull"
        assert any("Repository" in dep or "repository" in dep for dep in image.dependencies)


def test_only_the_flavours_the_stack_uses_are_built() -> None:
    groups = [{"name": "cpu-workers", "instanceType": "m6i.2xlarge"}]
    run = run_ok("dev", {**BUILD, "workerGroups": groups})
    assert [r.name for r in run.of_type(IMAGE)] == ["images-cpu"]
    assert run.of_type(DAEMON_SET) == [], "no GPU group, nothing to pre-pull"


def test_built_images_are_in_every_pod_template_by_digest_and_nothing_installs_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings = _warnings(monkeypatch)
    run = run_ok("dev", BUILD)
    pods = _images_by_pod(run)
    assert pods
    for where, gpus, image in pods:
        flavour: Flavour = "gpu" if gpus else "cpu"
        assert image.startswith(f"{REGISTRY}/ray-on-eks/dev:{content_tag(flavour)}@sha256:"), (where, image)
        assert is_digest_ref(image)
    assert all("pip" not in env for env in _runtime_envs(run))
    assert not [w for w in warnings if "pip" in w]


def test_an_image_already_in_the_repository_is_reused_not_rebuilt() -> None:
    existing = {content_tag("cpu"): DIGEST}  # pushed by the images workflow or an earlier `pulumi up`
    run = run_ok("dev", BUILD, ecr={"ray-on-eks/dev": existing})
    assert [r.name for r in run.of_type(IMAGE)] == ["images-gpu"]
    cpu_images = {image for _, gpus, image in _images_by_pod(run) if not gpus}
    assert cpu_images == {f"{REGISTRY}/ray-on-eks/dev:{content_tag('cpu')}@{DIGEST}"}


# ---- digest-pinned images from config (CI-built) -----------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "hyperpod"])
def test_configured_images_pin_every_pod_and_drop_runtime_pip(
    stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings = _warnings(monkeypatch)
    run = run_ok(stack, {"rayImages": RAY_IMAGES})
    pods = _images_by_pod(run)
    assert pods
    for where, gpus, image in pods:
        assert image == RAY_IMAGES["gpu" if gpus else "cpu"], where
    envs = _runtime_envs(run)
    assert envs and all("pip" not in env for env in envs)
    assert not [w for w in warnings if "pip" in w]
    for daemon_set in run.of_type(DAEMON_SET):
        assert daemon_set.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == RAY_IMAGES["gpu"]


def test_stock_image_keeps_runtime_pip_and_warns_once_naming_the_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings = _warnings(monkeypatch)
    run = run_ok("dev")
    pip_warnings = [w for w in warnings if "pip" in w]
    assert len(pip_warnings) == 1
    (message,) = pip_warnings
    for text in ("torch==2.14.1", "GBs", "PyPI", "rayImages", "buildImages"):
        assert text in message
    images = {image for _, _, image in _images_by_pod(run)}
    assert images == {ray_image(gpu=False), ray_image(gpu=True)}
    pips = [env.get("pip") for env in _runtime_envs(run)]
    assert ["torch==2.14.1", "scikit-learn==1.9.1"] in pips  # the old behaviour


def test_runtime_pip_can_be_forced_with_workload_images() -> None:
    run = run_ok("dev", {"rayImages": RAY_IMAGES, "runtimePip": True})
    assert any(env.get("pip") for env in _runtime_envs(run))


def test_a_partly_configured_stack_keeps_runtime_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    # GPU pods would run the stock image without torch: pip stays on (and the warning says why).
    warnings = _warnings(monkeypatch)
    run = run_ok("dev", {"rayImages": {"cpu": RAY_IMAGES["cpu"]}})
    assert any(env.get("pip") for env in _runtime_envs(run))
    assert [w for w in warnings if "pip" in w]


# ---- pre-pull ---------------------------------------------------------------------------------------


def test_gpu_groups_get_a_pre_pull_daemon_set_that_does_not_block_up(
    stack_runs: dict[str, ProgramRun],
) -> None:
    for run in stack_runs.values():
        daemon_sets = run.of_type(DAEMON_SET)
        groups = json.loads(run.config["ray-on-eks:workerGroups"])
        if not any(group.get("gpus", 0) > 0 for group in groups):
            # Pulumi.kind.yaml: CPU workers only, nothing to pre-pull under the default "gpu".
            assert daemon_sets == []
            continue
        assert {d.name for d in daemon_sets} == {"ray-pre-pull-gpu-workers"}
        (daemon_set,) = daemon_sets
        assert daemon_set.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
        (cluster,) = run.custom_resources("RayCluster")
        (group,) = [g for g in cluster.inputs["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu-workers"]
        pod = daemon_set.inputs["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == group["template"]["spec"]["nodeSelector"]
        assert pod["tolerations"] == group["template"]["spec"]["tolerations"]


@pytest.mark.parametrize(("setting", "count"), [("none", 0), ("all", 2)])
def test_pre_pull_setting(setting: str, count: int) -> None:
    assert len(run_ok("dev", {"prePullImages": setting}).of_type(DAEMON_SET)) == count


# ---- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"rayImages": RAY_IMAGES}, BUILD], ids=["rayImages", "buildImages"])
def test_workload_images_pass_every_policy_check(overrides: dict[str, Any]) -> None:
    # The guardrails pack is mandatory: digest-pinned images must satisfy images-pinned and
    # ray-version-matches-image (the content tag starts with the Ray version).
    run = run_shared("dev", overrides)
    problems = [
        f"{r.name}: {problem}"
        for r in run.resources
        if r.custom
        for check in checks.RESOURCE_CHECKS.values()
        for problem in check(r.type, r.inputs)
    ]
    assert problems == []


def test_an_image_for_another_ray_version_is_rejected() -> None:
    old = f"{REGISTRY}/ray-on-eks/dev:2.59.0-py311-cpu-0123456789abcdef@{DIGEST}"
    run = run_program("dev", {"rayImages": {"cpu": old}})
    assert isinstance(run.error, ConfigError)
    assert "ray-on-eks:rayImages.cpu" in str(run.error)
    assert f"must start with the Ray version this program deploys ({RAY_VERSION}-" in str(run.error)
    assert run.resources == []


def test_a_tag_instead_of_a_digest_is_rejected_in_one_line() -> None:
    run = run_program("dev", {"rayImages": {"gpu": "rayproject/ray:2.60.0-py311-gpu"}})
    assert isinstance(run.error, ConfigError)
    (line,) = [line for line in str(run.error).splitlines() if "rayImages" in line]
    assert "ray-on-eks:rayImages.gpu" in line and "rayproject/ray:2.60.0-py311-gpu" in line
    assert "@sha256:" in line
    assert run.resources == []


@pytest.mark.parametrize("overrides", [{"rayImages": RAY_IMAGES}, BUILD], ids=["rayImages", "buildImages"])
@pytest.mark.parametrize("stack", ["dev", "hyperpod"])
def test_ray_documents_with_workload_images_pass_kuberay_admission(
    stack: str, overrides: dict[str, Any]
) -> None:
    run = run_shared(stack, overrides)
    documents = [r for kind in ("RayCluster", "RayJob", "RayService") for r in run.custom_resources(kind)]
    assert documents
    for resource in documents:
        doc = {key: resource.inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}
        assert validate(doc) == [], resource.name

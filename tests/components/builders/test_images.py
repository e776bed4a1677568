"""Pure image decisions: which image a pod runs, when jobs pip-install, content tags, ECR policies and
the pre-pull DaemonSet (no mocks)."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.builders.images import (
    ECR_PUSH_ACTIONS,
    IMAGE_INPUTS,
    build_lifecycle_policy,
    build_push_policy,
    content_tag,
    flavour_of,
    is_digest_ref,
    repository_name_for,
    resolve_ray_image,
    runtime_pip,
    stack_flavours,
    uses_stock_image,
    workload_image_problem,
)
from components.builders.ray import (
    ClusterShape,
    PodContext,
    build_pre_pull,
    build_ray_cluster_spec,
    build_ray_job,
    build_runtime_env_yaml,
    pre_pull_groups,
)
from components.config import HeadConfig, RayJobConfig, WorkerGroupConfig
from components.versions import RAY_VERSION, ray_image
from tests.pulumi_harness import REPO
from workloads.catalog import get_workload

DIGEST = "sha256:" + "ab" * 32
CPU_REF = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/ray-on-eks/dev@{DIGEST}"
GPU_REF = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/ray-on-eks/dev:gpu-0123@{DIGEST}"
CPU = WorkerGroupConfig(name="cpu-workers", instance_type="m6i.2xlarge")
GPU = WorkerGroupConfig(name="gpu-workers", instance_type="g5.2xlarge", gpus=1)


def test_flavours() -> None:
    assert flavour_of(0) == "cpu"
    assert flavour_of(4) == "gpu"
    assert stack_flavours([0, 0]) == ("cpu",)
    assert stack_flavours([0, 1]) == ("cpu", "gpu")
    assert stack_flavours([8]) == ("cpu", "gpu")  # the head and submitters are cpu


def test_resolution_order_override_then_workload_image_then_stock() -> None:
    images = {"cpu": CPU_REF}
    assert resolve_ray_image("cpu", images=images) == CPU_REF
    assert resolve_ray_image("gpu", images=images) == ray_image(gpu=True)
    assert resolve_ray_image("gpu", images=images, stock_repository="mirror/ray") == ray_image(
        gpu=True, repository="mirror/ray"
    )
    assert resolve_ray_image("cpu", images=images, override="own/image@" + DIGEST) == "own/image@" + DIGEST


def test_runtime_pip_follows_the_stock_image_unless_forced() -> None:
    assert uses_stock_image(("cpu", "gpu"), {"cpu": CPU_REF})
    assert not uses_stock_image(("cpu",), {"cpu": CPU_REF})
    assert runtime_pip(None, stock_image_in_use=True) is True
    assert runtime_pip(None, stock_image_in_use=False) is False
    assert runtime_pip(True, stock_image_in_use=False) is True
    assert runtime_pip(False, stock_image_in_use=True) is False


@pytest.mark.parametrize("ref", [CPU_REF, GPU_REF, f"localhost:5000/ray@{DIGEST}", f"ray@{DIGEST}"])
def test_digest_references_are_accepted(ref: str) -> None:
    assert is_digest_ref(ref)


@pytest.mark.parametrize(
    "ref",
    [
        "rayproject/ray:2.60.0-py311",  # a tag can move
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/ray:latest",
        "ray@sha256:abc",  # short digest
        f"ray@sha512:{'ab' * 32}",
        f"Ray/Upper@{DIGEST}",
        "",
    ],
)
def test_references_without_a_full_digest_are_rejected(ref: str) -> None:
    assert not is_digest_ref(ref)


def test_workload_images_must_be_tagged_with_this_ray_version() -> None:
    good = f"r.example/ray:{RAY_VERSION}-py311-cpu-0123456789abcdef@{DIGEST}"
    assert workload_image_problem(good) is None
    assert "not pinned by digest" in str(workload_image_problem(f"r.example/ray:{RAY_VERSION}-py311"))
    assert "no tag" in str(workload_image_problem(f"r.example/ray@{DIGEST}"))
    assert "'2.59.0-py311'" in str(workload_image_problem(f"r.example/ray:2.59.0-py311@{DIGEST}"))


def _copy_images(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "images", tmp_path / "images")
    return tmp_path


def test_content_tag_changes_with_the_flavours_inputs_only(tmp_path: Path) -> None:
    root = _copy_images(tmp_path)
    before = {flavour: content_tag(flavour, root) for flavour in IMAGE_INPUTS}
    assert before == {flavour: content_tag(flavour) for flavour in IMAGE_INPUTS}
    assert before["cpu"].startswith(f"{RAY_VERSION}-py311-cpu-") and before["gpu"].startswith(
        f"{RAY_VERSION}-py311-gpu-"
    )
    # A file no build reads does not change any tag.
    (root / "images" / "NOTES.md").write_text("notes\n")
    assert {flavour: content_tag(flavour, root) for flavour in IMAGE_INPUTS} == before
    # The GPU Dockerfile changes only the GPU tag.
    (root / "images" / "gpu" / "Dockerfile").write_text("FROM x\n")
    assert content_tag("cpu", root) == before["cpu"]
    assert content_tag("gpu", root) != before["gpu"]
    # The shared requirements change both.
    requirements = root / "images" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "numpy==2.0.0\n")
    assert content_tag("cpu", root) != before["cpu"]


def test_the_workflow_command_prints_the_same_tag_without_dependencies() -> None:
    # The images workflow runs this with the runner's python3 and nothing installed (-S: no site).
    for flavour in IMAGE_INPUTS:
        result = subprocess.run(
            [sys.executable, "-S", "-m", "components.builders.images", "tag", flavour],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == content_tag(flavour)
    bad = subprocess.run(
        [sys.executable, "-S", "-m", "components.builders.images", "tag", "tpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_repository_name_is_deterministic_per_stack() -> None:
    assert repository_name_for("dev") == "ray-on-eks/dev"
    assert repository_name_for("dev", "team/ray") == "team/ray"


def test_lifecycle_policy_keeps_the_newest_images_per_flavour() -> None:
    policy = json.loads(build_lifecycle_policy(7))
    rules = policy["rules"]
    assert len({rule["rulePriority"] for rule in rules}) == len(rules)
    tagged = {rule["selection"]["tagPatternList"][0]: rule["selection"] for rule in rules[:-1]}
    assert set(tagged) == {"*-cpu-*", "*-gpu-*"}
    assert fnmatch.fnmatchcase(content_tag("cpu"), "*-cpu-*") and not fnmatch.fnmatchcase(
        content_tag("gpu"), "*-cpu-*"
    )
    assert all(s["countType"] == "imageCountMoreThan" and s["countNumber"] == 7 for s in tagged.values())
    untagged = rules[-1]["selection"]
    assert untagged["tagStatus"] == "untagged" and untagged["countType"] == "sinceImagePushed"
    assert all(rule["action"] == {"type": "expire"} for rule in rules)


def test_push_policy_is_scoped_to_the_one_repository() -> None:
    arn = "arn:aws:ecr:us-west-2:123456789012:repository/ray-on-eks/dev"
    statements = build_push_policy(arn)["Statement"]
    login, push = statements
    assert login["Action"] == "ecr:GetAuthorizationToken" and login["Resource"] == "*"
    assert push["Resource"] == arn
    assert set(push["Action"]) == set(ECR_PUSH_ACTIONS)
    assert not any("*" in action for action in push["Action"])
    assert not any(action.startswith("ecr:Delete") or "Policy" in action for action in push["Action"])


# ---- pods and jobs ---------------------------------------------------------------------------------


def _shape(**images: str) -> ClusterShape:
    return ClusterShape(cluster_type="eks", head=HeadConfig(), worker_groups=(CPU, GPU), images=images)


def test_every_pod_template_uses_the_configured_images() -> None:
    spec = build_ray_cluster_spec(_shape(cpu=CPU_REF, gpu=GPU_REF), PodContext())
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    workers = {
        g["groupName"]: g["template"]["spec"]["containers"][0]["image"] for g in spec["workerGroupSpecs"]
    }
    assert head == CPU_REF
    assert workers == {"cpu-workers": CPU_REF, "gpu-workers": GPU_REF}


def test_job_runtime_env_installs_nothing_without_runtime_pip() -> None:
    workload = get_workload("dt-pytorch")
    assert workload.pip, "the catalog still lists the packages for the stock-image fallback"
    assert "pip" not in yaml.safe_load(build_runtime_env_yaml(workload, {}, pip=False))
    assert yaml.safe_load(build_runtime_env_yaml(workload, {}))["pip"] == list(workload.pip)
    job = build_ray_job(
        job=RayJobConfig(name="train", workload="dt-pytorch", cluster="ephemeral"),
        workload=workload,
        namespace="ray",
        cluster_name="ray",
        shape=_shape(cpu=CPU_REF, gpu=GPU_REF),
        pods=PodContext(),
        runtime_pip=False,
    )
    assert "pip" not in yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"] == CPU_REF
    assert (
        job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
        == CPU_REF
    )


def test_pre_pull_groups() -> None:
    assert pre_pull_groups([CPU, GPU], "gpu") == [GPU]
    assert pre_pull_groups([CPU, GPU], "all") == [CPU, GPU]
    assert pre_pull_groups([CPU, GPU], "none") == []


def test_pre_pull_daemon_set_lands_where_the_group_runs_with_its_image() -> None:
    shape = _shape(gpu=GPU_REF)
    spec = build_ray_cluster_spec(shape, PodContext())
    (gpu_group,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu-workers"]
    worker_pod = gpu_group["template"]["spec"]
    daemon_set = build_pre_pull(shape=shape, group=GPU, cluster_name="ray", namespace="ray")
    assert daemon_set["metadata"]["name"] == "ray-gpu-workers-image-pull"
    pod = daemon_set["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == worker_pod["nodeSelector"]
    assert pod["tolerations"] == worker_pod["tolerations"]
    (container,) = pod["containers"]
    assert container["image"] == worker_pod["containers"][0]["image"] == GPU_REF
    # Holds the image with no GPU, no token, a restricted context and tiny requests = limits.
    assert pod["automountServiceAccountToken"] is False
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"]
    assert context["capabilities"] == {"drop": ["ALL"]} and context["allowPrivilegeEscalation"] is False
    selector = daemon_set["spec"]["selector"]["matchLabels"]
    assert selector.items() <= daemon_set["spec"]["template"]["metadata"]["labels"].items()


def test_pre_pull_names_are_dns_labels() -> None:
    group = WorkerGroupConfig(name="g" * 63, instance_type="g5.2xlarge", gpus=1)
    daemon_set = build_pre_pull(shape=_shape(), group=group, cluster_name="ray", namespace="ray")
    name = daemon_set["metadata"]["name"]
    assert len(name) <= 63 and not name.endswith("-")
    # The stock image when nothing is configured.
    assert daemon_set["spec"]["template"]["spec"]["containers"][0]["image"] == ray_image(gpu=True)


def test_a_per_group_image_wins_over_the_flavours_image() -> None:
    # A worker group (or the head) that names its own image runs it; the others keep the flavour's.
    own = f"r.example/custom:{RAY_VERSION}-py311-custom-0@{DIGEST}"
    custom = WorkerGroupConfig(name="custom", instance_type="g5.2xlarge", gpus=1, image=own)
    head = HeadConfig(image=own)
    shape = ClusterShape(
        cluster_type="eks", head=head, worker_groups=(GPU, custom), images={"gpu": GPU_REF, "cpu": CPU_REF}
    )
    assert (
        build_ray_cluster_spec(shape, PodContext())["headGroupSpec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        == own
    )
    spec = build_ray_cluster_spec(shape, PodContext())
    images = {
        g["groupName"]: g["template"]["spec"]["containers"][0]["image"] for g in spec["workerGroupSpecs"]
    }
    assert images == {"gpu-workers": GPU_REF, "custom": own}

"""Workload images: which image each Ray pod runs, content-hash tags, ECR policies, pre-pull DaemonSets.

Why: a stock ``rayproject/ray`` pod has no torch, so every job used to ``pip install`` several GB when
it started, on every new node, and failed outright without a path to PyPI. The images in ``images/``
bake the workloads' dependencies in; they are built once per change of ``images/`` and referenced by
digest. This module holds the decisions, as pure functions:

* :func:`resolve_ray_image` -- the one place that says which image a pod of a flavour runs (an
  explicit per-group image wins, then the configured/built workload image, then the stock image);
* :func:`content_tag` -- the tag of a flavour's image, a hash of exactly the files that go into it,
  computed the same way by the GitHub workflow (``python3 -m components.builders.images tag cpu``)
  and by the opt-in ``pulumi up`` build, so an unchanged ``images/`` is never rebuilt;
* the ECR lifecycle and push policies, and the pre-pull DaemonSet for GPU nodes.

Standard library only (plus components.versions): the images workflow runs this module with the
runner's ``python3`` and no dependencies installed.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from components.versions import RAY_IMAGE_REPOSITORY, RAY_PYTHON_TAG, RAY_VERSION, ray_image

Flavour = Literal["cpu", "gpu"]
FLAVOURS: tuple[Flavour, ...] = ("cpu", "gpu")
REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = "images"
REQUIREMENTS = f"{IMAGES_DIR}/requirements.txt"
# The files each flavour's build reads: its Dockerfile and what that Dockerfile COPYs (the build
# context's .dockerignore admits nothing else). tests/images checks that every COPY source is here.
IMAGE_INPUTS: Mapping[Flavour, tuple[str, ...]] = {
    "cpu": (f"{IMAGES_DIR}/cpu/Dockerfile", REQUIREMENTS),
    "gpu": (f"{IMAGES_DIR}/gpu/Dockerfile", REQUIREMENTS),
}
TAG_HASH_LENGTH = 16
# A digest-pinned image reference: <registry/repository>@sha256:<64 hex>, optionally with a tag.
_DIGEST_REF = re.compile(r"^[a-z0-9]([a-z0-9._\-/:]*[a-z0-9])?(:[\w][\w.\-]{0,127})?@sha256:[0-9a-f]{64}$")
# Pre-pull pods: just enough to hold the image on the node.
PRE_PULL_RESOURCES = {"cpu": "10m", "memory": "16Mi"}


def flavour_of(gpus: int) -> Flavour:
    """The image flavour of a pod: ``gpu`` when it asks for GPUs, else ``cpu``."""
    return "gpu" if gpus > 0 else "cpu"


def stack_flavours(gpu_counts: Iterable[int]) -> tuple[Flavour, ...]:
    """Flavours the stack's Ray pods use: cpu always (head, job submitters), gpu when a group has GPUs."""
    return ("cpu", "gpu") if any(count > 0 for count in gpu_counts) else ("cpu",)


def stock_image(flavour: Flavour, repository: str = RAY_IMAGE_REPOSITORY) -> str:
    """The pinned ``rayproject/ray`` image (or its mirror) of a flavour."""
    return ray_image(gpu=flavour == "gpu", repository=repository)


def resolve_ray_image(
    flavour: Flavour,
    *,
    images: Mapping[str, Any],
    stock_repository: str = RAY_IMAGE_REPOSITORY,
    override: Any = None,
) -> Any:
    """The image a Ray pod of ``flavour`` runs.

    ``override`` (a per-worker-group image) wins; then the workload image of the flavour from
    ``images`` (digest-pinned config or the ``pulumi up`` build, a ``pulumi.Input[str]`` passed through
    untouched); otherwise the stock pinned image from ``stock_repository``.
    """
    if override is not None:
        return override
    if images.get(flavour) is not None:
        return images[flavour]
    return stock_image(flavour, stock_repository)


def uses_stock_image(flavours: Iterable[Flavour], images: Mapping[str, Any]) -> bool:
    """Whether some pod of ``flavours`` would run the stock image (no workload image for it)."""
    return any(images.get(flavour) is None for flavour in flavours)


def runtime_pip(setting: bool | None, *, stock_image_in_use: bool) -> bool:
    """Whether RayJobs/RayServices install the catalog's ``pip`` packages when they start.

    ``setting`` is the ``runtimePip`` config: ``None`` (auto) installs them only while some Ray pod
    runs the stock image, which lacks them; ``True``/``False`` force it.
    """
    return stock_image_in_use if setting is None else setting


def is_digest_ref(value: str) -> bool:
    """Whether ``value`` is an image reference pinned by digest (``repo@sha256:<64 hex>``)."""
    return bool(_DIGEST_REF.match(value))


# --------------------------------------------------------------------------------------------------
# Content-hash tags
# --------------------------------------------------------------------------------------------------


def content_hash(flavour: Flavour, root: Path = REPO_ROOT) -> str:
    """SHA-256 over the flavour's build inputs (paths and bytes, in order), hex."""
    digest = hashlib.sha256()
    for path in IMAGE_INPUTS[flavour]:
        digest.update(path.encode())
        digest.update(b"\0")
        digest.update((root / path).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def content_tag(flavour: Flavour, root: Path = REPO_ROOT) -> str:
    """The image tag of a flavour: ``<ray>-<python>-<flavour>-<first 16 hex of its content hash>``.

    It starts like the stock tags (``2.60.0-py311-gpu``) so a reader -- and the policy pack's
    ``ray-version-matches-image`` check -- sees which Ray the image carries.
    """
    return f"{RAY_VERSION}-{RAY_PYTHON_TAG}-{flavour}-{content_hash(flavour, root)[:TAG_HASH_LENGTH]}"


def tag_pattern(flavour: Flavour) -> str:
    """ECR lifecycle ``tagPatternList`` entry matching every content tag of a flavour."""
    return f"*-{flavour}-*"


def workload_image_problem(value: str) -> str | None:
    """Why ``value`` cannot be a rayImages entry, or None: digest-pinned, tagged with this Ray version."""
    if not is_digest_ref(value):
        return (
            "is not pinned by digest; use <registry>/<repository>:<tag>@sha256:<64 hex digits> (the images "
            "workflow's run summary prints it; a tag alone can be moved to another image)"
        )
    name = value.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag.startswith(f"{RAY_VERSION}-"):
        return (
            f"has {'tag ' + repr(tag) if tag else 'no tag'}, but the tag must start with the Ray version "
            f"this program deploys ({RAY_VERSION}-..., as the images workflow tags them) so rayVersion "
            "matches the image; rebuild images/ for this Ray version and pin the reference the workflow prints"
        )
    return None


def requirement_pins(text: str) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines of a requirements file (extras dropped)."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)$", line)
        if match:
            pins[match.group(1).lower()] = match.group(3)
    return pins


# --------------------------------------------------------------------------------------------------
# ECR
# --------------------------------------------------------------------------------------------------


def repository_name_for(stack: str, configured: str | None = None) -> str:
    """The ECR repository name: the configured one, else ``ray-on-eks/<stack>``.

    Deterministic on purpose: with retainData the repository outlives ``pulumi destroy`` and the next
    ``pulumi up`` adopts it by this name.
    """
    return configured or f"ray-on-eks/{stack}"


def build_lifecycle_policy(keep_images: int) -> str:
    """ECR lifecycle policy: keep the newest ``keep_images`` per flavour, drop untagged after a day.

    Images are pushed single-manifest (no attestations), so an untagged image is never part of a
    tagged one; it is what a failed push leaves behind.
    """
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": priority,
            "description": f"Keep the newest {keep_images} {flavour} images",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": [tag_pattern(flavour)],
                "countType": "imageCountMoreThan",
                "countNumber": keep_images,
            },
            "action": {"type": "expire"},
        }
        for priority, flavour in enumerate(FLAVOURS, start=1)
    ]
    rules.append(
        {
            "rulePriority": len(rules) + 1,
            "description": "Remove untagged images after one day",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    )
    return json.dumps({"rules": rules}, indent=2)


# What `docker push` to one repository needs (ECR user guide, "Required IAM permissions for pushing
# an image"), plus DescribeImages for the workflow's "is this content tag already there?" check.
ECR_PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)


def build_push_policy(repository_arn: str) -> dict[str, Any]:
    """Least-privilege IAM policy for the images workflow: push to this one repository only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            # GetAuthorizationToken has no resource-level permissions; it grants nothing by itself.
            {"Sid": "Login", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "PushWorkloadImages",
                "Effect": "Allow",
                "Action": list(ECR_PUSH_ACTIONS),
                "Resource": repository_arn,
            },
        ],
    }


# --------------------------------------------------------------------------------------------------
# Pre-pulling on new nodes
# --------------------------------------------------------------------------------------------------


def build_pre_pull_daemon_set(
    *,
    name: str,
    namespace: str,
    image: Any,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    security_context: Mapping[str, Any],
    pod_security_context: Mapping[str, Any],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """A DaemonSet that pulls ``image`` onto every node a worker group can land on, then idles.

    The image's own ``sleep`` keeps the pod alive (no second image to pull or mirror), with tiny
    requests = limits, no service-account token and the restricted security context. Cluster
    autoscaler and Karpenter ignore DaemonSet pods when they scale down, so it keeps no node alive.
    """
    selector = {"app.kubernetes.io/name": name}
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {**labels, **selector}},
        "spec": {
            "selector": {"matchLabels": dict(selector)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": {**labels, **selector}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": dict(pod_security_context),
                    "nodeSelector": dict(node_selector),
                    "tolerations": [dict(t) for t in tolerations],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "hold-image",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "infinity"],
                            "resources": {
                                "requests": dict(PRE_PULL_RESOURCES),
                                "limits": dict(PRE_PULL_RESOURCES),
                            },
                            "securityContext": {**security_context, "readOnlyRootFilesystem": True},
                        }
                    ],
                },
            },
        },
    }


def main(argv: Sequence[str]) -> int:
    """``python3 -m components.builders.images tag <cpu|gpu>``: print the flavour's content tag."""
    if len(argv) != 2 or argv[0] != "tag" or argv[1] not in FLAVOURS:
        print(f"usage: python3 -m components.builders.images tag {{{'|'.join(FLAVOURS)}}}", file=sys.stderr)
        return 2
    flavour: Flavour = "gpu" if argv[1] == "gpu" else "cpu"
    print(content_tag(flavour))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

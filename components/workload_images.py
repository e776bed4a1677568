"""WorkloadImages: the ECR repository for the workload images and, opt-in, their build during `pulumi up`.

Three ways a stack gets its Ray images (README "Workload images"):

* **CI-built** (recommended): ``.github/workflows/images.yml`` pushes ``images/`` to this repository when
  it changes, tagged by content hash; the stack pins the digests in ``rayImages``.
* **Built by ``pulumi up``** (``buildImages: true``): this component builds each flavour the stack uses
  with pulumi-docker-build -- only when the repository lacks the flavour's content-hash tag, so an
  unchanged ``images/`` is never rebuilt, and an image CI already pushed is reused.
* **Stock image + runtime pip**: no repository needed; RayClusterStack warns about the cost.

Resource facts (upstream: hashicorp/terraform-provider-aws ``internal/service/ecr``, pulumi/pulumi
``developer-docs/architecture/import.md``, pulumi-docker-build ``Image`` docs):

* ``CreateRepository`` is synchronous; the provider returns when the repository exists. Nothing else
  holds it: with ``retainData`` it is kept on destroy (``retain_on_delete``; ``force_delete`` off so
  AWS refuses to delete a non-empty one anyway), without it ``force_delete`` removes it with its images.
* Kept across ``pulumi destroy``, the repository has a fixed name. The next ``pulumi up`` finds it
  (``ecr:DescribeRepositories`` through ``aws.ecr.get_repositories``) and adopts it with the ``import``
  option: Pulumi imports it when the stack does not hold it yet and treats it as any other resource once
  it does (same id). Adoption needs the program's settings to equal the kept repository's, which holds
  when this program created it.
* The lifecycle policy is ``PutLifecyclePolicy`` (an upsert), so re-creating it over a kept one works.
* A docker-build ``Image`` deletes its pushed tags when deleted; every Image here is
  ``retain_on_delete`` so that a replaced or dropped build never deletes an image a running pod (or an
  old RayService cluster during a blue/green upgrade) still pulls by digest. The lifecycle policy ages
  them out instead. Builds never run during ``pulumi preview`` (``build_on_preview: false``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from components.builders.images import (
    IMAGE_INPUTS,
    IMAGES_DIR,
    Flavour,
    build_lifecycle_policy,
    build_push_policy,
    content_hash,
    content_tag,
)

ENCRYPTION = "AES256"
PLATFORM = docker_build.Platform.LINUX_AMD64  # GPU and CPU worker instances here are x86_64


@dataclass(frozen=True, kw_only=True)
class WorkloadImagesArgs:
    """Where the workload images come from."""

    # rayImages from config: digest-pinned references per flavour (used as they are).
    configured: Mapping[str, str] = field(default_factory=dict)
    # Create the ECR repository named `repository_name` (None: no repository, no builds).
    repository_name: str | None = None
    keep_images: int = 10
    retain_data: bool = True
    # Build these flavours into the repository during `pulumi up` (empty: build nothing).
    build_flavours: Sequence[Flavour] = ()


def _image_ref(repository_url: str, tag: str, digest: str) -> str:
    """``<repository>:<tag>@<digest>``: pinned by digest; the tag only tells a reader which content."""
    return f"{repository_url}:{tag}@{digest}"


class WorkloadImages(pulumi.ComponentResource):
    """The workload images of one stack: ``images`` maps a flavour to its digest-pinned reference."""

    def __init__(
        self, name: str, args: WorkloadImagesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-on-eks:images:WorkloadImages", name, None, opts)
        if args.build_flavours and args.repository_name is None:
            raise ValueError("WorkloadImagesArgs.build_flavours needs repository_name (builds push there)")
        if args.keep_images < 1:
            raise ValueError(f"WorkloadImagesArgs.keep_images must be >= 1, got {args.keep_images}")
        self.images: dict[str, pulumi.Input[str]] = dict(args.configured)
        self.repository_url: pulumi.Output[str] | None = None
        self.push_policy: pulumi.Output[str] | None = None
        if args.repository_name is not None:
            self._repository(name, args, args.repository_name)
        self.register_outputs(
            {"images": self.images, "repositoryUrl": self.repository_url, "pushPolicy": self.push_policy}
        )

    def _repository(self, name: str, args: WorkloadImagesArgs, repository_name: str) -> None:
        invoke = pulumi.InvokeOptions(parent=self)
        exists = repository_name in (aws.ecr.get_repositories(opts=invoke).names or [])
        keep = pulumi.ResourceOptions(
            parent=self,
            retain_on_delete=args.retain_data,
            # Adopt the repository a previous `pulumi destroy` kept (see the module docstring).
            import_=repository_name if exists else None,
        )
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=repository_name,
            # Content-hash tags never move: a digest in rayImages always names what its tag says.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": ENCRYPTION}],
            force_delete=not args.retain_data,
            opts=keep,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=build_lifecycle_policy(args.keep_images),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_data),
        )
        self.repository_url = repository.repository_url
        self.push_policy = repository.arn.apply(lambda arn: json.dumps(build_push_policy(arn)))
        if args.build_flavours:
            self._build(name, args.build_flavours, repository, repository_name, exists)

    def _build(
        self,
        name: str,
        flavours: Sequence[Flavour],
        repository: aws.ecr.Repository,
        repository_name: str,
        exists: bool,
    ) -> None:
        invoke = pulumi.InvokeOptions(parent=self)
        # Tags already in the repository (pushed by CI or by an earlier `pulumi up`): reused, not rebuilt.
        present: dict[str, str] = {}
        if exists:
            listing = aws.ecr.get_images(repository_name=repository_name, opts=invoke)
            present = {i.image_tag: i.image_digest for i in listing.image_ids or [] if i.image_tag}
        token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id, opts=invoke)
        for flavour in flavours:
            tag = content_tag(flavour)
            if tag in present:
                self.images[flavour] = repository.repository_url.apply(_ref_with(tag, present[tag]))
                continue
            # Relative paths: Pulumi runs the program (and the provider) from the project directory, where
            # the provider resolves them (pulumi-docker-build provider/internal/dockerfile.go:
            # filepath.Abs), and an absolute path would differ between checkouts and show up as a change.
            build: dict[str, Any] = {
                "context": {"location": IMAGES_DIR},
                "dockerfile": {"location": IMAGE_INPUTS[flavour][0]},
                "platforms": [PLATFORM],
                # The revision label is the content hash: a commit id would change on every commit and
                # force a rebuild of an unchanged images/.
                "build_args": {"REVISION": content_hash(flavour)},
                "tags": [repository.repository_url.apply(_tagged(tag))],
                "push": True,
                "build_on_preview": False,
                "registries": [
                    {
                        "address": repository.repository_url,
                        "username": token.user_name,
                        # Short-lived (12 h), but never in state or logs in clear text.
                        "password": pulumi.Output.secret(token.password),
                    }
                ],
            }
            image = docker_build.Image(
                f"{name}-{flavour}", opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True), **build
            )
            self.images[flavour] = pulumi.Output.all(repository.repository_url, image.digest).apply(
                _ref_from(tag)
            )


def _tagged(tag: str) -> Callable[[str], str]:
    return lambda url: f"{url}:{tag}"


def _ref_with(tag: str, digest: str) -> Callable[[str], str]:
    return lambda url: _image_ref(url, tag, digest)


def _ref_from(tag: str) -> Callable[[list[Any]], str]:
    return lambda values: _image_ref(str(values[0]), tag, str(values[1]))

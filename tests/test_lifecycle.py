"""``pulumi up``, ``pulumi destroy``, ``pulumi up`` again with the same config (issue 11), for every stack
file, retainData true/false, FSx dynamic/static and S3 created/existing.

The program runs for real under mocks twice; between the runs a ``destroy`` keeps exactly the resources
registered with ``retainOnDelete``. What the test models is the engine's and the providers' behaviour,
never a decision of the program:

* **Autonaming.** The engine (and pulumi-kubernetes for ``metadata.name``) gives a resource registered
  without an explicit name ``<logical name>-<random suffix>``; the suffix lives in the stack state that
  ``destroy`` removes, so the next ``up`` draws a new one. :class:`AutonamingMocks` does exactly that (the
  plain harness names objects after their logical names, which would hide the defect under test).
* **Finalizers and cascades** that let a kept object block or undo the deletion of another: a
  PersistentVolume bound to a claim keeps ``kubernetes.io/pv-protection`` while the claim exists; a claim
  mounted by a pod keeps ``kubernetes.io/pvc-protection``; deleting a namespace deletes every object in it.
  pulumi-kubernetes waits 10 minutes for a deletion and then fails (provider/pkg/await/await.go, Deletion).
* **Re-creating what was kept.** pulumi-kubernetes (>= 4.29, await.go Creation) creates with a plain
  create, which fails with AlreadyExists, unless the provider sets ``upsertExistingObjects`` (then it is a
  server-side apply that adopts the object). pulumi-aws: CreateBucket of an existing bucket fails
  (BucketAlreadyOwnedByYou) unless the resource is adopted with ``import``; the bucket's configuration
  resources are ``Put*`` calls that overwrite what is there (terraform-provider-aws ``aws_s3_bucket_*``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pulumi.runtime.mocks import MockResourceArgs

from tests.conftest import AWS_STACKS, KUBERNETES_STACKS
from tests.pulumi_harness import ProgramRun, RealisticMocks, Registered, load_stack_config, run_program

NAMESPACE = "kubernetes:core/v1:Namespace"
CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"
VOLUME = "kubernetes:core/v1:PersistentVolume"
BUCKET = "aws:s3/bucket:Bucket"
REPOSITORY = "aws:ecr/repository:Repository"  # CreateRepository of an existing name fails
K8S_PROVIDER = "pulumi:providers:kubernetes"
# Kubernetes registrations that are not one named object (their identity is the logical name).
K8S_GROUPS = ("kubernetes:helm.sh/v3:Release", "kubernetes:yaml/v2:ConfigGroup")
# pulumi-aws resources whose create writes the bucket's configuration with a Put* call (an overwrite):
# creating them again over a kept bucket succeeds.
AWS_PUT_CONFIGURATION = {
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    # PutLifecyclePolicy replaces a repository's policy (terraform-provider-aws aws_ecr_lifecycle_policy).
    "aws:ecr/lifecyclePolicy:LifecyclePolicy",
}
# pulumi-aws resources the engine auto-names, and the property that carries the name.
AWS_AUTONAMED = {
    BUCKET: "bucket",
    "aws:iam/role:Role": "name",
    "aws:iam/policy:Policy": "name",
    REPOSITORY: "name",
}

STATIC_FSX = {
    "enabled": True,
    "mode": "static",
    "fileSystemId": "fs-0123456789abcdef0",
    "dnsName": "fs-0123456789abcdef0.fsx.us-west-2.amazonaws.com",
    "mountName": "abcdefgh",
    "storageCapacityGib": 1200,
}
DYNAMIC_FSX = {"enabled": True, "mode": "dynamic"}
CREATED_BUCKET = {"enabled": True, "createBucket": True}
EXISTING_BUCKET = {"enabled": True, "createBucket": False, "bucketName": "team-ml-checkpoints"}


class AutonamingMocks(RealisticMocks):
    """:class:`RealisticMocks` plus Pulumi's autonaming: no explicit name -> a fresh random suffix."""

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        inputs = dict(args.inputs)
        suffix = uuid.uuid4().hex[:7]
        if args.typ.startswith("kubernetes:") and args.typ not in K8S_GROUPS:
            metadata = dict(inputs.get("metadata") or {})
            if not metadata.get("name"):
                metadata["name"] = f"{args.name}-{suffix}"
                inputs["metadata"] = metadata
        prop = AWS_AUTONAMED.get(args.typ)
        if prop and not inputs.get(prop):
            inputs[prop] = f"{args.name}-{suffix}"
        return super().new_resource(
            MockResourceArgs(
                typ=args.typ,
                name=args.name,
                inputs=inputs,
                provider=args.provider,
                resource_id=args.resource_id,
                custom=args.custom,
            )
        )


def identity(resource: Registered) -> tuple[str, ...]:
    """What the cloud knows the object by: Kubernetes kind + namespace + name, or the AWS name."""
    if resource.type.startswith("kubernetes:") and resource.type not in K8S_GROUPS:
        metadata = resource.state.get("metadata") or {}
        return (resource.type, metadata.get("namespace") or "", metadata["name"])
    prop = AWS_AUTONAMED.get(resource.type)
    if prop:
        return (resource.type, str(resource.state[prop]))
    return (resource.type, resource.name)


def managed(run: ProgramRun) -> list[Registered]:
    """What `pulumi destroy` acts on: every resource but providers and plain components."""
    return [
        r
        for r in run.resources
        if not r.type.startswith("pulumi:providers:") and (r.custom or r.type in K8S_GROUPS)
    ]


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def holds(kept: Registered, deleted: Registered) -> str | None:
    """Why ``kept`` staying in the cluster blocks or undoes the deletion of ``deleted`` (None: it does not)."""
    kept_id, deleted_id = identity(kept), identity(deleted)
    if (
        deleted.type == VOLUME
        and kept.type == CLAIM
        and kept.inputs.get("spec", {}).get("volumeName") == deleted_id[2]
    ):
        return "kubernetes.io/pv-protection: the kept claim is bound to the deleted volume"
    mounted = {
        (volume.get("persistentVolumeClaim") or {}).get("claimName")
        for volume in _volumes(kept.inputs)
        if isinstance(volume, dict)
    }
    if deleted.type == CLAIM and kept_id[1] == deleted_id[1] and deleted_id[2] in mounted:
        return "kubernetes.io/pvc-protection: a kept pod template mounts the deleted claim"
    if deleted.type == NAMESPACE and kept.type.startswith("kubernetes:") and kept_id[1] == deleted_id[2]:
        return "the kept object lives in the deleted namespace, which deletes it"
    return None


def _volumes(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "volumes" and isinstance(value, list):
                yield from value
            else:
                yield from _volumes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _volumes(value)


def _transitive_dependencies(run: ProgramRun) -> dict[str, set[str]]:
    """URN -> every URN it depends on, directly or through its dependencies."""
    direct = {r.urn: set(r.dependencies) for r in run.resources}
    closed: dict[str, set[str]] = {}

    def walk(urn: str) -> set[str]:
        if urn not in closed:
            closed[urn] = set()
            for dep in direct.get(urn, ()):
                closed[urn] |= {dep, *walk(dep)}
        return closed[urn]

    for urn in direct:
        walk(urn)
    return closed


def upserts(run: ProgramRun, resource: Registered) -> bool:
    """Whether the Kubernetes provider of ``resource`` adopts an existing object on create."""
    urn = resource.provider.rsplit("::", 1)[0] if resource.provider else ""  # "<urn>::<id>"
    for provider in run.of_type(K8S_PROVIDER):
        if provider.urn == urn:
            return provider.inputs.get("upsertExistingObjects") in (True, "true")
    return False


@dataclass(frozen=True)
class Variant:
    stack: str
    retain: bool
    fsx: str
    s3: str

    @property
    def overrides(self) -> dict[str, Any]:
        if self.fsx == "none":  # clusterType kubernetes: its own shared claim (storage.storageClass)
            return {"retainData": self.retain}
        return {
            "retainData": self.retain,
            "fsx": STATIC_FSX if self.fsx == "static" else DYNAMIC_FSX,
            "s3": EXISTING_BUCKET if self.s3 == "existing" else CREATED_BUCKET,
        }

    def __str__(self) -> str:
        return f"{self.stack}-retain{str(self.retain).lower()}-fsx{self.fsx}-s3{self.s3}"


# Every stack x retainData, each with both FSx modes and both bucket kinds (paired: the FSx and S3
# parts of the program do not interact, and each full cycle runs the program twice).
VARIANTS = [
    Variant(stack, retain, fsx, s3)
    for stack in AWS_STACKS
    for retain in (True, False)
    for fsx, s3 in (("dynamic", "created"), ("static", "existing"))
] + [
    # No FSx or S3 on any Kubernetes (config refuses them): the stack's own shared claim.
    Variant(stack, retain, "none", "none")
    for stack in KUBERNETES_STACKS
    for retain in (True, False)
]


def _up(
    variant: Variant,
    region: str,
    existing_buckets: tuple[str, ...] = (),
    existing_repositories: tuple[str, ...] = (),
) -> ProgramRun:
    run = run_program(
        variant.stack,
        variant.overrides,
        mocks=AutonamingMocks(
            region=region,
            existing_buckets=existing_buckets,
            ecr={name: {} for name in existing_repositories},
        ),
    )
    assert run.error is None, f"{variant}: `pulumi up` failed: {run.error!r}"
    return run


# The unit suite (``-m "not integration"``) cycles a subset that still covers every stack, both
# retainData values, both FSx modes and both bucket kinds; the rest of the matrix (each cycle is two
# whole program runs) is ``integration``, so ``python -m pytest`` (README, CI) runs all of it.
UNIT_VARIANTS = {
    "dev-retaintrue-fsxdynamic-s3created",
    "dev-retainfalse-fsxstatic-s3existing",
    "hyperpod-retaintrue-fsxstatic-s3existing",
    "sandbox-retainfalse-fsxdynamic-s3created",
    "kind-retaintrue-fsxnone-s3none",
    "kind-retainfalse-fsxnone-s3none",
}


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(v, id=str(v), marks=() if str(v) in UNIT_VARIANTS else pytest.mark.integration)
        for v in VARIANTS
    ],
)
def test_up_destroy_up(variant: Variant) -> None:
    region = load_stack_config(variant.stack).get("aws:region", "us-west-2")
    first = _up(variant, region)
    resources = managed(first)
    kept = [r for r in resources if r.retain_on_delete]
    deleted = [r for r in resources if not r.retain_on_delete]

    # --- destroy removes exactly what is not retained, and nothing kept holds what it deletes ---------
    problems: list[str] = []
    for resource in resources:
        if (
            resource.type in (CLAIM, VOLUME, BUCKET, REPOSITORY)
            and resource.retain_on_delete is not variant.retain
        ):
            problems.append(
                f"{resource.type} {resource.name}: retainOnDelete={resource.retain_on_delete}, "
                f"but retainData is {variant.retain}"
            )
    problems += [
        f"destroy blocked: {identity(d)} is held by kept {identity(k)}: {why}"
        for d in deleted
        for k in kept
        if (why := holds(k, d))
    ]
    # Among deleted objects, a finalizer holder must go first: the engine deletes a resource before
    # what it depends on, so the holder must depend (transitively) on what it holds.
    depends = _transitive_dependencies(first)
    problems += [
        f"destroy blocked: {identity(held)} is deleted before {identity(holder)}, which holds it: {why}"
        for held in deleted
        for holder in deleted
        if holder is not held
        and (why := holds(holder, held))
        and "protection" in why
        and held.urn not in depends[holder.urn]
    ]

    # --- the next `up` with the same config, against what the destroy kept -------------------------
    kept_buckets = tuple(str(r.state["bucket"]) for r in kept if r.type == BUCKET)
    kept_repositories = tuple(str(r.state["name"]) for r in kept if r.type == REPOSITORY)
    second = _up(variant, region, existing_buckets=kept_buckets, existing_repositories=kept_repositories)
    by_urn = {r.urn: r for r in managed(second)}
    first_by_urn = {r.urn: r for r in resources}
    kept_ids = {identity(r): r for r in kept}

    for old in kept:
        new = by_urn.get(old.urn)
        if new is None:
            problems.append(f"kept {identity(old)} is not declared again (orphaned)")
            continue
        if identity(new) != identity(old):
            problems.append(f"kept {identity(old)} is declared again as {identity(new)}")
        if new.inputs != old.inputs:
            problems.append(
                f"kept {identity(old)} changes spec: {json.dumps(old.inputs, sort_keys=True)} -> "
                f"{json.dumps(new.inputs, sort_keys=True)}"
            )
        if old.type.startswith("kubernetes:"):
            if not upserts(second, new):
                problems.append(f"kept {identity(old)} exists: its create fails with AlreadyExists")
        elif old.type not in AWS_PUT_CONFIGURATION and new.import_id != identity(old)[-1]:
            problems.append(f"kept {identity(old)} exists: its create fails unless it is imported")
        # Nothing kept names an object whose (generated) name changed.
        for value in set(strings(old.inputs)):
            for urn, other in first_by_urn.items():
                if other.retain_on_delete or value != identity(other)[-1]:
                    continue
                again = by_urn.get(urn)
                if again is not None and identity(again)[-1] != value:
                    problems.append(
                        f"kept {identity(old)} names {other.type} {value!r}, renamed {identity(again)[-1]!r}"
                    )

    # A resource with another URN landing on a kept object would silently take it over.
    for new in by_urn.values():
        old_match = kept_ids.get(identity(new))
        if old_match is not None and old_match.urn != new.urn:
            problems.append(f"{new.urn} lands on kept {identity(new)} of {old_match.urn}")

    assert not problems, f"{variant}: up -> destroy -> up:\n" + "\n".join(problems)


def test_the_unit_subset_covers_every_stack_and_setting() -> None:
    unit = [v for v in VARIANTS if str(v) in UNIT_VARIANTS]
    assert len(unit) == len(UNIT_VARIANTS), "a name in UNIT_VARIANTS matches no variant"
    assert {v.stack for v in unit} == {v.stack for v in VARIANTS}
    assert {v.retain for v in unit} == {True, False}
    assert {v.fsx for v in unit} == {v.fsx for v in VARIANTS}
    assert {v.s3 for v in unit} == {v.s3 for v in VARIANTS}


def test_the_model_catches_a_kept_claim_on_an_auto_named_volume() -> None:
    """The checks above are not vacuous: a claim kept on an auto-named, deleted volume is caught."""
    run = _up(Variant("dev", True, "static", "created"), "us-west-2")
    claim = next(r for r in run.resources if r.type == CLAIM and r.name.endswith("s3-claim"))
    volume = next(r for r in run.resources if r.type == VOLUME and r.name == "s3-pv")
    assert holds(claim, volume) is not None
    namespace = next(r for r in run.resources if r.type == NAMESPACE and r.name == "ray-namespace")
    assert holds(claim, namespace) is not None
    # The engine deletes the claim before the volume only because the claim depends on it.
    assert volume.urn in _transitive_dependencies(run)[claim.urn]
    cluster = next(r for r in run.resources if r.type.endswith(":RayCluster"))
    assert holds(cluster, claim) is not None  # pvc-protection while the Ray pods mount it
    # AutonamingMocks: two `up`s give an object without a name two different names.
    args = MockResourceArgs(
        typ=VOLUME, name="pv", inputs={"metadata": {}}, provider="", resource_id="", custom=True
    )
    mocks = AutonamingMocks()
    assert mocks.new_resource(args)[1]["metadata"]["name"] != mocks.new_resource(args)[1]["metadata"]["name"]

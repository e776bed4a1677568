"""Who owns which field of the stack's RayCluster under server-side apply (issue 11, defect 5).

The reasoning behind ``PATCH_FORCE`` in ``components/builders/ray.py``, derived here from the
vendored KubeRay CRD rather than asserted:

1. Server-side apply tracks ownership per *granule*: a scalar field, an item of a ``map``/``set``
   list, or a whole ``atomic`` list/map. A CRD list without ``x-kubernetes-list-type`` is atomic
   (Kubernetes "Server-Side Apply: merge strategy"; structured-merge-diff's default for CRDs).
2. The Ray autoscaler writes ``spec.workerGroupSpecs[i].replicas`` and ``.scaleStrategy``
   (``AUTOSCALER_WRITES``), so it owns the smallest granule that contains them.
3. If that granule is a field Pulumi also applies, the next apply that changes it conflicts unless it
   is forced; if the granule were the written field itself (which Pulumi leaves out), nothing would
   conflict and no force would be needed.

``needs_force`` computes 1-3 from the CRD; the tests check that the rendered RayCluster carries
``pulumi.com/patchForce`` exactly when it is needed, and that the reset the force causes lands on
``minReplicas`` (the CRD default for ``replicas`` is 0, which KubeRay clamps to ``minReplicas``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from components.builders.ray import (
    AUTOSCALER_WRITES,
    PATCH_FORCE,
    ClusterShape,
    PodContext,
    build_ray_cluster,
)
from components.config import AutoscalerConfig, HeadConfig, WorkerGroupConfig

CRD = (
    Path(__file__).resolve().parents[3] / "components" / "crds" / "kuberay-1.7.0" / "ray.io_rayclusters.json"
)
GROUPS = (
    WorkerGroupConfig(name="cpu", instance_type="m6i.2xlarge", replicas=2, min_replicas=1, max_replicas=4),
    WorkerGroupConfig(name="gpu", instance_type="g5.2xlarge", replicas=0, max_replicas=2, gpus=1),
)


def _schema() -> dict[str, Any]:
    doc = json.loads(CRD.read_text())
    (version,) = [v for v in doc["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _atomic(node: Mapping[str, Any]) -> bool:
    if node.get("type") == "array":
        return node.get("x-kubernetes-list-type", "atomic") == "atomic"
    return node.get("x-kubernetes-map-type") == "atomic"


def ownership_granule(schema: Mapping[str, Any], path: Sequence[str]) -> tuple[str, ...]:
    """The smallest prefix of ``path`` that server-side apply owns as one unit ("*" = a list item)."""
    node: Mapping[str, Any] = schema
    walked: list[str] = []
    for part in path:
        if _atomic(node) and walked:
            return tuple(walked)
        node = node["items"] if part == "*" else node["properties"][part]
        walked.append(part)
    return tuple(walked)


def _applies(doc: Mapping[str, Any], path: Sequence[str]) -> bool:
    """Whether the document sets ``path`` ("*" = any item of a list)."""
    node: Any = doc
    for index, part in enumerate(path):
        if part == "*":
            return isinstance(node, list) and any(_applies(item, path[index + 1 :]) for item in node)
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def needs_force(schema: Mapping[str, Any], doc: Mapping[str, Any], writes: Sequence[Sequence[str]]) -> bool:
    """True when a controller's write makes it co-own a granule the document applies."""
    return any(_applies(doc, ownership_granule(schema, path)) for path in writes)


def _autoscaler_paths() -> list[tuple[str, ...]]:
    return [("spec", "workerGroupSpecs", "*", field) for field in AUTOSCALER_WRITES]


def _cluster(autoscaler: bool) -> dict[str, Any]:
    shape = ClusterShape(
        cluster_type="eks",
        head=HeadConfig(),
        worker_groups=GROUPS,
        autoscaler=AutoscalerConfig(enabled=autoscaler),
    )
    return build_ray_cluster(name="ray", namespace="ray", shape=shape, pods=PodContext())


def test_the_autoscaler_writes_fields_the_crd_declares() -> None:
    items = _schema()["properties"]["spec"]["properties"]["workerGroupSpecs"]["items"]["properties"]
    assert set(AUTOSCALER_WRITES) <= set(items)


def test_worker_group_specs_is_an_atomic_list_so_the_autoscaler_owns_all_of_it() -> None:
    for path in _autoscaler_paths():
        assert ownership_granule(_schema(), path) == ("spec", "workerGroupSpecs"), path


@pytest.mark.parametrize("autoscaler", [False, True])
def test_patch_force_exactly_when_a_controller_co_owns_what_we_apply(autoscaler: bool) -> None:
    doc = _cluster(autoscaler)
    writes = _autoscaler_paths() if autoscaler else []  # nothing patches replicas without the autoscaler
    forced = (doc["metadata"].get("annotations") or {}).get("pulumi.com/patchForce") == "true"
    assert forced is needs_force(_schema(), doc, writes)
    assert forced is autoscaler


def test_the_reasoning_drops_the_force_for_a_keyed_list() -> None:
    """Were workerGroupSpecs a map list keyed by groupName, the autoscaler would own only replicas,
    which the program leaves out with the autoscaler on: no conflict, no force needed."""
    schema = json.loads(json.dumps(_schema()))
    groups = schema["properties"]["spec"]["properties"]["workerGroupSpecs"]
    groups.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["groupName"]})
    doc = _cluster(autoscaler=True)
    assert ownership_granule(schema, ("spec", "workerGroupSpecs", "*", "replicas")) == (
        "spec",
        "workerGroupSpecs",
        "*",
        "replicas",
    )
    assert not needs_force(schema, doc, [("spec", "workerGroupSpecs", "*", "replicas")])


def test_a_forced_apply_resets_replicas_to_min_replicas() -> None:
    """With the autoscaler on, the applied list has no replicas: after a forced apply the API server
    stores the CRD default (0), and KubeRay clamps it to each group's minReplicas
    (utils.GetWorkerGroupDesiredReplicas) without deleting running workers (autoscaling on)."""
    items = _schema()["properties"]["spec"]["properties"]["workerGroupSpecs"]["items"]
    assert items["properties"]["replicas"]["default"] == 0
    assert {"minReplicas", "maxReplicas"} <= set(items["required"])
    for group, config in zip(_cluster(autoscaler=True)["spec"]["workerGroupSpecs"], GROUPS, strict=True):
        assert "replicas" not in group
        assert group["minReplicas"] == config.min_replicas
    assert PATCH_FORCE == {"pulumi.com/patchForce": "true"}

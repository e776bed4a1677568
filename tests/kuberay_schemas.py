"""Validate Ray custom resources against the real KubeRay CRD schemas with jsonschema.

The schemas are the CRDs the program applies (``components/crds/kuberay-<version>/``, the release's
files as JSON, checked against their upstream digests by tests/components/test_kuberay_operator.py),
so what the tests validate against is exactly what the cluster will get.

The CRD's ``spec.versions[name=v1].schema.openAPIV3Schema`` is OpenAPI v3 with Kubernetes
extensions. Adjustments so jsonschema judges it the way the API server does:

* ``x-kubernetes-int-or-string``: the schemas already spell it as ``anyOf: [integer, string]``;
  a node with only the marker accepts both;
* unknown fields: a server-side apply with strict field validation rejects a field the schema does
  not declare, so every object with ``properties`` (and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields``) gets ``additionalProperties: false``. This is what makes a
  misspelt field fail here instead of being silently pruned on the cluster.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema

from components.kuberay_operator import crd_dir

KIND_FILES = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(folder: Path, kind: str) -> dict[str, Any]:
    """The strict v1 schema of ``kind`` from ``folder/ray.io_<plural>.json``."""
    doc = json.loads((folder / f"ray.io_{KIND_FILES[kind]}.json").read_text())
    (version,) = [v for v in doc["spec"]["versions"] if v["name"] == "v1"]
    return _strict(version["schema"]["openAPIV3Schema"])


def validation_errors(document: dict[str, Any], folder: Path | None = None) -> list[str]:
    """Every schema violation of ``document`` (apiVersion, kind, metadata, spec), as readable lines."""
    kind = document.get("kind")
    if kind not in KIND_FILES:
        return [f"kind {kind!r} is not a KubeRay kind"]
    problems: list[str] = []
    if document.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion {document.get('apiVersion')!r} is not ray.io/v1")
    name = (document.get("metadata") or {}).get("name", "")
    if not _DNS_LABEL.match(name or ""):
        problems.append(f"metadata.name {name!r} is not a DNS label")
    validator = jsonschema.Draft7Validator(crd_schema(folder or crd_dir(), kind))
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"{kind} {name}: {path}: {error.message}")
    return problems

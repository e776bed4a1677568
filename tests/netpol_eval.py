"""A small NetworkPolicy v1 ingress evaluator, for proving the rendered policies with a table.

Semantics (Kubernetes docs, "Network Policies"): policies select pods in their own namespace; a pod
selected by at least one Ingress policy accepts a connection only if some rule of those policies allows
it, otherwise it accepts everything. A peer with only ``podSelector`` means pods of the policy's own
namespace, ``namespaceSelector`` alone every pod of the matching namespaces, both together the matching
pods of the matching namespaces. A rule without ``from`` admits every source, without ``ports`` every
port. Namespaces carry ``kubernetes.io/metadata.name`` (set by the API server).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels; {} selects everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_admits(peer: Mapping[str, Any], policy_namespace: str, source: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # the table has pods only; an ipBlock never names a pod IP here
    namespace_labels = {NAMESPACE_NAME: source.namespace}
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or _selects(peer["podSelector"], source.labels)


def _port_admits(ports: Sequence[Mapping[str, Any]] | None, port: int) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        low = entry.get("port")
        if low is None:
            return True
        if isinstance(low, int) and low <= port <= entry.get("endPort", low):
            return True
    return False


def allowed(policies: Sequence[Mapping[str, Any]], source: Pod, destination: Pod, port: int) -> bool:
    """Whether NetworkPolicies let ``source`` open a TCP connection to ``destination:port``."""
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == destination.namespace
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], destination.labels)
    ]
    if not selecting:
        return True  # a pod no policy selects is open
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            if (
                not peers
                or any(_peer_admits(peer, policy["metadata"]["namespace"], source) for peer in peers)
            ) and (_port_admits(rule.get("ports"), port)):
                return True
    return False

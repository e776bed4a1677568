"""NetworkPolicies for the Ray namespace: deny all ingress, then allow exactly what Ray needs.

Pure: plain values in, NetworkPolicy documents out; ``tests/components/builders/test_network_policy.py``
evaluates them with a small NetworkPolicy evaluator over a table of (source pod, destination pod,
port) -> allowed/denied.

Why plain NetworkPolicy objects and not KubeRay 1.7.0's ``spec.networkPolicy``:

* KubeRay's field is behind the alpha feature gate ``RayClusterNetworkPolicy`` (off by default); its
  validation rejects the field when the gate is off (ray-operator/controllers/ray/utils/validation.go,
  ``validateRayClusterSpec``: "spec.networkPolicy requires the RayClusterNetworkPolicy feature gate").
  An alpha API may change shape between operator releases; NetworkPolicy v1 does not.
* KubeRay creates its policies per RayCluster while reconciling it, i.e. only after the cluster object
  exists, and only for Ray pods. Namespace-wide policies exist before any Ray pod starts and also cover
  pods that are not Ray nodes (RayJob submitter pods, the HyperPod cleanup CronJob).
* Ephemeral RayJob clusters and RayService clusters get generated names (``<rayjob>-<suffix>``,
  ``<rayservice>-raycluster-<suffix>``); selecting on the labels KubeRay puts on *every* Ray pod
  (``ray.io/is-ray-node: "yes"``, ``ray.io/node-type: head|worker``; KubeRay constant.go
  ``RayNodeLabelKey`` / ``RayNodeTypeLabelKey``) covers them without knowing those names.

The trust boundary is therefore the namespace: Ray pods of different clusters in the Ray namespace may
reach each other (they run the same workloads with the same service account); nothing outside the
namespace reaches a Ray pod except Prometheus (metrics ports) and the KubeRay operator (head dashboard
and GCS ports). Egress is not restricted (Ray pods pull images, read S3, talk to Redis and the API).

``kubectl port-forward`` keeps working: the API server asks the kubelet to open a stream, and the
kubelet's container runtime connects to the port *inside the pod's network namespace* (loopback), so
the connection never crosses the pod's network interface where policies are enforced. Kubelet probes
KubeRay adds are exec probes (run inside the container) and are not affected either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from components import contract
from components.builders.monitoring import RAY_AUTOSCALER_METRICS_PORT, RAY_DASHBOARD_METRICS_PORT

API_VERSION = "networking.k8s.io/v1"
# Labels KubeRay sets on every pod of every RayCluster, including RayJob and RayService clusters
# (KubeRay v1.7.0 constant.go: RayNodeLabelKey, RayNodeTypeLabelKey).
RAY_NODE_LABEL = "ray.io/is-ray-node"
RAY_NODE_SELECTOR: Mapping[str, str] = {RAY_NODE_LABEL: "yes"}
HEAD_SELECTOR: Mapping[str, str] = {contract.RAY_NODE_TYPE_LABEL: "head"}
# The label the API server sets on every namespace (immutable, equal to its name).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The kuberay-operator chart's pod label (helm-chart/kuberay-operator/templates/_helpers.tpl:
# app.kubernetes.io/name is the chart name unless nameOverride is set; this stack never sets it).
KUBERAY_OPERATOR_SELECTOR: Mapping[str, str] = {"app.kubernetes.io/name": "kuberay-operator"}
# Prometheus pods of kube-prometheus-stack: the Prometheus operator labels every pod of a Prometheus
# StatefulSet app.kubernetes.io/name=prometheus (prometheus-operator pkg/prometheus statefulset labels).
PROMETHEUS_SELECTOR: Mapping[str, str] = {"app.kubernetes.io/name": "prometheus"}
# Set by this stack on RayJob submitter pods (build_submitter_template): they call the head's Jobs API.
SUBMITTER_LABEL = "ray-on-eks/role"
SUBMITTER_VALUE = "ray-job-submitter"
SUBMITTER_SELECTOR: Mapping[str, str] = {SUBMITTER_LABEL: SUBMITTER_VALUE}

# Ports the head serves to the operator: the dashboard (Jobs API, Serve API; RayJob and RayService
# status) and the GCS.
OPERATOR_PORTS = (contract.RAY_DASHBOARD_PORT, contract.RAY_GCS_PORT)
# The node metrics port on every Ray pod, plus the head's dashboard and autoscaler metrics ports
# (components/builders/monitoring.py scrapes these).
METRICS_PORTS = (contract.RAY_METRICS_PORT,)
HEAD_EXTRA_METRICS_PORTS = (RAY_DASHBOARD_METRICS_PORT, RAY_AUTOSCALER_METRICS_PORT)


def _ports(numbers: Iterable[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in numbers]


def _policy(
    name: str, namespace: str, pod_labels: Mapping[str, str], ingress: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "ray-on-eks"},
        },
        "spec": {
            "podSelector": {"matchLabels": dict(pod_labels)} if pod_labels else {},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _from_namespace(namespace: str, pod_labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
        "podSelector": {"matchLabels": dict(pod_labels)},
    }


def build_network_policies(
    *,
    namespace: str,
    kuberay_namespace: str,
    monitoring_namespace: str | None,
    expose_dashboards: bool = False,
) -> list[dict[str, Any]]:
    """The NetworkPolicies of the Ray namespace, named ``ray-<what they allow>``.

    * ``ray-default-deny-ingress``: every pod in the namespace, no ingress rule (deny);
    * ``ray-allow-ray-nodes``: Ray pods accept any port from Ray pods of the namespace (GCS, raylet,
      object manager, worker ports are dynamic);
    * ``ray-allow-job-submitters``: the head's dashboard port from RayJob submitter pods;
    * ``ray-allow-kuberay-operator``: the head's dashboard and GCS ports from the operator's pods;
    * ``ray-allow-prometheus`` (with monitoring): metrics ports from Prometheus' pods;
    * ``ray-allow-dashboard-load-balancer`` (``expose_dashboards``): the head's dashboard port from
      anywhere, because the internal NLB forwards client addresses; token auth still guards it.
    """
    policies = [
        _policy("ray-default-deny-ingress", namespace, {}, []),
        _policy(
            "ray-allow-ray-nodes",
            namespace,
            RAY_NODE_SELECTOR,
            [{"from": [{"podSelector": {"matchLabels": dict(RAY_NODE_SELECTOR)}}]}],
        ),
        _policy(
            "ray-allow-job-submitters",
            namespace,
            HEAD_SELECTOR,
            [
                {
                    "from": [{"podSelector": {"matchLabels": dict(SUBMITTER_SELECTOR)}}],
                    "ports": _ports([contract.RAY_DASHBOARD_PORT]),
                }
            ],
        ),
        _policy(
            "ray-allow-kuberay-operator",
            namespace,
            HEAD_SELECTOR,
            [
                {
                    "from": [_from_namespace(kuberay_namespace, KUBERAY_OPERATOR_SELECTOR)],
                    "ports": _ports(OPERATOR_PORTS),
                }
            ],
        ),
    ]
    if monitoring_namespace is not None:
        prometheus = [_from_namespace(monitoring_namespace, PROMETHEUS_SELECTOR)]
        policies.append(
            _policy(
                "ray-allow-prometheus",
                namespace,
                RAY_NODE_SELECTOR,
                [{"from": prometheus, "ports": _ports(METRICS_PORTS)}],
            )
        )
        policies.append(
            _policy(
                "ray-allow-prometheus-head",
                namespace,
                HEAD_SELECTOR,
                [{"from": prometheus, "ports": _ports(HEAD_EXTRA_METRICS_PORTS)}],
            )
        )
    if expose_dashboards:
        policies.append(
            _policy(
                "ray-allow-dashboard-load-balancer",
                namespace,
                HEAD_SELECTOR,
                [{"ports": _ports([contract.RAY_DASHBOARD_PORT])}],
            )
        )
    return policies

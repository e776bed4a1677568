"""Helm values for the ``kuberay-operator`` chart (the version pinned in ``components/versions.py``).

Pure: plain values in, a plain dict out. Every key path set here exists in the chart's default
``values.yaml`` (Helm silently ignores a misspelt key); ``tests/components/builders/test_kuberay.py``
walks the dict against the upstream file. The exceptions are documented in :data:`FREE_FORM_KEYS`
and :data:`COMMENTED_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from components.versions import KUBERAY_FEATURE_GATES

# Values whose contents are free-form by design: any key below them is legal.
FREE_FORM_KEYS = frozenset(
    {
        "resources",  # a Kubernetes ResourceRequirements (requests are commented out in the chart)
        "nodeSelector",
        "labels",
        "annotations",
        "podSecurityContext",
        "securityContext",
        "metrics.serviceMonitor.additionalLabels",
    }
)
# Keys the chart documents only as comments in values.yaml (``# watchNamespace: [n1, n2]``) and reads
# in its templates (``deployment.yaml``: ``--watch-namespace``).
COMMENTED_KEYS = frozenset({"watchNamespace"})

# The rayproject/operator image runs as uid 65532 ("nonroot"); the chart already sets a restricted
# container securityContext (non-root, no privilege escalation, read-only root, ALL capabilities
# dropped, RuntimeDefault seccomp). The pod-level context is empty upstream, so set it too.
OPERATOR_POD_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def build_feature_gates(overrides: Mapping[str, bool]) -> list[dict[str, Any]]:
    """The chart's full ``featureGates`` list with ``overrides`` applied.

    Helm replaces lists wholesale, so sending only the overrides would silently switch the other
    default-on gates off. Raises ``ValueError`` for a gate this KubeRay release does not know.
    """
    unknown = sorted(set(overrides) - set(KUBERAY_FEATURE_GATES))
    if unknown:
        raise ValueError(
            f"unknown KubeRay feature gate(s) {', '.join(unknown)}; "
            f"known gates: {', '.join(KUBERAY_FEATURE_GATES)}"
        )
    merged = {**KUBERAY_FEATURE_GATES, **overrides}
    return [{"name": name, "enabled": enabled} for name, enabled in merged.items()]


def build_kuberay_values(
    *,
    cpu: str,
    memory: str,
    feature_gates: Mapping[str, bool],
    batch_scheduler: str | None,
    watch_namespaces: Sequence[str],
    service_monitor: bool,
    service_monitor_labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Values for the kuberay-operator chart.

    * ``cpu`` / ``memory``: requests = limits (a guaranteed-QoS operator is not evicted first).
    * ``watch_namespaces``: the operator's informers only see these namespaces. RBAC stays
      cluster-scoped (``singleNamespaceInstall: false``): the chart's namespaced Roles would have to be
      created inside the Ray namespace, which the RayClusterStack creates *after* the operator.
    * ``service_monitor``: a ServiceMonitor for the operator's control-plane metrics (monitoring
      selects ServiceMonitors in every namespace regardless of labels; ``service_monitor_labels`` is
      there for Prometheus setups that do filter on labels).
    """
    values: dict[str, Any] = {
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory},
        },
        "featureGates": build_feature_gates(feature_gates),
        "podSecurityContext": dict(OPERATOR_POD_SECURITY_CONTEXT),
        "singleNamespaceInstall": False,
        "metrics": {
            "enabled": True,
            "serviceMonitor": {
                "enabled": service_monitor,
                "additionalLabels": dict(service_monitor_labels or {}),
            },
        },
    }
    if watch_namespaces:
        values["watchNamespace"] = list(dict.fromkeys(watch_namespaces))
    if batch_scheduler:
        values["batchScheduler"] = {"enabled": False, "name": batch_scheduler}
    if node_selector:
        values["nodeSelector"] = dict(node_selector)
    return values


def build_operator_service_monitor(
    *, namespace: str, chart_name: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A ServiceMonitor for the operator's ``/metrics`` (what the chart's ``metrics.serviceMonitor``
    would render), created outside the Helm release.

    Why not the chart's: a ServiceMonitor needs the monitoring.coreos.com CRDs, so with it inside the
    chart the operator release had to wait for the whole kube-prometheus-stack release, and every Ray
    resource (which waits for the operator) with it: a serial chain on the deploy critical path
    (bench/RESULTS.md, "Deploy critical path"). Outside the chart only this object waits for monitoring.
    The chart's Service (templates/service.yaml, KubeRay v1.7.0) is labelled
    ``app.kubernetes.io/name: <chart name>`` and names its port ``http``; the chart's own ServiceMonitor
    (templates/servicemonitor.yaml) scrapes ``/metrics`` there every 30s with ``honorLabels``.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": chart_name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "ray-on-eks", **dict(labels or {})},
        },
        "spec": {
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "honorLabels": True}],
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": {"app.kubernetes.io/name": chart_name}},
        },
    }

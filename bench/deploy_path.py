"""Deploy critical path of the ``sandbox`` stack: the dependency graph ``pulumi up`` schedules, times
typical creation times per resource, from nothing to Ray ready.

No cloud here, so nothing is timed on AWS: the graph is the real one (``__main__.py`` under mocks,
every dependency the engine would see: declared, property and provider dependencies, a dependency on
a component expanded to its children), and each resource gets the typical time of its operation from
the table :data:`TYPICAL_S`, each row with its source. The engine creates a resource as soon as all
its dependencies are created (parallelism unbounded here; ``pulumi up`` defaults to a large
``--parallel``), so the deploy takes the longest path.

Compared in the same run: the same graph with the edge this repository removed for issue 13 (the
KubeRay operator release waiting for the whole kube-prometheus-stack release because the chart's
ServiceMonitor needs its CRDs). Target: critical path <= 1.0 x that previous graph's, and the
share of the path spent after the cluster is reported, since the cluster itself (EKS control plane)
is the unavoidable part.

Run: ``python -m bench.deploy_path``
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/deploy_path.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common

NAME = "deploy_path"
STACK = "sandbox"
TARGET_RATIO = 1.0

# Typical seconds from create call to "created" as the provider reports it, with the source. These
# are typical values, not measurements; rerun with your own numbers by editing this table.
TYPICAL_S: dict[str, tuple[float, str]] = {
    "awsx:ec2:Vpc": (
        150.0,
        "VPC, subnets, route tables: seconds; the NAT gateway dominates (AWS VPC user guide, "
        "nat-gateway-working-with: state pending until available, typically 1-3 min)",
    ),
    "eks:index:Cluster": (
        720.0,
        "EKS control plane to ACTIVE (EKS user guide create-cluster: 'Cluster provisioning takes several "
        "minutes'; 10-15 min is what pulumi-eks and eksctl users report) plus pulumi-eks' OIDC provider",
    ),
    "aws:eks/addon:Addon": (
        120.0,
        "EKS add-on to ACTIVE: the provider waits for its pods, which on Auto Mode first need a node "
        "(Karpenter launch + join, ~1 min)",
    ),
    "kubernetes:helm.sh/v3:Release": (
        90.0,
        "helm.v3.Release waits for every Deployment/StatefulSet Ready (pulumi-kubernetes await); a chart "
        "with one small Deployment on a fresh Auto Mode node",
    ),
    "kubernetes:ray.io/v1:RayCluster": (
        300.0,
        "pulumi.com/waitFor .status.state=ready: Auto Mode launches a node for the head (~1 min) and "
        "pulls the rayproject/ray image (several GB, 2-4 min)",
    ),
    "aws:iam/role:Role": (5.0, "IAM is eventually consistent; CreateRole returns in about a second"),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": (5.0, "one EKS API call"),
    "aws:eks/accessEntry:AccessEntry": (5.0, "one EKS API call"),
}
# A specific resource whose time differs from its type's.
TYPICAL_BY_NAME_S: dict[str, tuple[float, str]] = {
    "monitoring-kube-prometheus-stack": (
        300.0,
        "kube-prometheus-stack: operator, Prometheus StatefulSet whose gp3 claim binds once its pod is "
        "scheduled (WaitForFirstConsumer), Grafana, kube-state-metrics, node-exporter on new nodes",
    ),
}
DEFAULT_S = (2.0, "a Kubernetes object or an AWS control-plane call that returns at once")
ZERO_TYPES = ("pulumi:providers:", "random:")

# The edge removed for issue 13: previously the operator release waited for the monitoring release.
PREVIOUS_EDGES = (("kuberay-release", "monitoring-kube-prometheus-stack"),)


def _duration(resource: Any) -> tuple[float, str]:
    if resource.name in TYPICAL_BY_NAME_S:
        return TYPICAL_BY_NAME_S[resource.name]
    if resource.type.startswith(ZERO_TYPES):
        return 0.0, "no cloud operation"
    if resource.type == "kubernetes:ray.io/v1:RayJob":
        # A RayJob is applied and returns (its run is not awaited by `up`).
        return DEFAULT_S
    return TYPICAL_S.get(resource.type, DEFAULT_S)


def graph(run: Any) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Custom resources by URN and, for each, the custom resources it waits for before creation."""
    by_urn = {r.urn: r for r in run.resources}
    children: dict[str, list[str]] = {}
    for r in run.resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r.urn)

    def is_node(r: Any) -> bool:
        # Custom resources, and remote components (pulumi-eks Cluster, awsx Vpc): their children
        # live in the provider's process and are not registered under mocks.
        return bool(r.custom or (r.urn not in children and not r.type.startswith("pulumi:pulumi:")))

    def expand(urn: str) -> set[str]:
        node = by_urn.get(urn)
        if node is None:
            return set()
        if is_node(node):
            return {urn}
        out: set[str] = set()
        for child in children.get(urn, []):
            out |= expand(child)
        return out

    custom = {u: r for u, r in by_urn.items() if is_node(r)}
    waits: dict[str, set[str]] = {}
    for urn, r in custom.items():
        deps: set[str] = set()
        for dep in r.dependencies:
            deps |= expand(dep)
        if r.provider:
            # A provider reference is "<provider URN>::<provider id>".
            provider_urn = r.provider.rsplit("::", 1)[0]
            deps |= expand(provider_urn)
        waits[urn] = deps - {urn}
    return custom, waits


def critical_path(custom: dict[str, Any], waits: dict[str, set[str]]) -> tuple[float, list[str], float]:
    """(length in s, the URNs on the longest path in order, sum of every duration)."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}

    def done(urn: str) -> float:
        if urn not in finish:
            start, before = 0.0, None
            for dep in waits[urn]:
                if done(dep) > start:
                    start, before = finish[dep], dep
            finish[urn] = start + _duration(custom[urn])[0]
            via[urn] = before
        return finish[urn]

    end = max(custom, key=done)
    path: list[str] = []
    cursor: str | None = end
    while cursor is not None:
        path.append(cursor)
        cursor = via[cursor]
    return finish[end], path[::-1], sum(_duration(r)[0] for r in custom.values())


def with_edges(
    custom: dict[str, Any], waits: dict[str, set[str]], edges: tuple[tuple[str, str], ...]
) -> dict[str, set[str]]:
    """``waits`` plus ``(waiter, waited)`` edges given by resource name."""
    by_name = {r.name: u for u, r in custom.items()}
    out = {u: set(d) for u, d in waits.items()}
    for waiter, waited in edges:
        if waiter in by_name and waited in by_name:
            out[by_name[waiter]].add(by_name[waited])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=1)
    args = parser.parse_args(argv)
    run_info = common.Run(
        NAME,
        "Deploy critical path (sandbox stack)",
        "The sandbox stack's dependency graph (the real program under mocks) times typical creation "
        "times (sources in the table): the longest chain `pulumi up` waits for, from nothing to a ready "
        "RayCluster. Compared in the same run with the graph before issue 13 (operator release waiting for "
        "the monitoring release).",
        args,
    )
    from tests.pulumi_harness import run_program

    run = run_program(STACK, crd_schemas=True)  # the real program: CRDs in full
    if run.error is not None:
        raise RuntimeError(f"Pulumi.{STACK}.yaml failed under mocks: {run.error!r}")
    custom, waits = graph(run)
    length, path, serial = critical_path(custom, waits)
    old_length, old_path, _ = critical_path(custom, with_edges(custom, waits, PREVIOUS_EDGES))
    cluster = next(u for u, r in custom.items() if r.type == "eks:index:Cluster")
    infra = max((length_to(custom, waits, cluster)), 0.0)
    rows = []
    elapsed = 0.0
    for urn in path:
        seconds, source = _duration(custom[urn])
        elapsed += seconds
        rows.append([custom[urn].name, custom[urn].type, f"{seconds:.0f}", f"{elapsed:.0f}", source])
    ratio = common.ratio(length, old_length)
    targets = [common.target("critical path / previous graph's", ratio, TARGET_RATIO)]
    notes = [
        f"critical path {length / 60:.1f} min; before issue 13 {old_length / 60:.1f} min "
        f"({' -> '.join(custom[u].name for u in old_path)}); all resources one after another "
        f"{serial / 60:.1f} min ({common.fmt_x(common.ratio(length, serial))} of that).",
        f"VPC + EKS cluster (the unavoidable start of every path): {infra / 60:.1f} min, "
        f"{100 * infra / length:.0f}% of the critical path.",
        "Decision: the KubeRay operator's ServiceMonitor is created outside its chart and alone waits for "
        "the monitoring release (it needs the monitoring.coreos.com CRDs); the operator release and the "
        "Ray resources no longer wait for kube-prometheus-stack.",
        "Ray waits for the operator release (its admission and reconcile need the operator running) and "
        "for the Ray NodePools (so `pulumi destroy` deletes Ray pods before the NodePools): both needed.",
        "Durations are typical values with sources, not measurements (no AWS account here); the graph is "
        "measured. Edit TYPICAL_S in bench/deploy_path.py with your own numbers and rerun.",
    ]
    run_info.write(
        settings={"stack": STACK, "resources": len(custom)},
        targets=targets,
        table={
            "columns": ["resource (critical path)", "type", "typical s", "elapsed s", "source"],
            "rows": rows,
        },
        notes=notes,
        results={
            "critical_path_s": length,
            "previous_critical_path_s": old_length,
            "serial_sum_s": serial,
            "infra_s": infra,
            "path": [custom[u].name for u in path],
            "previous_path": [custom[u].name for u in old_path],
        },
    )
    return 0


def length_to(custom: dict[str, Any], waits: dict[str, set[str]], target_urn: str) -> float:
    """Finish time of ``target_urn`` (the longest chain ending at it)."""
    keep = {target_urn}
    frontier = [target_urn]
    while frontier:
        for dep in waits[frontier.pop()]:
            if dep not in keep:
                keep.add(dep)
                frontier.append(dep)
    sub = {u: custom[u] for u in keep}
    length, _, _ = critical_path(sub, {u: waits[u] & keep for u in keep})
    return length


if __name__ == "__main__":
    raise SystemExit(main())

"""Secure defaults of every stack file, asserted on what the program registers under mocks.

Ray pods run as non-root, unprivileged, without privilege escalation; the Ray head (dashboard)
Service stays ClusterIP; Ray token authentication is on; no secret is ever sent in plaintext.

These tests demand that the resources they check exist (a RayCluster per stack, the monitoring
Helm release when monitoring is on): they fail until the components that create them are merged,
rather than passing vacuously.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policy import checks
from tests import pulumi_harness as harness
from tests.pulumi_harness import SECRET_SIG, SECRET_VALUE, ProgramRun, Registered, run_ok, run_program

RAY_KINDS = ("RayCluster", "RayJob", "RayService")
# The harness's RandomPassword mock returns results starting with this marker.
MOCK_PASSWORD_MARKER = "Mock-Pw-"
# Keys whose string value is itself a credential (lower-case, without '-' and '_').
_SECRET_KEY = re.compile(r"(password|passwd|token|secret|apikey|secretkey|accesskey|credentials?)$")
# ...except keys that *name* or *configure* a credential rather than hold one.
_REFERENCE_KEYS = frozenset({"existingsecret", "secretname", "tokenauth"})


def _config_flag(run: ProgramRun, key: str, default: bool) -> bool:
    value = run.config.get(f"ray-on-eks:{key}")
    return default if value is None else value == "true"


def _config_section(run: ProgramRun, key: str) -> dict[str, Any]:
    value = run.config.get(f"ray-on-eks:{key}")
    return json.loads(value) if value else {}


def _ray_resources(run: ProgramRun) -> list[Registered]:
    resources = [r for kind in RAY_KINDS for r in run.custom_resources(kind)]
    clusters = run.custom_resources("RayCluster")
    assert clusters, (
        f"Pulumi.{run.stack}.yaml registers no RayCluster (needs the KubeRay/RayClusterStack components)"
    )
    return resources


def _is_secret(node: Any) -> bool:
    return isinstance(node, dict) and node.get(SECRET_SIG) == SECRET_VALUE


def _plaintext(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every value on the wire that is NOT inside a secret wrapper."""
    if _is_secret(node):
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if _is_secret(value):
                continue
            child = f"{path}.{key}" if path else str(key)
            yield child, key, value
            yield from _plaintext(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if _is_secret(value):
                continue
            yield f"{path}[{index}]", index, value
            yield from _plaintext(value, f"{path}[{index}]")


# --------------------------------------------------------------------------------------------------
# Ray pods
# --------------------------------------------------------------------------------------------------


def test_ray_pods_run_as_non_root_unprivileged(stack_run: ProgramRun) -> None:
    checked = 0
    for resource in _ray_resources(stack_run):
        assert checks.check_ray_pod_security(resource.type, resource.inputs) == [], resource.name
        for path, pod in checks.ray_pod_specs(resource.type, resource.inputs):
            pod_ctx = pod.get("securityContext") or {}
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                ctx = container.get("securityContext") or {}
                where = f"{resource.name} {path} {container.get('name')}"
                user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
                non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
                assert non_root is True or (isinstance(user, int) and user > 0), where
                assert user != 0, where
                assert ctx.get("privileged") is not True, where
                assert ctx.get("allowPrivilegeEscalation") is False, where
                checked += 1
    assert checked >= 2, "expected at least the head and one worker container"


def test_every_ray_container_is_sized_and_pinned(stack_run: ProgramRun) -> None:
    for resource in _ray_resources(stack_run):
        assert checks.check_ray_container_resources(resource.type, resource.inputs) == []
        assert checks.check_images_pinned(resource.type, resource.inputs) == []
        assert checks.check_ray_version_matches_image(resource.type, resource.inputs) == []


def test_the_dashboard_service_is_cluster_ip(stack_run: ProgramRun) -> None:
    exposed_allowed = _config_flag(stack_run, "exposeDashboards", False)
    for resource in _ray_resources(stack_run):
        for _, spec in checks.ray_cluster_specs(resource.type, resource.inputs):
            head = spec["headGroupSpec"]
            if not exposed_allowed:
                assert head.get("serviceType") in (None, "ClusterIP"), resource.name
                assert head.get("enableIngress") in (None, False), resource.name
    for resource in stack_run.resources:
        # No allow_exposed: with exposeDashboards the program's own annotation must satisfy the check.
        assert checks.check_dashboards_not_exposed(resource.type, resource.inputs) == [], resource.name


def test_ray_token_authentication_is_on(stack_run: ProgramRun) -> None:
    assert _config_flag(stack_run, "tokenAuth", True), f"Pulumi.{stack_run.stack}.yaml turns tokenAuth off"
    specs = [
        (r.name, spec)
        for r in _ray_resources(stack_run)
        for _, spec in checks.ray_cluster_specs(r.type, r.inputs)
    ]
    assert specs
    for name, spec in specs:
        assert spec.get("authOptions", {}).get("mode") == "token", name


def test_token_auth_off_is_honoured() -> None:
    run = run_ok("dev", {"tokenAuth": False})
    clusters = run.custom_resources("RayCluster")
    assert clusters
    for cluster in clusters:
        assert (cluster.inputs["spec"].get("authOptions") or {}).get("mode") in (None, "disabled")


# --------------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------------


def password_leaks(wire: dict[str, Any]) -> list[str]:
    """Paths where a generated (mock) password appears outside a secret wrapper."""
    return [
        path
        for path, _, value in _plaintext(wire)
        if isinstance(value, str) and MOCK_PASSWORD_MARKER in value
    ]


def credential_literals(wire: dict[str, Any]) -> list[str]:
    """Paths of credential-named keys (or env vars) holding a plaintext literal."""
    problems = []
    for path, key, value in _plaintext(wire):
        if isinstance(key, str) and isinstance(value, str) and value and not value.startswith("$("):
            normalized = re.sub(r"[-_]", "", key.lower())
            if _SECRET_KEY.search(normalized) and normalized not in _REFERENCE_KEYS:
                problems.append(path)
        if isinstance(value, dict) and isinstance(value.get("name"), str) and "value" in value:
            env_name = re.sub(r"[-_]", "", value["name"].lower())
            literal = value["value"]
            if (
                _SECRET_KEY.search(env_name)
                and not _is_secret(literal)
                and isinstance(literal, str)
                and literal
            ):
                problems.append(f"{path} (env {value['name']})")
    return problems


SECRET_WRAPPED = {SECRET_SIG: SECRET_VALUE, "value": "Mock-Pw-xxxxxxxx"}


def test_the_plaintext_scanners_find_leaks_and_respect_secret_wrappers() -> None:
    leaky = {
        "values": {
            "grafana": {"adminPassword": "Mock-Pw-xxxxxxxx", "admin": {"existingSecret": "grafana-admin"}}
        },
        "spec": {"env": [{"name": "HF_TOKEN", "value": "hf_abc"}, {"name": "REDIS_PASSWORD", "value": ""}]},
    }
    assert password_leaks(leaky) == ["values.grafana.adminPassword"]
    assert credential_literals(leaky) == ["values.grafana.adminPassword", "spec.env[0] (env HF_TOKEN)"]
    safe = {
        "values": {"grafana": {"adminPassword": SECRET_WRAPPED, "admin": {"passwordKey": "admin-password"}}},
        "spec": {
            "env": [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                {"name": "RAY_AUTH_TOKEN", "value": SECRET_WRAPPED},
            ],
            "tokenAuth": True,
        },
        "stringData": SECRET_WRAPPED,
    }
    assert password_leaks(safe) == []
    assert credential_literals(safe) == []


def test_generated_passwords_never_travel_in_plaintext(stack_run: ProgramRun) -> None:
    leaks = [
        f"{r.type} {r.name}: {path}" for r in stack_run.resources for path in password_leaks(r.wire_inputs)
    ]
    assert leaks == [], "a generated password is sent without Output.secret:\n" + "\n".join(leaks)
    for key, value in stack_run.exports.items():
        if key not in stack_run.secret_exports:
            assert MOCK_PASSWORD_MARKER not in json.dumps(value, default=str), key


def test_credential_keys_hold_no_plaintext_literals(stack_run: ProgramRun) -> None:
    problems = [
        f"{r.type} {r.name}: {path}"
        for r in stack_run.resources
        for path in credential_literals(r.wire_inputs)
    ]
    assert problems == [], "credentials must come from Secrets or Pulumi secrets:\n" + "\n".join(problems)


def test_kubernetes_secrets_are_pulumi_secrets(stack_run: ProgramRun) -> None:
    for secret in stack_run.of_type(checks.SECRET):
        for field in ("data", "stringData"):
            if field in secret.wire_inputs:
                assert secret.has_secret_at(field), f"{secret.name}.{field} is not a Pulumi secret"


def _monitoring_release(run: ProgramRun) -> Registered:
    releases = [
        r
        for r in run.resources
        if r.type in (checks.HELM_RELEASE, checks.HELM_CHART)
        and "kube-prometheus-stack" in str(r.inputs.get("chart"))
    ]
    assert len(releases) == 1, (
        f"Pulumi.{run.stack}.yaml enables monitoring but registers {len(releases)} kube-prometheus-stack "
        "releases (needs the Monitoring component)"
    )
    return releases[0]


def test_grafana_admin_password_is_kept_secret(stack_run: ProgramRun) -> None:
    if not _config_section(stack_run, "monitoring").get("enabled", False):
        assert not any("kube-prometheus-stack" in str(r.inputs.get("chart")) for r in stack_run.resources)
        return
    release = _monitoring_release(stack_run)
    grafana = (release.inputs.get("values") or {}).get("grafana") or {}
    if "adminPassword" in grafana:
        assert release.has_secret_at("values", "grafana", "adminPassword"), (
            "grafana.adminPassword in plaintext"
        )
    existing = (grafana.get("admin") or {}).get("existingSecret")
    assert existing or "adminPassword" in grafana, (
        "Grafana's admin password must be generated by the program and passed as a Secret "
        "(grafana.admin.existingSecret) or a Pulumi secret (grafana.adminPassword)"
    )
    if existing:
        secrets = [
            s
            for s in stack_run.of_type(checks.SECRET)
            if (s.inputs.get("metadata") or {}).get("name") == existing
        ]
        assert len(secrets) == 1, f"grafana.admin.existingSecret {existing!r} is not created by the program"
        password_key = (grafana.get("admin") or {}).get("passwordKey", "admin-password")
        content = {**(secrets[0].inputs.get("data") or {}), **(secrets[0].inputs.get("stringData") or {})}
        assert password_key in content, f"Secret {existing} has no key {password_key!r}"


def test_redis_password_comes_from_the_configured_secret() -> None:
    ref = {"name": "redis-auth", "key": "password"}
    run = run_program(
        "dev",
        {
            "gcsFaultTolerance": {
                "enabled": True,
                "redisAddress": "redis.example:6379",
                "redisPasswordSecret": ref,
            }
        },
    )
    assert run.error is None, run.error
    clusters = run.custom_resources("RayCluster")
    assert clusters, "no RayCluster (needs the KubeRay/RayClusterStack components)"
    for cluster in clusters:
        refs = [
            value
            for _, key, value in checks.walk(cluster.inputs)
            if key == "secretKeyRef" and isinstance(value, dict)
        ]
        assert any(r.get("name") == ref["name"] and r.get("key") == ref["key"] for r in refs), (
            f"{cluster.name}: the Redis password is not read from Secret redis-auth/password"
        )
        for path, key, value in checks.walk(cluster.inputs):
            if isinstance(key, str) and "redispassword" in key.lower().replace("_", ""):
                assert not isinstance(value, str), f"{cluster.name}: {path} is a literal Redis password"
            if isinstance(value, dict) and "redis" in str(value.get("name", "")).lower():
                assert not value.get("value"), (
                    f"{cluster.name}: {path} passes the Redis password as a literal"
                )


def test_the_harness_keeps_generated_passwords_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the engine, the mocks return ``additionalSecretOutputs`` (RandomPassword.result) as secrets,
    so the leak scan above flags only real leaks (a password laundered out of its secret)."""
    program = tmp_path / "__main__.py"
    program.write_text(
        "import pulumi, pulumi_random as random\n"
        "pw = random.RandomPassword('pw', length=20)\n"
        "pulumi.export('derived', pw.result.apply(lambda r: r))\n"
    )
    monkeypatch.setattr(harness, "MAIN", program)
    run = run_ok("dev")
    assert run.exports["derived"].startswith(MOCK_PASSWORD_MARKER)
    assert "derived" in run.secret_exports

"""The HyperPod stuck-pod cleanup script, run for real by /bin/sh against a fake ``kubectl`` on PATH.

tests/fakes/kubectl.py serves pod lists with kubectl's selector and output semantics, so the
script's own filtering (label and field selectors, awk on the reason, xargs) is what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.builders.ray import build_stuck_pod_cleanup_spec, stuck_pod_cleanup_script

FAKE = Path(__file__).resolve().parents[2] / "fakes" / "kubectl.py"


def _pod(
    name: str, namespace: str = "ray", *, ray: bool = True, phase: str = "Running", reason: str | None = None
) -> dict[str, Any]:
    labels = {"ray.io/node-type": "worker", "ray.io/cluster": "ray"} if ray else {"app": "other"}
    status: dict[str, Any] = {"phase": phase}
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "status": status}


def _run(
    tmp_path: Path, pods: list[dict[str, Any]], script: str
) -> tuple[subprocess.CompletedProcess[str], list[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "kubectl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    shim.chmod(0o755)
    state, log = tmp_path / "pods.json", tmp_path / "calls.log"
    state.write_text(json.dumps(pods))
    log.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_KUBECTL_PODS": str(state),
        "FAKE_KUBECTL_LOG": str(log),
    }
    result = subprocess.run(
        ["/bin/sh", "-c", script], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    left = [p["metadata"]["name"] for p in json.loads(state.read_text())]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return result, left, calls


def test_only_ray_pods_rejected_at_admission_in_the_namespace_are_deleted(tmp_path: Path) -> None:
    pods = [
        _pod("ray-worker-stuck-a", phase="Failed", reason="UnexpectedAdmissionError"),
        _pod("ray-worker-stuck-b", phase="Failed", reason="UnexpectedAdmissionError"),
        _pod("ray-worker-running"),
        _pod("ray-worker-evicted", phase="Failed", reason="Evicted"),
        _pod("ray-worker-failed", phase="Failed"),  # no reason: <none>
        _pod("other-app-stuck", ray=False, phase="Failed", reason="UnexpectedAdmissionError"),
        _pod("ray-worker-elsewhere", namespace="team-b", phase="Failed", reason="UnexpectedAdmissionError"),
    ]
    result, left, calls = _run(tmp_path, pods, stuck_pod_cleanup_script("ray"))
    assert result.returncode == 0, result.stderr
    assert sorted(set(p["metadata"]["name"] for p in pods) - set(left)) == [
        "ray-worker-stuck-a",
        "ray-worker-stuck-b",
    ]
    (delete,) = [c for c in calls if c[0] == "delete"]
    assert delete[:4] == ["delete", "pod", "-n", "ray"] and "--wait=false" in delete


def test_nothing_stuck_means_no_delete_call(tmp_path: Path) -> None:
    result, left, calls = _run(tmp_path, [_pod("ray-worker-running")], stuck_pod_cleanup_script("ray"))
    assert result.returncode == 0, result.stderr
    assert left == ["ray-worker-running"]
    assert [c[0] for c in calls] == ["get"]


def test_a_failing_kubectl_fails_the_job(tmp_path: Path) -> None:
    # The fake rejects a field selector the API server does not support; the script must not hide it.
    broken = stuck_pod_cleanup_script("ray").replace("status.phase=Failed", "status.reason=X")
    result, _, calls = _run(tmp_path, [_pod("x", phase="Failed", reason="UnexpectedAdmissionError")], broken)
    assert result.returncode != 0
    assert [c[0] for c in calls] == ["get"]


@pytest.mark.parametrize("namespace", ["ray", "team-b"])
def test_the_cronjob_runs_exactly_this_script(namespace: str) -> None:
    spec = build_stuck_pod_cleanup_spec(namespace=namespace, service_account="ray-stuck-pod-cleanup")
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c", stuck_pod_cleanup_script(namespace)]

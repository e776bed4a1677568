"""Serve under replica loss, and fuzzed bodies over real HTTP, on a local Ray head.

On the session's local head (tests/workloads/conftest.py), the serve workload is deployed through the
CLI's own path (``jobs.deploy_serve``, the RayService's
document) with two replicas and a model on disk. Four client threads keep a bounded loopback load on
``POST /predict`` while a fifth polls ``/healthz``; one replica process is SIGKILLed. Every answer is
recorded: the deployment must be back to two RUNNING replicas (a new one replacing the killed one)
within ``RECOVERY_BOUND_S``, ``/healthz`` must never lie (every 200 carries the loaded model), and
failures stay inside the kill window.

The kill window is not the instant of the kill. The local head serves through HAProxy and direct
ingress, as a RayService does (workloads/serve_ingress.py): HAProxy keeps reusing its connections to
a replica (``http-reuse always`` in Ray 2.60's ``serve/_private/haproxy_templates.py``) until a failed
connection or health check marks it down, or Serve's controller, told of the death, removes it from
the configuration. ``RAY_SERVE_HAPROXY_RETRY_ON=conn-failure empty-response`` replays most requests
the dead replica drops, not all: in about one run of five here, one request that started 8-21 ms after
the kill got no answer ("Remote end closed connection without response"). So a failed request must
have been in flight at the kill or started within ``KILL_WINDOW_S`` after it, and there are at most
as many as were in flight plus one per client. A Serve that kept sending to the dead replica until the
controller replaced it (~15 s here) would fail thousands of the ~15,000 requests, not a handful.
The measured figures are printed (bench/RESULTS.md quotes them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.workloads.serve.test_serve_app import publish
from workloads import jobs
from workloads.catalog import get_workload, workload_env
from workloads.jobs import Target
from workloads.local_cluster import LocalCluster
from workloads.serve.config import APP_NAME, DEPLOYMENT_NAME

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CLIENTS = 4
WARMUP_REQUESTS = 40
RECOVERY_BOUND_S = 120.0  # generous for a loaded 2-core machine; the measured time is printed
LOAD_LIMIT_S = 240.0
AFTER_RECOVERY_S = 3.0
# HAProxy stops sending to the dead replica once a connection to it fails, milliseconds after the kill
# under this load; 10 s is generous on a loaded 2-core machine and short of the ~15 s replacement.
KILL_WINDOW_S = 10.0
BODY = json.dumps({"instances": [[1, 2, 3, 4]] * 8}).encode()


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int
    body: dict[str, Any]


def _request(url: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return int(error.code), json.loads(raw or b"{}")
        except ValueError:
            return int(error.code), {"raw": raw[:200].decode(errors="replace")}
    except (urllib.error.URLError, OSError, ValueError) as error:
        return -1, {"raw": str(error)}


def _replicas(target: Target) -> list[dict[str, Any]]:
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    details = ServeSubmissionClient(target.address, headers=target.headers()).get_serve_details()
    application = (details.get("applications") or {}).get(APP_NAME) or {}
    deployment = (application.get("deployments") or {}).get(DEPLOYMENT_NAME) or {}
    return list(deployment.get("replicas") or [])


def _running(target: Target) -> list[dict[str, Any]]:
    return [r for r in _replicas(target) if r.get("state") == "RUNNING"]


@pytest.fixture(scope="module")
def serving(local_dir: Path, ray_cluster: LocalCluster) -> Any:
    """The serve workload with two replicas on the session's local head (conftest.py), removed after."""
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    model_dir = local_dir / "reliability-model"
    publish(model_dir, epoch=7)
    target = Target(address=ray_cluster.dashboard_url)
    env = workload_env(get_workload("serve"), {"MODEL_PATH": str(model_dir)})
    jobs.deploy_serve(
        target,
        get_workload("serve"),
        env=env,
        staging_dir=local_dir / "reliability-stage",
        with_pip=False,
        output=print,
        http_host="127.0.0.1",
        http_port=ray_cluster.serve_port,
        num_replicas=2,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_running(target)) < 2:
            assert time.monotonic() < deadline, _replicas(target)
            time.sleep(0.5)
        yield ray_cluster, target
    finally:
        ServeSubmissionClient(target.address, headers=target.headers()).delete_applications()


def test_a_killed_replica_fails_only_requests_in_the_kill_window_and_is_replaced(serving: Any) -> None:
    head, target = serving
    predict_url, health_url = f"{head.serve_url}/predict", f"{head.serve_url}/healthz"
    answers: list[Answer] = []
    health: list[Answer] = []
    in_flight: dict[int, float] = {}  # request number -> start
    lock = threading.Lock()
    stop = threading.Event()
    numbers = iter(range(10**9))

    def client() -> None:
        while not stop.is_set():
            with lock:
                number = next(numbers)
                started = time.monotonic()
                in_flight[number] = started
            status, body = _request(predict_url, BODY)
            with lock:
                del in_flight[number]
                answers.append(Answer(started, time.monotonic(), status, body))

    def prober() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, body = _request(health_url)
            with lock:
                health.append(Answer(started, time.monotonic(), status, body))
            time.sleep(0.05)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    threads.append(threading.Thread(target=prober, daemon=True))
    load_start = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        while sum(1 for a in answers if a.status == 200) < WARMUP_REQUESTS:
            assert time.monotonic() - load_start < 120, answers[-5:]
            time.sleep(0.05)
        before = _running(target)
        assert len(before) == 2, before
        victim = random.Random(0).choice(before)
        with lock:  # nothing starts or finishes while the kill happens
            killed_at = time.monotonic()
            in_flight_at_kill = len(in_flight)
            os.kill(int(victim["pid"]), signal.SIGKILL)
        recovered_at = None
        while time.monotonic() - killed_at < LOAD_LIMIT_S:
            running = _running(target)
            ids = {r["replica_id"] for r in running}
            if len(running) == 2 and victim["replica_id"] not in ids:
                recovered_at = time.monotonic()
                break
            time.sleep(0.2)
        assert recovered_at is not None, _replicas(target)
        time.sleep(AFTER_RECOVERY_S)  # the load continues on the replaced deployment
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    recovery_s = recovered_at - killed_at

    failed = [a for a in answers if not 200 <= a.status < 300]
    # (seconds from the kill to its start, status, body) of every failed request, printed and asserted.
    failures = [(round(a.started - killed_at, 3), a.status, a.body) for a in failed]
    after_kill = [a for a in answers if a.ended >= killed_at]
    print(
        f"\nserve replica loss: {len(answers)} predict requests ({CLIENTS} clients) over "
        f"{time.monotonic() - load_start:.1f}s, {len(failed)} failed (statuses "
        f"{sorted({a.status for a in failed})}), {in_flight_at_kill} in flight at the kill; back to 2 "
        f"RUNNING replicas {recovery_s:.1f}s after the kill (bound {RECOVERY_BOUND_S:.0f}s); "
        f"{len(after_kill)} requests answered after the kill; {len(health)} /healthz probes, "
        f"{sum(1 for h in health if h.status != 200)} not 200; failures {failures}"
    )
    # Failures are the requests on the dead replica that HAProxy could not replay: those in flight at
    # the kill, plus at most one per client sent there before HAProxy marked the replica down.
    assert len(failed) <= in_flight_at_kill + CLIENTS, failures
    assert all(a.ended >= killed_at and a.started <= killed_at + KILL_WINDOW_S for a in failed), failures
    assert recovery_s <= RECOVERY_BOUND_S
    assert sum(1 for a in answers if a.started > recovered_at and a.status == 200) > 0
    # /healthz never lies: a 200 always names the loaded model; a failed probe is inside the kill window.
    for probe in health:
        if probe.status == 200:
            assert probe.body.get("status") == "ok" and probe.body["model"]["epoch"] == 7, probe
        else:
            assert probe.ended >= killed_at and probe.started <= killed_at + KILL_WINDOW_S, probe


def test_fuzzed_bodies_over_http_never_get_a_5xx(serving: Any) -> None:
    head, _ = serving
    rng = random.Random(16)
    alphabet = b'{}[]",:0123456789.-eE truefalsnul\\x'
    bodies = [bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(40)]
    bodies += [
        b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        json.dumps({"instances": [[10**400, 1, 2, 3]]}).encode(),
        b'{"instances": [[1e300, 1, 2, 3]]}',
        json.dumps({"instances": [[1, 2, 3, 4]] * 2000}).encode(),
    ]
    statuses = []
    for body in bodies:
        status, answer = _request(f"{head.serve_url}/predict", body)
        statuses.append(status)
        assert 200 <= status < 500, (status, answer, body[:100])
        if status >= 400:
            assert isinstance(answer.get("error"), str), answer
    print(f"\nserve HTTP fuzz: {len(bodies)} bodies, statuses {sorted(set(statuses))}")
    status, answer = _request(f"{head.serve_url}/healthz")
    assert status == 200 and answer["status"] == "ok"
    assert _request(f"{head.serve_url}/predict", BODY)[0] == 200

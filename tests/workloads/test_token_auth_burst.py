"""Token auth under load: a bounded burst of unauthenticated and wrong-token requests to the local head.

The head runs with Ray token authentication (``RAY_AUTH_MODE=token``, as every RayCluster of this
stack does). 16 threads send requests without a token, with a wrong one, or with malformed
``Authorization`` headers to the Jobs API and the dashboard's other APIs: every one must be refused
(401 or 403), while an authenticated job submitted during the burst succeeds and the head stays
healthy. The burst lasts until that job has finished (at least 480, at most 4000 requests). The figures
are printed (bench/RESULTS.md quotes them).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workloads import jobs, local_cluster
from workloads.jobs import Target
from workloads.local_cluster import LocalClusterSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

BURST_MIN = 480  # requests at least, and until the authenticated job has finished ...
BURST_MAX = 4000  # ... but never more than this
THREADS = 16
# Every protected kind of request: job listing, submission, one job, version (what the SDK probes),
# cluster state, actors, Serve applications (read and deploy).
REQUESTS: list[tuple[str, str, bytes | None]] = [
    ("GET", "/api/jobs/", None),
    ("POST", "/api/jobs/", json.dumps({"entrypoint": "echo pwned"}).encode()),
    ("GET", "/api/jobs/raysubmit_0123456789", None),
    ("GET", "/api/version", None),
    ("GET", "/nodes?view=summary", None),
    ("GET", "/api/cluster_status", None),
    ("GET", "/logical/actors", None),
    ("GET", "/api/serve/applications/", None),
    ("PUT", "/api/serve/applications/", json.dumps({"applications": []}).encode()),
]


def _headers(kind: str, token: str) -> dict[str, str]:
    return {
        "none": {},
        "wrong": {"Authorization": f"Bearer {secrets.token_hex(32)}"},
        "almost": {"Authorization": f"Bearer {token[:-1]}x"},
        "empty": {"Authorization": "Bearer "},
        "basic": {"Authorization": f"Basic {token}"},
        "huge": {"Authorization": "Bearer " + "a" * 8000},
    }[kind]


def _send(base: str, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{base}{path}", data=body, method=method, headers=headers)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return -1  # not answered at all: the head is not coping


def test_unauthenticated_burst_is_refused_while_an_authenticated_job_succeeds(tmp_path: Path) -> None:
    token = secrets.token_hex(32)
    head = local_cluster.start(
        tmp_path, LocalClusterSpec(num_cpus=2, token_auth=True, token=token, start_timeout_s=240), print
    )
    try:
        base = head.dashboard_url
        target = Target(address=base, token=token)
        client = jobs.job_client(target)
        kinds = ["none", "wrong", "almost", "empty", "basic", "huge"]
        plan = itertools.cycle(itertools.product(kinds, REQUESTS))
        answers: list[tuple[float, int]] = []  # (time answered, status)
        lock = threading.Lock()
        stop = threading.Event()

        issued = itertools.count(1)

        def attack() -> None:
            while True:
                with lock:
                    if stop.is_set() and len(answers) >= BURST_MIN:
                        return
                    if next(issued) > BURST_MAX:
                        return
                    kind, (method, path, body) = next(plan)
                status = _send(base, method, path, body, _headers(kind, token))
                with lock:
                    answers.append((time.monotonic(), status))

        burst_start = time.monotonic()
        attackers = [threading.Thread(target=attack, daemon=True) for _ in range(THREADS)]
        for thread in attackers:
            thread.start()
        while len(answers) < THREADS * 2 and time.monotonic() - burst_start < 60:
            time.sleep(0.05)
        # During the burst: an authenticated job is submitted and runs to completion.
        submit_at = time.monotonic()
        job_id = jobs.call(target, lambda: client.submit_job(entrypoint="python -c \"print('authorized')\""))
        outcome = jobs.follow(target, job_id, output=lambda _: None, timeout_s=300)
        finished_at = time.monotonic()
        stop.set()
        for thread in attackers:
            thread.join(timeout=120)
        burst_s = time.monotonic() - burst_start

        statuses = [status for _, status in answers]
        refused = sum(1 for status in statuses if status in (401, 403))
        overlapping = sum(1 for at, _ in answers if submit_at <= at <= finished_at)
        print(
            f"\ntoken burst: {len(statuses)} requests in {burst_s:.1f}s with {THREADS} threads, "
            f"{refused} refused (401/403), statuses {sorted(set(statuses))}; authenticated job "
            f"{outcome.status} in {finished_at - submit_at:.1f}s with {overlapping} refused requests meanwhile"
        )
        assert not any(thread.is_alive() for thread in attackers)
        assert BURST_MIN <= len(statuses) <= BURST_MAX
        assert refused == len(statuses), sorted(set(statuses))
        assert outcome.succeeded and "authorized" in outcome.logs
        assert overlapping >= THREADS, "the authenticated job did not run during the burst"
        # The head is healthy afterwards: its health endpoint, an authenticated API call, no leaks.
        assert _send(base, "GET", "/api/gcs_healthz", None, {}) == 200
        assert _send(base, "GET", "/api/version", None, {"Authorization": f"Bearer {token}"}) == 200
        listed = jobs.call(target, client.list_jobs)
        submitted = {job.submission_id for job in listed if job.submission_id}
        assert submitted == {job_id}, f"a refused submission created a job: {submitted}"
    finally:
        local_cluster.stop(head)

"""GCS fault tolerance with a real Redis: the local head keeps its GCS state in ``redis-server``.

The same settings a RayCluster's ``gcsFaultTolerance`` gives KubeRay (``RAY_REDIS_ADDRESS``, the Redis
password, ``RAY_external_storage_namespace``). Jobs are submitted and a detached actor is created; the
head is stopped (every process killed, its temp dir removed) and started again on the same Redis and
namespace: the job history and the detached actor are back. A wrong or missing password is one clear
error before anything starts. The Ray tests are integration-marked (run them under
``flock /work/ray.lock``); the password checks need only the Redis.
"""

from __future__ import annotations

import json
import re
import secrets
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.workloads.redis_server import RedisServer, redis_server
from workloads import jobs, local_cluster
from workloads.jobs import Target
from workloads.local_cluster import ExternalRedis, LocalClusterError, LocalClusterSpec

ACTOR_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import ray
    from ray.experimental import internal_kv

    ray.init(address="auto", namespace="ft-test")

    @ray.remote(max_restarts=-1, max_task_retries=-1)
    class Ledger:
        # Keeps its total in the GCS key-value store, i.e. in the Redis: a restarted instance resumes it.
        def __init__(self):
            saved = internal_kv._internal_kv_get(b"ledger-total")
            self.total = int(saved) if saved else 0
            self.restored = saved is not None

        def add(self, amount):
            self.total += amount
            internal_kv._internal_kv_put(b"ledger-total", str(self.total).encode(), overwrite=True)
            return self.total

        def state(self):
            return {"total": self.total, "restored": self.restored, "pid": os.getpid()}

    if sys.argv[1] == "create":
        ledger = Ledger.options(name="ledger", lifetime="detached").remote()
        for amount in (1, 2, 3):
            ray.get(ledger.add.remote(amount))
    else:
        ledger = ray.get_actor("ledger")
    state = ray.get(ledger.state.remote(), timeout=240)
    state["actor_id"] = ledger._actor_id.hex()
    print("LEDGER " + json.dumps(state), flush=True)
    """
)
T = TypeVar("T")
LEDGER_RE = re.compile(r"^LEDGER (\{.*\})$", re.MULTILINE)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def test_wrong_or_missing_redis_password_is_one_clear_error(tmp_path: Path, redis: RedisServer) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    local_dir = tmp_path / "local"
    for settings, fragment in (
        (ExternalRedis(address=redis.address, password_file=wrong), "refused the password from"),
        (ExternalRedis(address=redis.address), "requires a password"),
        (ExternalRedis(address=f"127.0.0.1:{local_cluster.free_port()}"), "no Redis answers at"),
        (ExternalRedis(address=redis.address, password_file=tmp_path / "absent"), "cannot read"),
    ):
        with pytest.raises(LocalClusterError, match=fragment) as caught:
            local_cluster.start(local_dir, LocalClusterSpec(num_cpus=1, redis=settings))
        assert "\n" not in str(caught.value) and "not-the-password" not in str(caught.value)
        assert local_cluster.read_state(local_dir) is None  # nothing was started


def test_bad_redis_settings_are_refused() -> None:
    with pytest.raises(LocalClusterError, match="host:port"):
        ExternalRedis(address="redis.example")
    with pytest.raises(LocalClusterError, match="storage namespace"):
        ExternalRedis(address="127.0.0.1:6379", namespace="a@b")
    assert local_cluster.redis_from_env({}) is None
    settings = local_cluster.redis_from_env(
        {"RAY_REDIS_ADDRESS": "127.0.0.1:6379", "RAY_REDIS_PASSWORD_FILE": "/run/pw"}
    )
    assert settings == ExternalRedis(address="127.0.0.1:6379", password_file=Path("/run/pw"))


def _patient(call: Callable[[], T], timeout_s: float = 60.0) -> T:
    """``call()``, retried while the dashboard drops connections (it can, for a few seconds after a
    start on a loaded machine); any other error, or one lasting ``timeout_s``, fails the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _submit(client: Any, entrypoint: str) -> str:
    return str(_patient(lambda: client.submit_job(entrypoint=entrypoint)))


def _wait(client: object, job_id: str, timeout_s: float = 300.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(_patient(lambda: client.get_job_status(job_id)).value)  # type: ignore[attr-defined]
        if status in jobs.TERMINAL_STATUSES or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def _ledger(client: object, script: Path, mode: str) -> dict[str, object]:
    job_id = _submit(client, f"python {script} {mode}")
    status = _wait(client, job_id)
    logs = _patient(lambda: client.get_job_logs(job_id))  # type: ignore[attr-defined]
    assert status == "SUCCEEDED", logs[-3000:]
    match = LEDGER_RE.search(logs)
    assert match is not None, logs[-3000:]
    return json.loads(match.group(1))


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_head_restart_on_the_same_redis_keeps_jobs_and_the_detached_actor(
    tmp_path: Path, redis: RedisServer
) -> None:
    namespace = f"ft-{secrets.token_hex(4)}"
    spec = LocalClusterSpec(num_cpus=2, redis=redis.settings(namespace), start_timeout_s=240)
    script = tmp_path / "ledger.py"
    script.write_text(ACTOR_SCRIPT)
    local_dir = tmp_path / "local"

    first = local_cluster.start(local_dir, spec, print)
    try:
        client = jobs.job_client(Target(address=first.dashboard_url))
        submitted = [_submit(client, f"python -c \"print('job {n}')\"") for n in range(2)]
        assert [_wait(client, job_id) for job_id in submitted] == ["SUCCEEDED", "SUCCEEDED"]
        before = _ledger(client, script, "create")
        assert before["total"] == 6 and before["restored"] is False
    finally:
        local_cluster.stop(first)
    # The GCS tables are in the Redis under the namespace, not in the stopped head.
    assert any(namespace in key for key in redis.keys("*")), redis.keys("*")[:20]

    second = local_cluster.start(local_dir, spec, print)
    try:
        assert second.cluster_id != first.cluster_id and second.gcs_port != first.gcs_port
        client = jobs.job_client(Target(address=second.dashboard_url))
        history = {job.submission_id: str(job.status.value) for job in _patient(client.list_jobs)}
        for job_id in submitted:
            assert history.get(job_id) == "SUCCEEDED", history
        after = _ledger(client, script, "lookup")
        # The same detached actor (its registration survived in Redis), restarted by the GCS on the
        # new node, resumed its state from the GCS key-value store.
        assert after["actor_id"] == before["actor_id"]
        assert after["total"] == 6 and after["restored"] is True
        assert after["pid"] != before["pid"]
    finally:
        local_cluster.stop(second)

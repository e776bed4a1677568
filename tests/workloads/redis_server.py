"""A real ``redis-server`` (Debian's package; ``.ci/run`` installs it) for the GCS fault-tolerance tests.

Started on a free loopback port with ``requirepass`` from a 0600 config file (the password is never on
a command line), nothing persisted to disk, and always stopped by the fixture that started it.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workloads.local_cluster import ExternalRedis, LocalClusterError, check_redis, free_port, redis_command


@dataclass(frozen=True)
class RedisServer:
    address: str
    password_file: Path

    def settings(self, namespace: str) -> ExternalRedis:
        """The head's external-Redis settings for ``namespace``."""
        return ExternalRedis(address=self.address, password_file=self.password_file, namespace=namespace)

    def keys(self, pattern: str) -> list[str]:
        """``KEYS pattern`` (small test databases only)."""
        import socket

        host, port = self.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            reader = conn.makefile("rb")
            conn.sendall(
                redis_command("AUTH", self.password_file.read_text().strip()) + redis_command("KEYS", pattern)
            )
            assert reader.readline().startswith(b"+OK")
            header = reader.readline()
            assert header.startswith(b"*"), header
            names = []
            for _ in range(int(header[1:])):
                length = int(reader.readline()[1:])
                names.append(reader.read(length + 2)[:-2].decode(errors="replace"))
            return names


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    """Run ``redis-server`` with a password until the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run does)")
    password = secrets.token_hex(16)
    password_file = directory / "redis-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    port = free_port()
    config = directory / "redis.conf"
    config.write_text(
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                "protected-mode yes",
                f"requirepass {password}",
                'save ""',
                "appendonly no",
                f"dir {directory}",
                f"logfile {directory / 'redis.log'}",
                "daemonize no",
            ]
        )
        + "\n"
    )
    config.chmod(0o600)
    process = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL, start_new_session=True)
    server = RedisServer(address=f"127.0.0.1:{port}", password_file=password_file)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                check_redis(server.settings("probe"), timeout_s=2)
                break
            except LocalClusterError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

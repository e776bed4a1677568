"""quickstart: print the cluster's resources, run a few remote tasks and an actor, check results.

Reads no contract variable. Exits non-zero if any result is wrong.
Run: ``python -m workloads.quickstart.main`` (inside a Ray job).
"""

from __future__ import annotations

import socket
import sys

NUM_TASKS = 8


def main() -> int:
    """Entry point of ``python -m workloads.quickstart.main``."""
    import ray

    ray.init()
    print(f"Ray {ray.__version__}; cluster resources: {ray.cluster_resources()}", flush=True)
    print(f"alive nodes: {sum(1 for node in ray.nodes() if node['Alive'])}", flush=True)

    @ray.remote(num_cpus=0.5)
    def square(value: int) -> tuple[int, str]:
        return value * value, socket.gethostname()

    @ray.remote(num_cpus=0.5)
    class Accumulator:
        def __init__(self) -> None:
            self.total = 0

        def add(self, value: int) -> int:
            self.total += value
            return self.total

    results = ray.get([square.remote(value) for value in range(NUM_TASKS)])
    squares = [value for value, _ in results]
    hosts = sorted({host for _, host in results})
    print(f"{NUM_TASKS} tasks returned {squares} on hosts {hosts}", flush=True)

    accumulator = Accumulator.remote()  # type: ignore[attr-defined]
    totals = ray.get([accumulator.add.remote(value) for value in squares])
    expected = sum(value * value for value in range(NUM_TASKS))
    if squares != [value * value for value in range(NUM_TASKS)] or totals[-1] != expected:
        print(f"quickstart FAILED: squares={squares} total={totals[-1]} expected={expected}", file=sys.stderr)
        return 1
    print(f"actor total {totals[-1]} == expected {expected}", flush=True)
    print("quickstart OK", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Your own Ray program, run by the job CLI like any catalog workload (a sample to copy).

``python -m workloads run examples/hello_ray`` uploads this directory as the job's working_dir and
runs ``python main.py`` (``--entrypoint`` runs something else); ``--env NAME=VALUE`` sets
variables, and STORAGE_PATH is always provided (local storage, or the stack's storage with
``submit --stack``).
"""

from __future__ import annotations

import os

import ray


@ray.remote
def square(value: int) -> int:
    """A remote task."""
    return value * value


def main() -> int:
    """Run a few tasks and report where shared storage is."""
    ray.init()
    total = sum(ray.get([square.remote(value) for value in range(10)]))
    greeting = os.environ.get("GREETING", "hello")
    print(
        f"{greeting} from your own code: sum of squares {total}; STORAGE_PATH={os.environ.get('STORAGE_PATH')}"
    )
    return 0 if total == 285 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m workloads``: the job CLI (see :mod:`workloads.cli`)."""

from workloads.cli import main

raise SystemExit(main())

"""Ray programs that ray-on-eks runs on its clusters, their catalog and the job CLI.

Each workload lives in its own sub-package and is started as ``python -m workloads.<pkg>.<module>``,
both on the cluster (code mounted from ConfigMaps under ``/opt/ray-on-eks/workloads`` with
``PYTHONPATH=/opt/ray-on-eks``) and locally (``python -m workloads run NAME``).
"""

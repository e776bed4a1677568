"""Benchmarks: scripts anyone can rerun; each writes ``bench/results/<name>.json``.

``python -m bench.report`` renders ``bench/RESULTS.md`` from those files.
"""

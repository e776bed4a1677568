"""batch-inference's Ray Data pipeline on the session's local head: how it starts and what it writes.

* It writes few, large parquet files: without ``min_rows_per_file`` Ray Data writes one file per block
  (and runs one write task per block); with it, blocks are combined until a file holds at least that
  many rows.
* Building its input runs no Ray task: ``from_arrow`` ran one metadata task per block and waited for
  them before the pipeline (and its actor pool) could start.

Each pipeline runs in a child process connected to the session head, so this test process never
becomes a Ray driver.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.workloads.test_batch_inference_predictor import _model_dir
from workloads.dt_pytorch.model import load_model, predict
from workloads.local_cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
ROWS = 50_000  # rows_dataset cuts this into 8 blocks of 6,250 rows
MIN_ROWS_PER_FILE = 20_000

PIPELINE = """
import sys
import numpy as np
import ray
from workloads.batch_inference import predict

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
ray.data.DataContext.get_current().enable_progress_bars = False
rng = np.random.default_rng(0)
features = rng.integers(0, 17, size=({rows}, 64)).astype(np.float32)
labels = rng.integers(0, 10, size={rows})
np.save(sys.argv[3], features)
predict.PARQUET_MIN_ROWS_PER_FILE = {min_rows}
rows = predict.rows_dataset(features, labels)
assert rows.num_blocks() == 8, rows.num_blocks()
predictions = predict.predictions_dataset(rows, model_path=sys.argv[2], batch_size=32)
predict.write_predictions(predictions, sys.argv[4])
"""


INPUT_TASKS = """
import sys
import time
import numpy as np
import ray
from ray.util.state import list_tasks
from workloads.batch_inference import predict

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
rows = predict.rows_dataset(np.zeros(({rows}, 64), dtype=np.float32), np.zeros({rows}, dtype=np.int64))
assert rows.num_blocks() == 8 and rows.count() == {rows}, (rows.num_blocks(), rows.count())


@ray.remote
def sentinel():
    return None


# This driver reports its task events in submission order, so once the sentinel submitted after the
# input is visible, every task the input submitted is visible too.
ray.get(sentinel.remote())
job = ray.get_runtime_context().get_job_id()
deadline = time.monotonic() + 120
while True:
    names = [t.name for t in list_tasks(address=sys.argv[2], filters=[("job_id", "=", job)], limit=1000)]
    if "sentinel" in names or time.monotonic() > deadline:
        break
    time.sleep(0.5)
assert "sentinel" in names, f"the sentinel task never showed up in the task events: {{names}}"
print("tasks:", sorted(set(names) - {{"sentinel"}}))
"""


def _run_on_head(script: str, *args: str) -> str:
    """Run ``script`` in a child Python (a Ray driver of its own) with ``args``; returns its stdout."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_predictions_are_written_in_files_of_at_least_the_minimum_rows(
    tmp_path: Path, ray_cluster: LocalCluster
) -> None:
    model_dir, out = _model_dir(tmp_path), tmp_path / "predictions"
    _run_on_head(
        PIPELINE.format(rows=ROWS, min_rows=MIN_ROWS_PER_FILE),
        ray_cluster.gcs_address,
        str(model_dir),
        str(tmp_path / "x.npy"),
        str(out),
    )
    files = sorted(out.glob("*.parquet"))
    sizes = [pq.read_metadata(path).num_rows for path in files]
    # Fewer files than the 8 blocks; every file but the last one written holds the minimum.
    assert sum(sizes) == ROWS and 1 <= len(files) < 8, sizes
    assert sum(1 for size in sizes if size < MIN_ROWS_PER_FILE) <= 1, sizes
    table = pq.read_table(out).to_pandas().sort_values("id")
    features = np.load(tmp_path / "x.npy")
    assert table["id"].tolist() == list(range(ROWS))
    np.testing.assert_array_equal(table["prediction"].to_numpy(), predict(*load_model(model_dir), features))


def test_the_input_dataset_is_built_without_running_a_ray_task(ray_cluster: LocalCluster) -> None:
    stdout = _run_on_head(INPUT_TASKS.format(rows=ROWS), ray_cluster.gcs_address, ray_cluster.dashboard_url)
    assert "tasks: []" in stdout, stdout

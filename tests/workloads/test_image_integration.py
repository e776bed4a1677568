"""Integration tests: image-train and image-serve on the session's local Ray head, through the CLI.

image-train runs once (``image_trained``: the default env, i.e. the digit PNGs generated under
STORAGE_PATH, 4 epochs of ResNet-18 on 2 workers); a second job with the same RUN_NAME must resume
from its newest checkpoint; image-serve then answers with the exported model and refuses bad
requests with 4xx.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.workloads.images import encode
from workloads.cli import main, run_local
from workloads.image_train.data import MARKER_FILE, digits_png_images
from workloads.image_train.model import decode_image, load_model, predict, read_meta
from workloads.local_cluster import LocalCluster
from workloads.model_store import newest_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

JOB_TIMEOUT_S = 600.0
EPOCHS = 4  # image-train's catalog default
MIN_ACCURACY = 0.85  # chance is 0.10; 4 epochs reach ~0.93
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ACCURACY_RE = re.compile(r"final held-out accuracy ([0-9.]+) at epoch (\d+)")


def readme_image_lines() -> list[list[str]]:
    """The README's image-workload CLI block, as argv lists after ``python -m workloads``."""
    section = README.split("## Workloads and the job CLI", 1)[1]
    block = section.split("The image and language-model workloads, as", 1)[1].split("```bash\n", 1)[1]
    block = block.split("```", 1)[0]
    lines = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert all(line[:3] == ["python", "-m", "workloads"] for line in lines), lines
    return [line[3:] for line in lines]


@dataclass(frozen=True)
class CliRun:
    status: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.status == 0


def run_cli(local_dir: Path, argv: list[str]) -> CliRun:
    """``python -m workloads --local-dir DIR ARGV...`` in-process, its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["--local-dir", str(local_dir), *argv])
    return CliRun(status=status, out=out.getvalue(), err=err.getvalue())


def test_the_readme_block_is_what_these_tests_run() -> None:
    from tests.workloads.test_llm_integration import EPOCHS as LLM_EPOCHS

    assert readme_image_lines() == [
        ["run", "image-train"],
        ["run", "image-serve"],
        # test_llm_integration.py runs these two through run_local("llm-finetune", {"EPOCHS": ...}) and
        # run_local("llm-serve"), the function `run` calls.
        ["run", "llm-finetune", "--env", f"EPOCHS={LLM_EPOCHS}"],
        ["run", "llm-serve"],
    ]


@pytest.fixture(scope="module")
def image_trained(local_dir: Path, ray_cluster: LocalCluster) -> CliRun:
    """The README's ``python -m workloads run image-train`` (catalog defaults), once per module."""
    return run_cli(local_dir, readme_image_lines()[0])


def logs_of(result: CliRun) -> str:
    """What the CLI streamed: the job's logs (stdout) and its own progress lines (stderr)."""
    return result.out + result.err


def post(url: str, body: bytes, content_type: str = "image/png") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_image_train_reads_generated_pngs_learns_and_exports(
    image_trained: CliRun, storage_path: Path
) -> None:
    logs = logs_of(image_trained)
    assert image_trained.ok, logs[-3000:]
    # The data set was generated on the shared storage, as class folders of PNGs, marker last.
    data = storage_path / "datasets" / "digits-png"
    assert (data / MARKER_FILE).is_file()
    counts = {split: len(list((data / split).glob("*/*.png"))) for split in ("train", "test")}
    assert counts == {"train": 1437, "test": 360}
    assert "wrote 1797 digit images" in logs
    # Per-epoch lines from rank 0, each epoch once, then the export.
    for epoch in range(1, EPOCHS + 1):
        assert len(re.findall(rf"epoch {epoch}/{EPOCHS} loss=", logs)) == 1, logs[-3000:]
    assert len(re.findall(r"worker rank \d/2 pid \d+ device cpu", logs)) == 2
    match = ACCURACY_RE.search(logs)
    assert match is not None, logs[-3000:]
    accuracy, epoch = float(match.group(1)), int(match.group(2))
    assert accuracy > MIN_ACCURACY and epoch == EPOCHS

    found = newest_checkpoint(storage_path / "checkpoints" / "image-train")
    assert found is not None and found[0] == EPOCHS
    meta = read_meta(storage_path / "models" / "image-latest")
    assert meta.architecture == "resnet18" and meta.labels == [str(d) for d in range(10)]
    assert meta.epoch == EPOCHS and meta.held_out_accuracy == pytest.approx(accuracy, abs=1e-4)
    # The exported model really classifies the held-out PNGs (decoded as image-serve decodes them).
    model, meta = load_model(storage_path / "models" / "image-latest")
    held_out = digits_png_images(seed=0, image_size=meta.image_size)["test"]
    images = np.stack(
        [decode_image(encode(pixels, "PNG"), image_size=meta.image_size, mode="L") for _, pixels in held_out]
    )
    indices, _ = predict(model, meta, images)
    recomputed = float(np.mean(indices == np.asarray([label for label, _ in held_out])))
    assert recomputed == pytest.approx(accuracy, abs=1e-3)


def test_image_train_resumes_a_run_and_keeps_the_data(
    local_dir: Path, image_trained: CliRun, storage_path: Path
) -> None:
    assert image_trained.ok
    more = EPOCHS + 1
    result = run_local(
        "image-train",
        {"EPOCHS": str(more), "MODEL_PATH": str(storage_path / "models" / "image-resumed")},
        local_dir=local_dir,
        timeout_s=JOB_TIMEOUT_S,
    )
    assert result.job is not None
    logs = result.job.logs
    assert result.ok, logs[-3000:]
    assert f"found checkpoint epoch {EPOCHS}" in logs and f"resumed from checkpoint epoch {EPOCHS}" in logs
    assert "wrote " not in logs  # the generated data set is reused, not rewritten
    assert f"epoch 1/{more} " not in logs and f"epoch {more}/{more} " in logs
    assert read_meta(storage_path / "models" / "image-resumed").epoch == more


def test_image_train_refuses_bad_settings_before_submitting(
    local_dir: Path, ray_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--local-dir", str(local_dir), "run", "image-train", "--env", "IMAGE_SIZE=8"])
    assert status == 2
    assert capsys.readouterr().err == "error: --env IMAGE_SIZE must be an integer >= 16, got '8'\n"


def test_image_serve_classifies_pngs_and_jpegs_and_refuses_bad_requests(
    local_dir: Path, image_trained: CliRun, storage_path: Path
) -> None:
    assert image_trained.ok
    # Through the CLI, as the README says: it prints the URL (route prefix included) and an example
    # whose image exists once image-train has run.
    served = run_cli(local_dir, readme_image_lines()[1])
    assert served.ok, served.err[-3000:]
    out = served.out
    match = re.search(r"Serve application is RUNNING at (\S+)", out)
    assert match is not None, out
    url = match.group(1)
    assert url.endswith("/image")
    example = re.search(r"--data-binary @\.ray-on-eks/storage/(\S+) " + re.escape(url) + "/predict", out)
    assert example is not None, out
    assert (storage_path / example.group(1)).is_file()

    status, health = get(f"{url}/healthz")
    assert (
        status == 200 and health["model"]["epoch"] == EPOCHS and health["model"]["architecture"] == "resnet18"
    )

    model, meta = load_model(storage_path / "models" / "image-latest")
    held_out = digits_png_images(seed=0, image_size=meta.image_size)["test"][:60]
    answers = []
    for label, pixels in held_out:
        status, answer = post(f"{url}/predict", encode(pixels, "PNG"))
        assert status == 200, answer
        assert answer["label"] == str(answer["index"]) and 0.0 < answer["confidence"] <= 1.0
        answers.append((label, answer["index"]))
        # The same answer as the exported model gives offline for the same bytes.
        expected, _ = predict(
            model, meta, decode_image(encode(pixels, "PNG"), image_size=meta.image_size, mode="L")[None]
        )
        assert answer["index"] == int(expected[0])
    assert np.mean([label == index for label, index in answers]) > MIN_ACCURACY
    # A JPEG of another size and mode (RGB, 64 px) is decoded, converted and resized like the training data.
    label, pixels = held_out[0]
    from PIL import Image

    rgb = np.asarray(Image.fromarray(pixels).convert("RGB").resize((64, 64)))
    status, answer = post(f"{url}/predict", encode(rgb, "JPEG"), "image/jpeg")
    assert status == 200 and answer["model"]["image_size"] == meta.image_size

    # Refusals, each a 4xx with a message that says what is wrong.
    huge = encode(np.zeros((4100, 4100), dtype=np.uint8), "PNG")  # small file, 16.8 M pixels
    for body, expected_status, fragment in (
        (b"", 415, "empty body"),
        (b"hello, this is text", 415, "not a PNG or JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 400, "cannot decode"),
        (huge, 413, "pixel limit"),
    ):
        status, error = post(f"{url}/predict", body)
        assert status == expected_status and fragment in error["error"], (status, error)
    status, error = get(f"{url}/predict")
    assert status == 405 and "POST" in error["error"]
    status, error = get(f"{url}/nothing")
    assert status == 404
    # Over the byte limit: 413 from the declared length while only 64 KiB of 9 MiB were sent.
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    connection = HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("POST", "/image/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(9 * 2**20))
        connection.endheaders(b"\x89PNG\r\n\x1a\n" + b" " * 65528)
        response = connection.getresponse()
        assert response.status == 413 and "byte limit" in json.loads(response.read())["error"]
    finally:
        connection.close()

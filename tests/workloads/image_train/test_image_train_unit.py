"""Unit tests of image-train's pure parts (no cluster): settings, device settings, data set, model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.workloads.images import encode, png_header
from workloads.image_train.data import (
    MARKER_FILE,
    ImageDataError,
    class_labels,
    digits_png_images,
    ensure_digits_png,
    label_of,
    to_training_batch,
)
from workloads.image_train.model import (
    MAX_IMAGE_PIXELS,
    ImageError,
    ImageModelMeta,
    ImageTooLargeError,
    ModelNotFoundError,
    build_model,
    decode_image,
    export_model,
    load_model,
    predict,
    preprocess,
    read_meta,
    write_model_dir,
)
from workloads.image_train.train import TrainSettings, device_settings
from workloads.settings import SettingsError, check_env


def test_settings_defaults_derive_from_storage_path() -> None:
    settings = TrainSettings.from_env({"STORAGE_PATH": "/fsx", "RUN_NAME": "image-train"})
    assert settings.image_data == Path("/fsx/datasets/digits-png") and settings.generate_digits
    assert settings.model_path == Path("/fsx/models/image-latest")
    assert settings.run_dir == Path("/fsx/checkpoints/image-train")
    assert settings.image_size == 32
    own = TrainSettings.from_env({"STORAGE_PATH": "s3://bucket/ray", "IMAGE_DATA": "s3://bucket/photos"})
    assert own.image_data == "s3://bucket/photos" and not own.generate_digits
    assert own.model_path == "s3://bucket/ray/models/image-latest"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE_SIZE": "8"}, "IMAGE_SIZE must be an integer >= 16, got '8'"),
        ({"IMAGE_DATA": "relative/dir"}, "IMAGE_DATA must be an absolute path or s3://bucket/prefix"),
        ({"IMAGE_DATA": "gs://bucket/x"}, "IMAGE_DATA must be an absolute path or s3://bucket/prefix"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("/", ".").replace("*", ".")):
        TrainSettings.from_env({"STORAGE_PATH": "/fsx", **env})
    with pytest.raises(SettingsError):  # the CLI's pre-submission check refuses the same values
        check_env(env)


def test_gpu_runs_on_cuda_in_bf16_over_nccl_and_cpu_on_gloo_in_fp32() -> None:
    gpu = device_settings(use_gpu=True)
    assert (gpu.device_type, gpu.autocast_dtype, gpu.backend) == ("cuda", "bfloat16", "nccl")
    assert getattr(torch, str(gpu.autocast_dtype)) is torch.bfloat16
    cpu = device_settings(use_gpu=False)
    assert (cpu.device_type, cpu.autocast_dtype, cpu.backend) == ("cpu", None, "gloo")


def test_generated_digits_keep_dt_pytorchs_split_and_are_written_once(tmp_path: Path) -> None:
    from workloads.dt_pytorch.data import load_digits

    images = digits_png_images(seed=0, image_size=32)
    split = load_digits(seed=0)
    assert [label for label, _ in images["test"]] == split.y_test.tolist()
    assert images["train"][0][1].shape == (32, 32) and images["train"][0][1].dtype == np.uint8
    # Upscaling keeps the digit: the brightest 8x8 source pixel stays bright after resizing.
    assert images["train"][0][1].max() > 200

    root = tmp_path / "digits-png"
    assert ensure_digits_png(root, seed=0, image_size=32) == 1797
    assert json.loads((root / MARKER_FILE).read_text())["images"] == {"train": 1437, "test": 360}
    assert class_labels(root) == [str(d) for d in range(10)]
    first = root / "test" / str(split.y_test[0]) / "00000.png"  # numbered within its class
    assert len(list((root / "test" / "7").glob("*.png"))) == int((split.y_test == 7).sum())
    assert decode_image(first.read_bytes(), image_size=32, mode="L").tolist() == images["test"][0][1].tolist()
    assert ensure_digits_png(root, seed=0, image_size=32) == 0  # complete: kept
    with pytest.raises(ImageDataError, match="image_size"):
        ensure_digits_png(root, seed=0, image_size=64)


def test_class_folders_are_checked(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ImageDataError, match="one directory per class"):
        class_labels(tmp_path)
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "test" / "cat").mkdir(parents=True)
    with pytest.raises(ImageDataError, match=r"no directory for classes \['dog'\]"):
        class_labels(tmp_path)
    assert label_of("s3://b/data/train/dog/1.jpg", {"cat": 0, "dog": 1}) == 1


def test_decode_accepts_png_and_jpeg_and_refuses_the_rest() -> None:
    gray = (np.arange(64 * 48, dtype=np.uint32) % 251).astype(np.uint8).reshape(48, 64)
    assert decode_image(encode(gray), image_size=32, mode="L").shape == (32, 32)
    rgb = np.stack([gray] * 3, axis=-1)
    assert decode_image(encode(rgb, "JPEG"), image_size=32, mode="RGB").shape == (32, 32, 3)
    assert decode_image(encode(rgb, "JPEG"), image_size=32, mode="L").shape == (32, 32)
    with pytest.raises(ImageError, match="not a PNG or JPEG"):
        decode_image(encode(gray, "GIF"), image_size=32, mode="L")
    with pytest.raises(ImageError, match="cannot decode"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, image_size=32, mode="L")
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    with pytest.raises(ImageTooLargeError, match="pixel limit"):
        decode_image(png_header(side, side), image_size=32, mode="L")
    # At the limit the header passes and the missing pixel data is what fails.
    with pytest.raises(ImageError, match="cannot decode") as caught:
        decode_image(png_header(side - 1, side - 1), image_size=32, mode="L")
    assert not isinstance(caught.value, ImageTooLargeError)


def test_preprocess_matches_the_training_batch() -> None:
    images = np.stack([np.full((32, 32), 255, dtype=np.uint8), np.zeros((32, 32), dtype=np.uint8)])
    tensor = preprocess(images, channels=1)
    assert tensor.shape == (2, 1, 32, 32) and tensor.dtype == torch.float32
    assert float(tensor[0].min()) == pytest.approx(1.0) and float(tensor[1].max()) == pytest.approx(-1.0)
    batch = to_training_batch(
        {"image": images, "path": np.asarray(["/d/train/1/a.png", "/d/train/0/b.png"])},
        labels={"0": 0, "1": 1},
        channels=1,
        mean=0.5,
        std=0.5,
    )
    assert np.array_equal(batch["image"], tensor.numpy()) and batch["label"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="expected images of shape"):
        preprocess(np.zeros((2, 32, 32, 3), dtype=np.uint8), channels=1)


def test_model_round_trip_and_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(num_classes=3, channels=1)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 3
    assert build_model(num_classes=5, channels=3).conv1.in_channels == 3
    meta = ImageModelMeta(
        image_size=32, channels=1, labels=["a", "b", "c"], dataset="x", epoch=2, held_out_accuracy=0.5
    )
    checkpoint = tmp_path / "checkpoints" / "epoch_0002"
    write_model_dir(checkpoint, state_dict=model.state_dict(), meta=meta, optimizer_state={"state": {}})
    exported = export_model(checkpoint, tmp_path / "models" / "image-latest")
    assert exported == meta and read_meta(tmp_path / "models" / "image-latest") == meta
    assert sorted(p.name for p in (tmp_path / "models" / "image-latest").iterdir()) == [
        "model.json",
        "model.pt",
    ]
    loaded, loaded_meta = load_model(tmp_path / "models" / "image-latest")
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32), dtype=np.uint8)
    indices, confidences = predict(loaded, loaded_meta, images)
    model.eval()
    with torch.no_grad():
        expected = model(preprocess(images, channels=1)).argmax(dim=1).numpy()
    assert indices.tolist() == expected.tolist()
    assert np.all((confidences > 1 / 3 - 1e-6) & (confidences <= 1.0))


def test_read_meta_refuses_a_digits_mlp_export(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="run the image-train workload first"):
        read_meta(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "model.json").write_text(json.dumps({"input_dim": 64, "epoch": 1}))
    with pytest.raises(ModelNotFoundError, match="point MODEL_PATH at an image-train export"):
        read_meta(tmp_path)

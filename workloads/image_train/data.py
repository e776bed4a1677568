"""Image data for image-train: a directory of class folders, read with Ray Data.

Layout (the one torchvision's ``ImageFolder`` and most image data sets use), under IMAGE_DATA::

    train/<label>/<name>.png|.jpg|.jpeg
    test/<label>/<name>.png|.jpg|.jpeg     (held out; accuracy is reported on it)

Locally nothing has to be downloaded: when IMAGE_DATA is the default
(``STORAGE_PATH/datasets/digits-png``) and holds no data yet, :func:`ensure_digits_png` writes
scikit-learn's bundled digits there as PNGs, upscaled from 8x8 to IMAGE_SIZE, with dt-pytorch's
train / held-out split, and ``dataset.json`` last as the "complete" marker. On a cluster, point
IMAGE_DATA at your own images on FSx or S3 in the same layout.

Decoding happens in Ray Data's read tasks (``read_images``, parallel across the cluster) and the
normalisation in a ``map_batches`` step, so the training workers receive ready tensors.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from workloads import storage
from workloads.storage import Location

DIGITS_PNG_PARTS = ("datasets", "digits-png")
"""Where the generated digits go under STORAGE_PATH (the IMAGE_DATA default)."""
MARKER_FILE = "dataset.json"
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = ["png", "jpg", "jpeg"]


class ImageDataError(RuntimeError):
    """IMAGE_DATA does not hold a usable image data set."""


def digits_png_images(*, seed: int, image_size: int) -> dict[str, list[tuple[int, np.ndarray]]]:
    """scikit-learn's digits as ``uint8`` grayscale images of ``image_size`` squared, per split.

    The split is dt-pytorch's (:func:`workloads.dt_pytorch.data.load_digits`), so both workloads
    hold out the same digits for a given seed. Upscaling is bilinear from the 8x8 originals.
    """
    from PIL import Image

    from workloads.dt_pytorch.data import load_digits

    split = load_digits(seed=seed)
    result: dict[str, list[tuple[int, np.ndarray]]] = {}
    for name, x, y in (("train", split.x_train, split.y_train), ("test", split.x_test, split.y_test)):
        images = []
        for features, label in zip(x, y, strict=True):
            pixels = np.clip(features.reshape(8, 8) * (255.0 / split.feature_scale), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, mode="L").resize(
                (image_size, image_size), Image.Resampling.BILINEAR
            )
            images.append((int(label), np.asarray(image, dtype=np.uint8)))
        result[name] = images
    return result


def ensure_digits_png(root: Location, *, seed: int, image_size: int) -> int:
    """Write the digits under ``root`` unless a complete copy with the same settings is there.

    Returns the number of images written (0 when the existing copy was kept). ``root`` is a local
    path or an ``s3://`` URI.
    """
    from PIL import Image

    wanted = {"source": "scikit-learn digits", "seed": seed, "image_size": image_size}
    marker = storage.join(root, MARKER_FILE)
    if storage.is_file(marker):
        found = json.loads(storage.read_bytes(marker))
        if {key: found.get(key) for key in wanted} == wanted:
            return 0
        raise ImageDataError(
            f"{root} holds digits generated with {found}, not {wanted}; use another IMAGE_DATA or remove it"
        )
    written = 0
    counts: dict[str, int] = {}
    for split_name, images in digits_png_images(seed=seed, image_size=image_size).items():
        per_class: dict[int, int] = {}
        for label, pixels in images:
            # Numbered within the class: test/7/00000.png is always the first held-out 7.
            number = per_class[label] = per_class.get(label, -1) + 1
            buffer = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
            storage.write_bytes(
                storage.join(root, split_name, str(label), f"{number:05d}.png"), buffer.getvalue()
            )
            written += 1
        counts[split_name] = len(images)
    storage.write_bytes(marker, json.dumps({**wanted, "images": counts}, indent=2).encode())
    return written


def class_labels(root: Location) -> list[str]:
    """The class names: the directories under ``root/train``, sorted (the model's output order)."""
    labels = sorted(storage.child_dirs(storage.join(root, "train")))
    if len(labels) < 2:
        raise ImageDataError(
            f"{storage.join(root, 'train')} must hold one directory per class (at least 2), found {labels}; "
            "see IMAGE_DATA in workloads/README.md"
        )
    missing = sorted(set(labels) - set(storage.child_dirs(storage.join(root, "test"))))
    if missing:
        raise ImageDataError(f"{storage.join(root, 'test')} has no directory for classes {missing}")
    return labels


def label_of(path: str, labels: Mapping[str, int]) -> int:
    """The class index of an image from its parent directory name."""
    return labels[path.rstrip("/").rsplit("/", 2)[-2]]


def to_training_batch(
    batch: dict[str, Any], *, labels: Mapping[str, int], channels: int, mean: float, std: float
) -> dict[str, Any]:
    """A Ray Data batch of decoded images + paths -> normalised ``image`` and ``label`` arrays."""
    from workloads.image_train.model import preprocess

    images = np.stack(list(batch["image"])) if isinstance(batch["image"], list) else batch["image"]
    tensor = preprocess(images, channels=channels, mean=mean, std=std)
    return {
        "image": tensor.numpy(),
        "label": np.asarray([label_of(str(path), labels) for path in batch["path"]], dtype=np.int64),
    }


def read_split(
    root: Location, split: str, *, image_size: int, mode: str, labels: list[str], mean: float, std: float
) -> Any:
    """The Ray Dataset of ``root/split``: decoded, resized, normalised images with their labels."""
    import ray.data

    index = {label: position for position, label in enumerate(labels)}
    dataset = ray.data.read_images(
        str(storage.join(root, split)),
        size=(image_size, image_size),
        mode=mode,
        include_paths=True,
        file_extensions=IMAGE_EXTENSIONS,
    )
    return dataset.map_batches(
        to_training_batch,
        batch_format="numpy",
        fn_kwargs={"labels": index, "channels": 1 if mode == "L" else 3, "mean": mean, "std": std},
    )

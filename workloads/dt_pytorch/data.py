"""Training data for dt-pytorch: scikit-learn's digits (offline) or Fashion-MNIST IDX files.

Both loaders return the same :class:`Split` (float32 features, int64 labels, a fixed split), so the
trainer, the batch-inference job and the tests see the same held-out set for a given seed.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workloads.catalog import DATASETS  # the loaders below cover each

FASHION_MNIST_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# IDX type codes (third byte of the magic number) -> numpy big-endian dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


class DatasetError(RuntimeError):
    """A data set cannot be read or fetched."""


@dataclass(frozen=True, kw_only=True)
class Split:
    """A train / held-out split with raw (unscaled) features."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_scale: float
    """Divide raw features by this before feeding the model (16 for digits, 255 for images)."""
    num_classes: int

    @property
    def num_features(self) -> int:
        """Length of one flattened input row."""
        return int(self.x_train.shape[1])


def load_dataset(name: str, *, seed: int, data_dir: Path | None = None, repeats: int = 1) -> Split:
    """Load ``name`` (one of :data:`DATASETS`); ``data_dir`` holds the Fashion-MNIST files.

    ``repeats`` > 1 enlarges the training split with shifted copies (:func:`repeat_train`).
    """
    split = _load(name, seed=seed, data_dir=data_dir)
    return repeat_train(split, repeats=repeats, seed=seed) if repeats > 1 else split


def _load(name: str, *, seed: int, data_dir: Path | None) -> Split:
    if name == "digits":
        return load_digits(seed=seed)
    if name == "fashion-mnist":
        if data_dir is None:
            raise DatasetError("fashion-mnist needs a data directory")
        return load_fashion_mnist(data_dir)
    raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def load_digits(*, seed: int, test_fraction: float = 0.2) -> Split:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16), stratified split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return Split(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, feature_scale=16.0, num_classes=10
    )


def repeat_train(split: Split, *, repeats: int, seed: int) -> Split:
    """``split`` with every training image ``repeats`` times: copy 0 as is, the others shifted.

    Each extra copy is the image shifted by up to one pixel in each direction (a seeded choice per
    copy and image, vacated pixels zero), so a larger epoch is still digit-shaped data rather than
    duplicates. The held-out set is unchanged. Images must be square (digits 8x8, Fashion-MNIST 28x28).
    """
    if repeats == 1:
        return split
    side = round(split.num_features**0.5)
    if side * side != split.num_features:
        raise DatasetError(f"cannot shift {split.num_features}-feature rows: they are not square images")
    images = split.x_train.reshape(-1, side, side)
    rng = np.random.default_rng(seed)
    copies = [split.x_train]
    for _ in range(repeats - 1):
        shifts = rng.integers(-1, 2, size=(len(images), 2))
        shifted = np.zeros_like(images)
        for dy, dx in {(int(a), int(b)) for a, b in shifts}:
            chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            rolled = np.roll(images[chosen], shift=(dy, dx), axis=(1, 2))
            if dy:
                rolled[:, 0 if dy > 0 else -1, :] = 0
            if dx:
                rolled[:, :, 0 if dx > 0 else -1] = 0
            shifted[chosen] = rolled
        copies.append(shifted.reshape(len(images), -1))
    return Split(
        x_train=np.concatenate(copies),
        y_train=np.tile(split.y_train, repeats),
        x_test=split.x_test,
        y_test=split.y_test,
        feature_scale=split.feature_scale,
        num_classes=split.num_classes,
    )


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into an array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"cannot read IDX file {path}: {error}") from error
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    type_code, ndim = payload[2], payload[3]
    if type_code not in _IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX element type 0x{type_code:02x}")
    header_end = 4 + 4 * ndim
    if len(payload) < header_end:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", payload[4:header_end])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = payload[header_end:]
    if len(body) != expected:
        raise DatasetError(f"{path}: IDX body has {len(body)} bytes, header declares {expected}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def ensure_fashion_mnist(data_dir: Path, *, base_url: str = FASHION_MNIST_BASE_URL) -> None:
    """Download the missing Fashion-MNIST files into ``data_dir`` (needs internet access)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for filename in FASHION_MNIST_FILES.values():
        target = data_dir / filename
        if target.exists():
            continue
        partial = target.with_name(target.name + ".part")
        url = base_url + filename
        print(f"downloading {url} -> {target}", flush=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise DatasetError(
                f"cannot download {url} ({error}); put the Fashion-MNIST IDX files in {data_dir} instead"
            ) from error
        partial.replace(target)


def load_fashion_mnist(data_dir: Path) -> Split:
    """Fashion-MNIST from the four standard IDX .gz files in ``data_dir`` (official split)."""
    arrays = {key: read_idx(data_dir / filename) for key, filename in FASHION_MNIST_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DatasetError(f"{data_dir}: {part} images {images.shape} do not match labels {labels.shape}")
    return Split(
        x_train=arrays["train_images"].reshape(arrays["train_images"].shape[0], -1).astype(np.float32),
        y_train=arrays["train_labels"].astype(np.int64),
        x_test=arrays["test_images"].reshape(arrays["test_images"].shape[0], -1).astype(np.float32),
        y_test=arrays["test_labels"].astype(np.int64),
        feature_scale=255.0,
        num_classes=10,
    )

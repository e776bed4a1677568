"""Unit tests of the dt-pytorch data loaders: digits split and the Fashion-MNIST IDX reader."""

from __future__ import annotations

import gzip
import http.server
import struct
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from workloads.dt_pytorch.data import (
    FASHION_MNIST_FILES,
    DatasetError,
    ensure_fashion_mnist,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    read_idx,
)


def write_idx(path: Path, array: np.ndarray, *, type_code: int = 0x08, compress: bool = True) -> None:
    """Encode ``array`` as an IDX file (big-endian header: 0, 0, type, ndim, dims...)."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.asarray(array, dtype=dtype).tobytes()
    if compress:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_fashion_files(directory: Path, *, train: int = 6, test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    arrays = {
        "train_images": rng.integers(0, 256, size=(train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for key, filename in FASHION_MNIST_FILES.items():
        write_idx(directory / filename, arrays[key])
    return arrays


def test_read_idx_decodes_shape_and_values(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "images.gz", images)
    decoded = read_idx(tmp_path / "images.gz")
    assert decoded.shape == (2, 3, 4)
    np.testing.assert_array_equal(decoded, images)


def test_read_idx_handles_uncompressed_and_wide_types(tmp_path: Path) -> None:
    values = np.array([[1.5, -2.0], [3.25, 1e6]], dtype=np.float32)
    write_idx(tmp_path / "floats.idx", values, type_code=0x0D, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "floats.idx"), values)
    ints = np.array([-5, 70000], dtype=np.int32)
    write_idx(tmp_path / "ints.idx", ints, type_code=0x0C, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints.idx"), ints)


def test_read_idx_rejects_bad_magic_truncation_and_garbage(tmp_path: Path) -> None:
    (tmp_path / "magic.idx").write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(tmp_path / "magic.idx")
    write_idx(tmp_path / "short.idx", np.zeros((4,), dtype=np.uint8), compress=False)
    (tmp_path / "short.idx").write_bytes((tmp_path / "short.idx").read_bytes()[:-1])
    with pytest.raises(DatasetError, match="header declares 4"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "type.idx").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DatasetError, match="unknown IDX element type"):
        read_idx(tmp_path / "type.idx")


def test_load_fashion_mnist_flattens_and_keeps_the_official_split(tmp_path: Path) -> None:
    arrays = write_fashion_files(tmp_path)
    split = load_dataset("fashion-mnist", seed=0, data_dir=tmp_path)
    assert split.x_train.shape == (6, 784) and split.x_test.shape == (4, 784)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    np.testing.assert_array_equal(split.x_test[1], arrays["test_images"][1].reshape(-1))
    np.testing.assert_array_equal(split.y_train, arrays["train_labels"])
    assert split.feature_scale == 255.0 and split.num_features == 784


def test_load_fashion_mnist_rejects_mismatched_labels(tmp_path: Path) -> None:
    write_fashion_files(tmp_path)
    write_idx(tmp_path / FASHION_MNIST_FILES["test_labels"], np.zeros(3, dtype=np.uint8))
    with pytest.raises(DatasetError, match="do not match labels"):
        load_fashion_mnist(tmp_path)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a directory (stands in for the Fashion-MNIST mirror)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


def test_ensure_fashion_mnist_downloads_only_missing_files(
    tmp_path: Path, file_server: tuple[str, Path]
) -> None:
    base_url, mirror = file_server
    arrays = write_fashion_files(mirror)
    target = tmp_path / "data"
    target.mkdir()
    # One file is already there (different content): it must be kept, not re-downloaded.
    kept = np.zeros(4, dtype=np.uint8)
    write_idx(target / FASHION_MNIST_FILES["test_labels"], kept)
    ensure_fashion_mnist(target, base_url=base_url)
    split = load_fashion_mnist(target)
    np.testing.assert_array_equal(split.x_train[0], arrays["train_images"][0].reshape(-1))
    np.testing.assert_array_equal(split.y_test, kept)
    assert not list(target.glob("*.part"))


def test_ensure_fashion_mnist_fails_clearly_when_offline(
    tmp_path: Path, file_server: tuple[str, Path]
) -> None:
    base_url, _ = file_server  # empty mirror: every download is a 404
    with pytest.raises(DatasetError, match="put the Fashion-MNIST IDX files in"):
        ensure_fashion_mnist(tmp_path / "data", base_url=base_url)
    assert not list((tmp_path / "data").iterdir())


def test_digits_split_is_stratified_and_deterministic() -> None:
    first, second = load_digits(seed=0), load_digits(seed=0)
    assert first.x_train.shape == (1437, 64) and first.x_test.shape == (360, 64)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert set(np.bincount(first.y_test).tolist()) <= {35, 36, 37}  # ~36 of each of 10 classes
    assert first.x_train.max() == 16.0 and first.feature_scale == 16.0
    assert not np.array_equal(load_digits(seed=1).y_test, first.y_test)


def test_unknown_dataset_is_rejected() -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar", seed=0)

"""Shared storage on any Kubernetes: claim spec, STORAGE_PATH and the ReadWriteOnce warning (no mocks)."""

from __future__ import annotations

import pytest

from components.builders.kubernetes import (
    build_shared_claim_spec,
    shared_storage_path,
    shared_storage_warning,
)
from components.config import StorageConfig


def test_claim_spec_asks_the_storage_class_for_the_access_mode_and_size() -> None:
    spec = build_shared_claim_spec(StorageConfig(storage_class="nfs-client", size_gib=20))
    assert spec == {
        "storageClassName": "nfs-client",
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "20Gi"}},
    }


def test_no_storage_class_means_no_claim_and_no_storage_path() -> None:
    with pytest.raises(ValueError, match="storage_class"):
        build_shared_claim_spec(StorageConfig())
    assert shared_storage_path(StorageConfig()) is None
    assert shared_storage_warning(StorageConfig()) is None


def test_storage_path_is_on_the_shared_mount() -> None:
    assert shared_storage_path(StorageConfig(storage_class="standard")) == "/shared/ray-results"


def test_read_write_once_warns_that_it_is_one_node_only() -> None:
    warning = shared_storage_warning(StorageConfig(storage_class="standard", access_mode="ReadWriteOnce"))
    assert warning is not None
    for fragment in ("ReadWriteOnce", "'standard'", "/shared/ray-results", "one node", "ReadWriteMany"):
        assert fragment in warning
    assert "\n" not in warning
    assert shared_storage_warning(StorageConfig(storage_class="cephfs")) is None  # ReadWriteMany

"""Unit tests of workloads/storage.py on local paths (the s3:// side runs against a real S3 server in
test_workloads_s3.py)."""

from __future__ import annotations

from pathlib import Path

from workloads import storage


def test_join_keeps_uris_as_text_and_paths_as_paths() -> None:
    assert storage.join("s3://bucket/root/", "models", "latest") == "s3://bucket/root/models/latest"
    assert storage.join(Path("/fsx"), "models") == Path("/fsx/models")
    assert storage.is_uri("s3://bucket") and not storage.is_uri(Path("/fsx")) and not storage.is_uri("/fsx")
    assert storage.name("s3://bucket/a/b/") == "b"


def test_local_files_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    assert storage.stamp(target) is None and not storage.is_file(target)
    storage.write_bytes(target, b"x")
    assert storage.read_bytes(target) == b"x" and storage.is_file(target) and storage.stamp(target)
    (tmp_path / "a" / "sub").mkdir()
    assert (
        sorted(storage.child_dirs(tmp_path / "a")) == ["sub"] and storage.child_dirs(tmp_path / "nope") == []
    )
    copied = storage.download_dir(tmp_path / "a", tmp_path / "copy")
    assert [p.name for p in copied.iterdir()] == ["b.txt"]
    storage.copy_files(tmp_path / "a", tmp_path / "c", ("b.txt",))
    assert (tmp_path / "c" / "b.txt").read_bytes() == b"x"
    storage.delete_dir(tmp_path / "a")
    assert not (tmp_path / "a").exists()

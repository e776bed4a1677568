"""Shared storage for the workloads: a mounted directory (``/fsx/...``) or an ``s3://`` URI.

STORAGE_PATH (and the locations derived from it) is either an absolute local path, which the
standard library handles, or a URI such as ``s3://bucket/ray-results``, which goes through
``pyarrow.fs.FileSystem.from_uri`` - the same filesystem layer Ray Train uses for its
``storage_path`` and Ray Data for ``read_parquet``/``write_parquet``. Arrow's S3 client takes its
credentials from the standard AWS chain (Pod Identity / IRSA on the cluster) and honours the
standard ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` variables when it is built from a URI
(apache/arrow GH-36770, GH-38663), so an S3-compatible server needs no project-specific setting.

This module imports only the standard library at import time (the Pulumi program imports the
catalog, which lists this file); pyarrow is imported when a URI is actually used.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

Location = str | Path
"""A local path (``Path``) or a URI (``str`` with ``://``)."""


def is_uri(location: Location) -> bool:
    """Whether ``location`` is a URI (``s3://...``) rather than a local path."""
    return isinstance(location, str) and "://" in location


def join(location: Location, *parts: str) -> Location:
    """``location/parts...``: a ``Path`` for local paths, a ``str`` for URIs."""
    if is_uri(location):
        base = str(location).rstrip("/")
        return "/".join([base, *(part.strip("/") for part in parts)])
    return Path(location).joinpath(*parts)


def name(location: Location) -> str:
    """The last path component."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def _filesystem(location: Location) -> tuple[Any, str]:
    from pyarrow import fs

    if is_uri(location):
        filesystem, path = fs.FileSystem.from_uri(str(location))
        return filesystem, path
    return fs.LocalFileSystem(), str(location)


def filesystem(location: Location) -> tuple[Any, str]:
    """The pyarrow filesystem and path of ``location`` (for Ray Train / Ray Data arguments)."""
    return _filesystem(location)


def child_dirs(location: Location) -> list[str]:
    """Names of the directories directly under ``location`` (empty when it does not exist)."""
    if not is_uri(location):
        local = Path(location)
        return [child.name for child in local.iterdir() if child.is_dir()] if local.is_dir() else []
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    return [info.base_name for info in infos if info.type == fs.FileType.Directory]


def is_file(location: Location) -> bool:
    """Whether a file exists at ``location``."""
    if not is_uri(location):
        return Path(location).is_file()
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    return bool(filesystem.get_file_info(path).type == fs.FileType.File)


def stamp(location: Location) -> int | None:
    """A change marker of the file at ``location`` (modification time in ns), ``None`` if absent."""
    if not is_uri(location):
        try:
            return Path(location).stat().st_mtime_ns
        except OSError:
            return None
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    info = filesystem.get_file_info(path)
    if info.type != fs.FileType.File:
        return None
    return int(info.mtime_ns or 0) ^ int(info.size or 0)


def read_bytes(location: Location) -> bytes:
    """The contents of the file at ``location`` (``FileNotFoundError`` when absent)."""
    if not is_uri(location):
        return Path(location).read_bytes()
    filesystem, path = _filesystem(location)
    with filesystem.open_input_stream(path) as stream:
        data: bytes = stream.read()
    return data


def write_bytes(location: Location, data: bytes) -> None:
    """Write ``data`` to ``location`` (parents created)."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_bytes(data)
        return
    filesystem, path = _filesystem(location)
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def download_dir(location: Location, destination: Path) -> Path:
    """Copy the files directly under ``location`` into the local ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    if not is_uri(location):
        for child in Path(location).iterdir():
            if child.is_file():
                shutil.copy2(child, destination / child.name)
        return destination
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    fs.copy_files(
        path, str(destination), source_filesystem=filesystem, destination_filesystem=fs.LocalFileSystem()
    )
    return destination


def copy_files(source: Location, destination: Location, names: tuple[str, ...]) -> None:
    """Copy the files ``names`` from directory ``source`` into directory ``destination``."""
    for file_name in names:
        write_bytes(join(destination, file_name), read_bytes(join(source, file_name)))


def delete_dir(location: Location) -> None:
    """Remove the directory ``location`` and everything under it (nothing when absent)."""
    if not is_uri(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    if filesystem.get_file_info(path).type != fs.FileType.NotFound:
        filesystem.delete_dir(path)

"""Image bytes for the image-train / image-serve tests (encoded in memory with Pillow)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np


def encode(pixels: np.ndarray, image_format: str = "PNG") -> bytes:
    """``pixels`` (uint8, gray or RGB) encoded as ``image_format`` (PNG, JPEG, GIF, ...)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` 8-bit gray pixels, with no pixel data:
    what a decompression bomb looks like to a decoder that trusts the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")

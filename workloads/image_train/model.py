"""The image-train model (torchvision ResNet-18), its input pipeline and its on-disk layout.

One module for everything the trainer and the ``image-serve`` app must agree on, so they cannot
drift apart: how an encoded image becomes a model input (:func:`decode_image` +
:func:`preprocess`), how the network is built (:func:`build_model`) and what ``model.json``
records (:class:`ImageModelMeta`). Checkpoints and the exported model use the shared layout of
:mod:`workloads.model_store` (``model.pt`` + ``model.json``, ``optimizer.pt`` in checkpoints).

Decoding is guarded: only PNG and JPEG are accepted (by their magic bytes, not a client header),
and the pixel count is checked from the header before any pixel is decoded, so a small
"decompression bomb" file cannot make a replica allocate gigabytes.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workloads import model_store, storage
from workloads.storage import Location

MODEL_FILE = model_store.MODEL_FILE
META_FILE = model_store.META_FILE
OPTIMIZER_FILE = model_store.OPTIMIZER_FILE
ARCHITECTURE = "resnet18"

MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest image (width x height, from its header) decoded; larger ones are refused unread."""
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}

MEAN = 0.5
STD = 0.5
"""Pixels are scaled to [0, 1] and normalised with this mean and standard deviation (every channel)."""


class ModelNotFoundError(FileNotFoundError):
    """No usable image model at the given path."""


class ImageError(ValueError):
    """Bytes that are not a PNG or JPEG image the model can take."""


class UnsupportedFormatError(ImageError):
    """Bytes that are neither a PNG nor a JPEG (by their signature)."""


class ImageTooLargeError(ImageError):
    """An image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels."""


@dataclass(frozen=True, kw_only=True)
class ImageModelMeta:
    """What is needed to rebuild the model and to feed it (``model.json``)."""

    architecture: str = ARCHITECTURE
    image_size: int
    channels: int
    """1: images are read as grayscale ("L"); 3: as RGB."""
    labels: list[str] = field(default_factory=list)
    """Class names in output order (the class directory names of the training data, sorted)."""
    mean: float = MEAN
    std: float = STD
    dataset: str
    epoch: int
    held_out_accuracy: float

    @property
    def num_classes(self) -> int:
        """Number of outputs of the network."""
        return len(self.labels)

    @property
    def mode(self) -> str:
        """PIL / Ray Data image mode of the inputs."""
        return "L" if self.channels == 1 else "RGB"


def build_model(*, num_classes: int, channels: int) -> nn.Module:
    """ResNet-18 from torchvision, randomly initialised (no weights are downloaded).

    The stem convolution takes ``channels`` input planes (1 for grayscale data), the head
    ``num_classes`` outputs; everything else is torchvision's ResNet-18.
    """
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    if channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def image_format(data: bytes) -> str:
    """``PNG`` or ``JPEG`` from the magic bytes; raises :class:`UnsupportedFormatError` otherwise."""
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            return name
    raise UnsupportedFormatError("body is not a PNG or JPEG image (checked by its first bytes)")


def decode_image(data: bytes, *, image_size: int, mode: str) -> np.ndarray:
    """An encoded PNG/JPEG as the model sees it: ``mode`` pixels resized to ``image_size`` squared.

    Returns ``uint8`` of shape ``(image_size, image_size)`` for mode ``L`` or ``(.., .., 3)`` for
    ``RGB``. Raises :class:`ImageError` for other formats, corrupt data or oversized images.
    """
    from PIL import Image, UnidentifiedImageError

    expected = image_format(data)
    try:
        with Image.open(io.BytesIO(data), formats=[expected]) as opened:
            width, height = opened.size  # from the header; no pixel is decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageTooLargeError(
                    f"image of {width}x{height} pixels exceeds the {MAX_IMAGE_PIXELS}-pixel limit"
                )
            # The order of Ray Data's read_images, which prepares the training images: resize
            # (bilinear) first, then convert the mode; served images must match them exactly.
            image: Any = opened
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            if image.mode != mode:
                image = image.convert(mode)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageError(f"cannot decode the {expected} image: {error}") from None


def preprocess(images: np.ndarray, *, channels: int, mean: float = MEAN, std: float = STD) -> torch.Tensor:
    """``uint8`` images ``(N, H, W)`` or ``(N, H, W, C)`` -> normalised ``float32`` ``(N, C, H, W)``."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[:, :, :, None]
    if array.ndim != 4 or array.shape[3] != channels:
        raise ValueError(f"expected images of shape (N, H, W[, {channels}]), got {tuple(np.shape(images))}")
    # Ray Data hands out read-only views; torch wants memory it may write to.
    array = np.ascontiguousarray(array) if array.flags.writeable else array.copy()
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)
    return tensor.sub_(mean).div_(std)


def write_model_dir(
    directory: Any,
    *,
    state_dict: dict[str, torch.Tensor],
    meta: ImageModelMeta,
    optimizer_state: dict[str, object] | None = None,
) -> None:
    """Write ``model.pt`` (and ``optimizer.pt``), then ``model.json`` into the local ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, directory / MODEL_FILE)
    if optimizer_state is not None:
        torch.save(optimizer_state, directory / OPTIMIZER_FILE)
    (directory / META_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True))


def read_meta(directory: Location) -> ImageModelMeta:
    """The :class:`ImageModelMeta` of a model directory (local path or ``s3://`` URI)."""
    meta_path = storage.join(directory, META_FILE)
    if not storage.is_file(meta_path) or not storage.is_file(storage.join(directory, MODEL_FILE)):
        raise ModelNotFoundError(
            f"no trained image model at {directory} (run the image-train workload first)"
        )
    values = json.loads(storage.read_bytes(meta_path))
    if values.get("architecture") != ARCHITECTURE:
        raise ModelNotFoundError(
            f"{directory} holds a {values.get('architecture', 'non-image')!r} model, not {ARCHITECTURE!r}; "
            "point MODEL_PATH at an image-train export"
        )
    return ImageModelMeta(**values)


def load_model(directory: Location) -> tuple[nn.Module, ImageModelMeta]:
    """Rebuild the model stored in ``directory`` (eval mode, CPU)."""
    meta = read_meta(directory)
    model = build_model(num_classes=meta.num_classes, channels=meta.channels)
    weights = io.BytesIO(storage.read_bytes(storage.join(directory, MODEL_FILE)))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    return model, meta


def export_model(source: Location, target: Location) -> ImageModelMeta:
    """Publish the checkpoint ``source`` as the model directory ``target`` (``model.json`` last)."""
    meta = read_meta(source)
    model_store.publish(source, target, (MODEL_FILE, META_FILE))
    return meta


def predict(model: nn.Module, meta: ImageModelMeta, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(class indices, confidences)`` for decoded ``uint8`` images (see :func:`decode_image`)."""
    inputs = preprocess(images, channels=meta.channels, mean=meta.mean, std=meta.std)
    with torch.no_grad():
        probabilities = torch.softmax(model(inputs), dim=1)
    confidence, index = probabilities.max(dim=1)
    return index.numpy().astype(np.int64), confidence.numpy().astype(np.float64)

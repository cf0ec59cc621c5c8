"""Reading input images the way PaddleSeg does (OpenCV, 3-channel BGR) with precise errors, and
writing label maps and overlays atomically."""

from __future__ import annotations

import glob
import io
from pathlib import Path

import cv2
import numpy as np

from .errors import InputImageError
from .fileio import atomic_output, write_bytes_atomic

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_MAX_PIXELS = 64_000_000


def expand_inputs(items: list[str]) -> tuple[list[Path], list[InputImageError]]:
    """Files, folders (their images, sorted) and globs → image paths, plus an error per empty item."""
    paths: list[Path] = []
    errors: list[InputImageError] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                errors.append(InputImageError("folder has no images", path=path,
                                              hint=f"put {', '.join(sorted(IMAGE_SUFFIXES))} files in it"))
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                errors.append(InputImageError("pattern matches no file", path=item))
            paths.extend(found)
        else:
            errors.append(InputImageError("no such file", path=path, hint="check the path"))
    return paths, errors


def _header_size(data: bytes, path: Path) -> tuple[int, int] | None:
    """(width, height) from the header alone, so huge images are refused before decoding."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None


def _truncated(data: bytes) -> bool:
    if data[:2] == b"\xff\xd8":  # JPEG must end with EOI (trailing padding tolerated)
        return b"\xff\xd9" not in data[-64:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """BGR uint8 HxWx3, decoded as PaddleSeg's cv2.imread(IMREAD_COLOR) does: grayscale is expanded,
    alpha dropped, 16-bit scaled to 8-bit, CMYK JPEG converted."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputImageError("cannot read the file", path=path, note=exc.strerror) from None
    if not data:
        raise InputImageError("file is empty", path=path)
    size = _header_size(data, path)
    if size is not None and size[0] * size[1] > max_pixels:
        raise InputImageError(f"image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, above the limit",
                              path=path, hint=f"raise --max-pixels (now {max_pixels:,}) or downscale it")
    if _truncated(data):
        raise InputImageError("image file is truncated", path=path, hint="re-copy or re-export the image")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputImageError("not an image OpenCV can decode", path=path,
                              hint=f"use one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    return image


def read_label(labels: Path, image: Path) -> np.ndarray:
    """The PaddleSeg label PNG (class ids, 255 = ignore) for `image`: `labels/<image stem>.png`."""
    path = labels / f"{image.stem}.png"
    label = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if label is None:
        raise InputImageError("label PNG missing or unreadable", path=path, hint="labels are PNGs named like their images")
    return label


def write_label_png(path: Path, labels: np.ndarray) -> Path:
    """Label map as a palette PNG (pixel values are class ids; viewers show PaddleSeg's colours)."""
    from PIL import Image

    image = Image.fromarray(labels, mode="P")
    image.putpalette(color_map().reshape(-1).tolist())
    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def write_overlay(path: Path, image_bgr: np.ndarray, labels: np.ndarray) -> Path:
    colored = color_map()[:, ::-1][labels]
    ok, encoded = cv2.imencode(".jpg", overlay(image_bgr, colored), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise InputImageError("could not encode the overlay", path=path)
    return write_bytes_atomic(path, encoded.tobytes())


def color_map(count: int = 256) -> np.ndarray:
    """The PASCAL VOC palette PaddleSeg uses for pseudo-colour label images (count x 3, RGB)."""
    palette = np.zeros((count, 3), np.uint8)
    for label in range(count):
        value, shift = label, 7
        while value:
            for channel in range(3):
                palette[label, channel] |= ((value >> channel) & 1) << shift
            shift -= 1
            value >>= 3
    return palette


def overlay(image_bgr: np.ndarray, colored_bgr: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """Colours blended over the image, as PaddleSeg's visualize does (weight on the image)."""
    return cv2.addWeighted(image_bgr, weight, colored_bgr, 1 - weight, 0)

"""Sliding-window inference as PaddleSeg's `paddleseg.core.infer.slide_inference` does it (`test_config:
is_slide`, `crop_size: [w, h]`, `stride: [w, h]`): crops of the normalized image placed exactly as
PaddleSeg places them, their scores summed where they overlap and divided by the count, argmax at the end.

Memory stays bounded for any image size: the sums are kept for one horizontal strip of the image at a
time (`strips`), and every crop that reaches into a strip is run for it. A pixel's sum is over the same
crops in the same order whatever the strips, so the labels do not depend on them. This module is the
CPU twin of the GPU kernels in `runtime/kernels/slide.cu`; PaddleSeg sums in float64, both twins in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..errors import ConfigError, InputImageError

DEFAULT_STRIP_BYTES = 1 << 30  # summed scores held at once, per image being slid


@dataclass(frozen=True)
class SlideWindow:
    """PaddleSeg's `crop_size` and `stride`, both (width, height), and the memory the sums may take."""

    crop: tuple[int, int]
    stride: tuple[int, int]
    strip_bytes: int = DEFAULT_STRIP_BYTES

    def __post_init__(self) -> None:
        if min(*self.crop, *self.stride) < 1:
            raise ConfigError(f"crop size {self.crop} and stride {self.stride} must be positive",
                              hint="e.g. --crop-size 512,512 --stride 341,341")

    @classmethod
    def of(cls, crop: tuple[int, int], stride: tuple[int, int] | None = None) -> SlideWindow:
        """The window of `crop`, `stride` (default: two thirds of the crop, PaddleSeg's usual ratio)."""
        return cls(crop, stride or (max(1, crop[0] * 2 // 3), max(1, crop[1] * 2 // 3)))


def parse_pair(text: str, option: str) -> tuple[int, int]:
    """`--crop-size` / `--stride` as given: W,H (or one number for both)."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ConfigError(f"bad {option} {text!r}", hint=f"give W,H, e.g. {option} 512,512")
    return values[0], values[1]


@dataclass(frozen=True)
class Box:
    """One crop: rows y1..y2 and columns x1..x2 of the image (end exclusive)."""

    y1: int
    y2: int
    x1: int
    x2: int


def crop_boxes(height: int, width: int, window: SlideWindow) -> list[Box]:
    """The crops in PaddleSeg's order (row by row), placed as `slide_inference` places them: the last
    row and column are pushed back inside the image; an image smaller than the crop is one crop."""
    w_crop, h_crop = window.crop
    w_stride, h_stride = window.stride
    rows = 1 if height <= h_crop else int(np.ceil(1.0 * (height - h_crop) / h_stride)) + 1
    cols = 1 if width <= w_crop else int(np.ceil(1.0 * (width - w_crop) / w_stride)) + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * h_stride + h_crop, height), min(c * w_stride + w_crop, width)
            boxes.append(Box(max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return boxes


def strips(height: int, width: int, classes: int, window: SlideWindow) -> list[tuple[int, int]]:
    """Row ranges whose float32 sums (classes + a count per pixel) fit `window.strip_bytes`, at least one
    crop high, so a crop reaches into at most a few strips."""
    per_row = (classes + 1) * width * 4
    rows = max(min(height, window.crop[1]), window.strip_bytes // per_row)
    return [(y0, min(y0 + rows, height)) for y0 in range(0, height, rows)]


def boxes_in_strip(boxes: list[Box], strip: tuple[int, int]) -> list[Box]:
    return [b for b in boxes if b.y1 < strip[1] and b.y2 > strip[0]]


def check_crop_fits(height: int, width: int, window: SlideWindow, model_hw: tuple[int, int] | None) -> None:
    """A fixed-size model takes crops of its own size only: the image must be at least that large."""
    if model_hw is not None and (height < window.crop[1] or width < window.crop[0]):
        raise InputImageError(f"image {height}x{width} is smaller than the crop {window.crop[1]}x{window.crop[0]} "
                              "this fixed-size model takes", hint="infer it without --crop-size")


def chunks(boxes: list[Box], size: int) -> Iterator[list[Box]]:
    for start in range(0, len(boxes), size):
        yield boxes[start:start + size]


def slide_cpu(image_chw: np.ndarray, window: SlideWindow, classes: int, run: Callable[[np.ndarray], np.ndarray],
              max_batch: int) -> np.ndarray:
    """uint8 labels of a whole preprocessed image (3 x H x W), its crops run `max_batch` at a time by `run`
    (NCHW in, N x classes x h x w scores out)."""
    height, width = image_chw.shape[1:]
    boxes = crop_boxes(height, width, window)
    labels = np.empty((height, width), np.uint8)
    scores_of: dict[Box, np.ndarray] = {}  # a crop's scores, kept while the strips below it need them
    for strip in strips(height, width, classes, window):
        chosen = boxes_in_strip(boxes, strip)
        for part in chunks([b for b in chosen if b not in scores_of], max_batch):
            outputs = run(np.stack([image_chw[:, b.y1:b.y2, b.x1:b.x2] for b in part]))
            scores_of.update(zip(part, outputs))
        labels[strip[0]:strip[1]] = _strip_labels(chosen, scores_of, strip, width, classes)
        for box in [b for b in scores_of if b.y2 <= strip[1]]:
            del scores_of[box]  # no later strip reaches above this one's end
    return labels


def _strip_labels(boxes: list[Box], scores_of: dict[Box, np.ndarray], strip: tuple[int, int], width: int,
                  classes: int) -> np.ndarray:
    """argmax of the summed scores divided by the count, over the strip's rows (the GPU kernels' twin)."""
    y0, y1 = strip
    total = np.zeros((classes, y1 - y0, width), np.float32)
    count = np.zeros((y1 - y0, width), np.float32)
    for box in boxes:
        top, bottom = max(box.y1, y0), min(box.y2, y1)
        scores = scores_of[box][:, top - box.y1:bottom - box.y1].astype(np.float32)
        total[:, top - y0:bottom - y0, box.x1:box.x2] += scores
        count[top - y0:bottom - y0, box.x1:box.x2] += 1
    return (total / count).argmax(axis=0).astype(np.uint8)

"""The options of `convert` as one frozen dataclass with its defaults, and the parsers of their CLI forms."""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..artifact import PRECISIONS
from ..errors import ConfigError
from ..images import expand_inputs, image_hw


@dataclass(frozen=True)
class BatchRange:
    """TensorRT optimization profile for the batch dimension."""

    min: int = 1
    opt: int = 1
    max: int = 8

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        parts = text.split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) == 1:
            values = values * 3
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise ConfigError(f"bad --batch {text!r}", hint="give MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:1:8")
        return cls(*values)


DEFAULT_OPSET = 11  # what TensorRT 8.6 through 11 and TensorRT-RTX all parse
Range = tuple[int, int, int]  # min, opt, max


@dataclass(frozen=True)
class InputShape:
    """`--input-shape`: N, 3, H, W where H and W are a size or a MIN:OPT:MAX range (dynamic-shape exports)."""

    batch: int
    height: Range
    width: Range

    @property
    def fixed(self) -> bool:
        return len(set(self.height)) == 1 and len(set(self.width)) == 1

    @property
    def opt_hw(self) -> tuple[int, int]:
        return self.height[1], self.width[1]


@dataclass(frozen=True)
class ConvertOptions:
    """Everything `convert` can be told; defaults live here and nowhere else.

    Attributes:
        opset: ONNX opset paddle2onnx exports at (TensorRT 8.6 parses 9-17); None means DEFAULT_OPSET,
            raised to the opset paddle2onnx names when the model needs a newer one.
        precision: engine precision; fp16 means an FP16 ONNX graph on strongly typed TensorRT.
        batch: optimization profile of the batch dimension (a fixed-batch export overrides it).
        input_shape: the size (or, for a dynamic-shape export, the H and W ranges of the engine's
            optimization profile) when `deploy.yaml` leaves H and W open.
        shapes_from: a folder of typical images whose sizes (read from their headers) set a dynamic-shape
            model's profile: min and max cover them all, opt is the most common size.
        workspace: builder workspace limit in bytes; None means a safe share of free GPU memory.
        target_sms: compute capabilities to build for, e.g. ("8.7",); None means the builder's GPU.
        calib_images: folder of images to calibrate INT8 on (through the inference preprocessing).
        calib_count: at most this many calibration images (sorted by name).
        eval_images, eval_labels: images (and label PNGs) for the accuracy report; else the calibration
            images, else generated scenes, compared with the FP32 graph.
        max_miou_loss: mIoU points the reduced precision may lose (default 0.3 FP16, 1.5 INT8).
        accept_accuracy_loss: keep a graph above that limit (the report still says "fail").
        force: redo every stage even when its inputs did not change.
        onnx_only: stop after the ONNX stages (no TensorRT needed).
    """

    opset: int | None = None
    precision: str = "fp32"
    batch: BatchRange = field(default_factory=BatchRange)
    input_shape: InputShape | None = None
    shapes_from: Path | None = None
    workspace: int | None = None
    target_sms: tuple[str, ...] | None = None
    calib_images: Path | None = None
    calib_count: int = 200
    eval_images: Path | None = None
    eval_labels: Path | None = None
    max_miou_loss: float | None = None
    accept_accuracy_loss: bool = False
    force: bool = False
    onnx_only: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
        if self.precision == "int8" and self.calib_images is None:
            raise ConfigError("INT8 needs calibration images", hint="pass --calib-images DIR (e.g. 200 typical images)")
        if self.opset is not None and not 7 <= self.opset <= 21:
            raise ConfigError(f"opset {self.opset} is out of range", hint="use --opset 11 (default) up to 17 for TensorRT")


    @property
    def export_opset(self) -> int:
        return self.opset or DEFAULT_OPSET


def parse_input_shape(text: str) -> InputShape:
    """'1,3,512,1024', or with H/W ranges for a dynamic-shape model: '1,3,256:512:1024,256:1024:2048'."""
    try:
        dims = [tuple(int(v) for v in part.split(":")) for part in re.split(r"[,x ]+", text.strip())]
    except ValueError:
        dims = []
    ranges = [d * 3 if len(d) == 1 else d for d in dims]
    if len(ranges) != 4 or ranges[1] != (3, 3, 3) or len(set(ranges[0])) != 1 or \
            any(len(r) != 3 or not 1 <= r[0] <= r[1] <= r[2] for r in ranges):
        raise ConfigError(f"bad --input-shape {text!r}", hint="give N,C,H,W with C=3, e.g. 1,3,512,1024, or H/W "
                          "ranges MIN:OPT:MAX for a dynamic-shape model, e.g. 1,3,256:512:1024,256:1024:2048")
    return InputShape(ranges[0][0], ranges[2], ranges[3])  # type: ignore[arg-type]


def shapes_of_images(folder: Path) -> tuple[InputShape, int]:
    """The profile that covers the images under `folder` (sizes from their headers, no decoding) and how
    many were read: what Paddle Inference's collect_shape_range_info measures by running them. Images
    run at their own size (PaddleSeg's Normalize-only deploy pipeline), so their sizes are the inputs'."""
    paths, errors = expand_inputs([str(folder)])
    if not paths:
        raise ConfigError("--shapes-from has no images", path=folder,
                          note=errors[0].one_line() if errors else None, hint="pass a folder of typical images")
    sizes = [image_hw(path) for path in paths]
    heights, widths = zip(*sizes)
    opt = max(collections.Counter(sizes).items(), key=lambda item: (item[1], item[0]))[0]
    return InputShape(1, (min(heights), opt[0], max(heights)), (min(widths), opt[1], max(widths))), len(sizes)


def parse_size(text: str) -> int:
    """'2GiB', '512MiB', '1.5G' or plain bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ConfigError(f"bad size {text!r}", hint="write it like 2GiB or 512MiB")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def parse_target_sms(text: str) -> tuple[str, ...]:
    sms = tuple(s.strip() for s in text.split(",") if s.strip())
    if not sms or not all(re.fullmatch(r"\d+\.\d+", s) for s in sms):
        raise ConfigError(f"bad --target-sm {text!r}", hint="give compute capabilities like 8.7,8.6")
    return sms

"""Preprocessing from `deploy.yaml`: the GPU kernel and its CPU twin (PaddleSeg's own arithmetic).

PaddleSeg reads the image with OpenCV as float32, converts BGR→RGB, then applies the transforms in
order. `Resize` (LINEAR) and `Normalize` have a fused GPU kernel; other transforms PaddleSeg knows run on
the CPU through paddleseg itself (with a warning); transforms nobody knows are an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError, InputImageError

log = logging.getLogger(__name__)
_INTERP = {"NEAREST": cv2.INTER_NEAREST, "LINEAR": cv2.INTER_LINEAR, "CUBIC": cv2.INTER_CUBIC,
           "AREA": cv2.INTER_AREA, "LANCZOS4": cv2.INTER_LANCZOS4}
_OWN = {"Resize", "Normalize"}


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects, read from the engine/convert metadata (`preprocessing` section)."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    to_rgb: bool
    transforms: tuple[dict[str, Any], ...]
    gpu_ready: bool  # True when every transform has a kernel
    # A dynamic-shape model takes each image at its own size, within hw_min..hw_max (its profile), as
    # PaddleSeg's deploy pipeline feeds it: no padding (a `Padding` in deploy.yaml runs as PaddleSeg's).
    dynamic_hw: bool = False
    hw_min: tuple[int, int] = (1, 1)
    hw_max: tuple[int, int] = (1 << 30, 1 << 30)

    @classmethod
    def from_metadata(cls, preprocessing: dict[str, Any]) -> PreprocessSpec:
        transforms = tuple(preprocessing["transforms"])
        height, width = preprocessing["model_input_hw"]
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        gpu_ready = True
        foreign = [t["type"] for t in transforms if t["type"] not in _OWN]
        if foreign:
            _require_paddleseg_transforms(foreign)
            log.warning("transforms %s have no GPU kernel: preprocessing runs on the CPU", ", ".join(foreign))
            gpu_ready = False
        for t in transforms:
            if t["type"] == "Normalize":
                mean = _triple(t.get("mean", mean))
                std = _triple(t.get("std", std))
            elif t["type"] == "Resize" and (t.get("interp", "LINEAR") != "LINEAR" or t.get("keep_ratio")):
                gpu_ready = False
        return cls(int(height), int(width), mean, std, bool(preprocessing.get("to_rgb", True)), transforms, gpu_ready,
                   bool(preprocessing.get("dynamic_hw", False)), _pair(preprocessing.get("hw_min", (1, 1))),
                   _pair(preprocessing.get("hw_max", (1 << 30, 1 << 30))))

    def input_hw(self, height: int, width: int) -> tuple[int, int]:
        """The model input's H, W for an image of this size: its own (dynamic models) or the model's."""
        return (height, width) if self.dynamic_hw else (self.height, self.width)

    def for_sliding_window(self) -> PreprocessSpec:
        """The spec that preprocesses a whole image at its own size for sliding-window inference:
        PaddleSeg's slide configs crop the normalized image, so no transform resizes it to the model."""
        kept = tuple(t for t in self.transforms if t["type"] != "Resize")
        return replace(self, transforms=kept, dynamic_hw=True, hw_min=(1, 1), hw_max=(1 << 30, 1 << 30),
                       gpu_ready=all(t["type"] in _OWN for t in kept))

    def check_size(self, height: int, width: int) -> None:
        """Refuses an image a dynamic-shape model's profile does not cover, naming the profile and the fixes."""
        if not all(low <= size <= high for low, size, high in zip(self.hw_min, (height, width), self.hw_max)):
            raise InputImageError(f"image {height}x{width} is outside the model's input profile "
                                  f"{self.hw_min[0]}x{self.hw_min[1]} to {self.hw_max[0]}x{self.hw_max[1]}",
                                  hint="re-convert with --shapes-from DIR (a folder of such images) or "
                                       "--input-shape 1,3,MIN:OPT:MAX,MIN:OPT:MAX, or infer with "
                                       "--crop-size W,H --stride W,H (sliding window)")


def _pair(values: Any) -> tuple[int, int]:
    a, b = (int(v) for v in values)
    return a, b


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def _require_paddleseg_transforms(names: list[str]) -> None:
    try:
        from paddleseg.cvlibs import manager
    except ImportError:
        raise ConfigError(f"deploy.yaml uses transforms {', '.join(names)}, which deploy-kit has no kernel for",
                          hint="pip install paddleseg to run them on the CPU, or export with Resize + Normalize") from None
    unknown = [n for n in names if n not in manager.TRANSFORMS.components_dict]
    if unknown:
        raise ConfigError(f"unknown transforms in deploy.yaml: {', '.join(unknown)}",
                          hint="use PaddleSeg transforms (Resize, Normalize, ...) in the val_dataset config")


def preprocess_cpu(image_bgr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """CHW float32 model input, computed as PaddleSeg computes it (the reference for the GPU kernel).

    PaddleSeg swaps BGR to RGB first; the swap is exact and commutes with the per-channel resize, so it
    happens after it, on the smaller image, with the same values."""
    image = image_bgr.astype("float32")
    swap = spec.to_rgb
    for t in spec.transforms:
        if t["type"] == "Resize":
            width, height = t.get("target_size", (512, 512))
            image = cv2.resize(image, (int(width), int(height)), interpolation=_INTERP[t.get("interp", "LINEAR")])
            continue
        if swap:
            image, swap = np.ascontiguousarray(image[:, :, ::-1]), False
        if t["type"] == "Normalize":
            image = image / 255.0
            image -= np.array(spec.mean)[np.newaxis, np.newaxis, :]
            image /= np.array(spec.std)[np.newaxis, np.newaxis, :]
            image = image.astype("float32")
        else:
            image = _paddleseg_transform(t, image)
    if swap:
        image = image[:, :, ::-1]
    if not spec.dynamic_hw and image.shape[:2] != (spec.height, spec.width):
        raise ConfigError(f"preprocessing gives {image.shape[0]}x{image.shape[1]}, the model takes "
                          f"{spec.height}x{spec.width}", hint="add a fixed-size Resize to deploy.yaml")
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def _paddleseg_transform(t: dict[str, Any], image: np.ndarray) -> np.ndarray:
    from paddleseg.cvlibs import manager

    op = manager.TRANSFORMS[t["type"]](**{k: v for k, v in t.items() if k != "type"})
    return op({"img": image, "trans_info": []})["img"]


def cv2_linear_scale(src: int, dst: int) -> float:
    """OpenCV's source step per destination pixel: 1 / (dst / src), in double precision."""
    return 1.0 / (dst / src)

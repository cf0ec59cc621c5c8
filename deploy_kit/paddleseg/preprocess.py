"""Preprocessing from `deploy.yaml`: the GPU kernel and its CPU twin (PaddleSeg's own arithmetic).

PaddleSeg reads the image with OpenCV as float32, converts BGR→RGB, then applies the transforms in
order. `Resize` (LINEAR) and `Normalize` have a fused GPU kernel; other transforms PaddleSeg knows run on
the CPU through paddleseg itself (with a warning); transforms nobody knows are an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError

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
        return cls(int(height), int(width), mean, std, bool(preprocessing.get("to_rgb", True)), transforms, gpu_ready)


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
    """CHW float32 model input, computed as PaddleSeg computes it (the reference for the GPU kernel)."""
    image = image_bgr.astype("float32")
    if spec.to_rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    for t in spec.transforms:
        if t["type"] == "Resize":
            width, height = t.get("target_size", (512, 512))
            image = cv2.resize(image, (int(width), int(height)), interpolation=_INTERP[t.get("interp", "LINEAR")])
        elif t["type"] == "Normalize":
            image = image / 255.0
            image -= np.array(spec.mean)[np.newaxis, np.newaxis, :]
            image /= np.array(spec.std)[np.newaxis, np.newaxis, :]
            image = image.astype("float32")
        else:
            image = _paddleseg_transform(t, image)
    if image.shape[:2] != (spec.height, spec.width):
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

"""Turning one Triton request into images and its labels into a response, shared by the PyTriton server
and the exported python-backend models: encoded images (JPEG/PNG bytes, `image_bytes`) or uint8 HxWx3
arrays (`image`); a uint8 label map per image (`labels`), at the image's size. And the GPU kernels a
python-backend instance on a GPU uses for pre- and post-processing."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ..errors import DeployKitError, InputImageError
from ..images import decode_image
from ..paddleseg.preprocess import PreprocessSpec
from ..runtime.prepost import GpuPrePost

log = logging.getLogger(__name__)

IMAGE_BYTES, IMAGE, LABELS = "image_bytes", "image", "labels"


def request_images(inputs: Mapping[str, np.ndarray], max_pixels: int) -> list[np.ndarray]:
    """The BGR uint8 images of one request (a request may carry a batch); InputImageError names the problem."""
    if IMAGE_BYTES in inputs and IMAGE in inputs:
        raise InputImageError(f"send either {IMAGE_BYTES} or {IMAGE}, not both")
    if IMAGE_BYTES in inputs:
        encoded = inputs[IMAGE_BYTES].reshape(-1)
        if not encoded.size:
            raise InputImageError(f"{IMAGE_BYTES} holds no image")
        return [_decode(item, index, max_pixels) for index, item in enumerate(encoded)]
    if IMAGE in inputs:
        images = inputs[IMAGE]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not images.size:
            raise InputImageError(f"{IMAGE} must be uint8 [batch, H, W, 3] BGR, got {images.dtype} {list(images.shape)}")
        if images.shape[1] * images.shape[2] > max_pixels:
            raise InputImageError(f"image is {images.shape[2]}x{images.shape[1]} pixels, above the limit of {max_pixels:,}")
        return list(images)
    raise InputImageError(f"the request has neither {IMAGE_BYTES} nor {IMAGE}")


def _decode(item: object, index: int, max_pixels: int) -> np.ndarray:
    data = bytes(item) if isinstance(item, (bytes, bytearray, np.bytes_)) else bytes(str(item), "latin-1")
    return decode_image(data, f"{IMAGE_BYTES}[{index}]", max_pixels)


def stacked_labels(labels: list[np.ndarray]) -> np.ndarray:
    """One request's label maps as [batch, H, W]; a request's images must share their size to stack."""
    if len({label.shape for label in labels}) > 1:
        raise InputImageError("the images of one request differ in size; send them in separate requests")
    return np.stack(labels)


def instance_kernels(args: Mapping[str, Any], spec: PreprocessSpec | None = None) -> GpuPrePost | None:
    """deploy-kit's pre/post-processing kernels on a GPU instance's device (Triton's `initialize` args;
    `spec` for preprocessing); None on a CPU instance, or where the kernels cannot run there (said in
    Triton's log): the CPU arithmetic then runs."""
    if args.get("model_instance_kind") != "GPU":
        return None
    if spec is not None and not spec.gpu_ready:
        log.warning("%s: deploy.yaml transforms without a GPU kernel; preprocessing on the CPU", args.get("model_name"))
        return None
    try:
        return GpuPrePost(int(args.get("model_instance_device_id", 0)))
    except (ImportError, DeployKitError) as exc:
        log.warning("%s: CUDA cannot run the kernels here (%s); running on the CPU", args.get("model_name"), exc)
        return None

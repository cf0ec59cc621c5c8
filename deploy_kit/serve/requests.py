"""Turning Triton requests into images and their labels into responses, shared by the PyTriton server
and the exported python-backend models: encoded images (JPEG/PNG bytes, `image_bytes`) or uint8 HxWx3
arrays (`image`); a uint8 label map per image (`labels`), at the image's size. And the GPU kernels a
python-backend instance on a GPU uses for pre- and post-processing."""

from __future__ import annotations

import collections
import logging
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DeployKitError, InputImageError
from ..images import EncodedImage, encoded_image, for_decoder
from ..paddleseg.preprocess import PreprocessSpec
from ..runtime.prepost import GpuPrePost
from ..segmenter import Segmenter

log = logging.getLogger(__name__)

IMAGE_BYTES, IMAGE, LABELS, ERROR = "image_bytes", "image", "labels", "error"

Outcome = np.ndarray | DeployKitError  # a request's [batch, H, W] labels, or what failed it


def segment_requests(segmenter: Segmenter, requests: Sequence[Mapping[str, np.ndarray]], max_pixels: int,
                     workers: int | None = None) -> list[Outcome]:
    """Every request's labels, or the error of its first bad image, which fails that request alone. The
    images of all requests run together in the segmenter's batches: encoded ones are read on `workers`
    threads and JPEGs decoded on the segmenter's decoder (the GPU's, by default on the GPU)."""
    outcomes: list[Outcome | None] = [None] * len(requests)
    items: list[tuple[int, int, Any]] = []
    for index, inputs in enumerate(requests):
        try:
            items += [(index, k, raw) for k, raw in enumerate(request_items(inputs, max_pixels))]
        except DeployKitError as exc:
            outcomes[index] = exc

    def load(item: tuple[int, int, Any]) -> np.ndarray | EncodedImage:
        _, k, raw = item
        return raw if isinstance(raw, np.ndarray) else segmenter.load_bytes(raw, f"{IMAGE_BYTES}[{k}]", max_pixels)

    labels: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    for result in segmenter.stream(items, decode=load, workers=workers or min(8, max(1, len(items)))):
        index = result.source[0]
        if result.error is not None:
            outcomes[index] = outcomes[index] or result.error
        elif result.labels is not None:
            labels[index].append(result.labels)
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            try:
                outcomes[index] = stacked_labels(labels[index])
            except DeployKitError as exc:
                outcomes[index] = exc
    return [o for o in outcomes if o is not None]


def request_items(inputs: Mapping[str, np.ndarray], max_pixels: int) -> list[bytes | np.ndarray]:
    """One request's images as sent, checked for what can be checked undecoded: encoded bytes, or BGR
    uint8 HxWx3 arrays within the pixel limit; InputImageError names the problem."""
    if IMAGE_BYTES in inputs and IMAGE in inputs:
        raise InputImageError(f"send either {IMAGE_BYTES} or {IMAGE}, not both")
    if IMAGE_BYTES in inputs:
        encoded = inputs[IMAGE_BYTES].reshape(-1)
        if not encoded.size:
            raise InputImageError(f"{IMAGE_BYTES} holds no image")
        return [_bytes(item) for item in encoded]
    if IMAGE in inputs:
        images = inputs[IMAGE]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not images.size:
            raise InputImageError(f"{IMAGE} must be uint8 [batch, H, W, 3] BGR, got {images.dtype} {list(images.shape)}")
        if images.shape[1] * images.shape[2] > max_pixels:
            raise InputImageError(f"image is {images.shape[2]}x{images.shape[1]} pixels, above the limit of {max_pixels:,}")
        return list(images)
    raise InputImageError(f"the request has neither {IMAGE_BYTES} nor {IMAGE}")


def request_images(inputs: Mapping[str, np.ndarray], max_pixels: int,
                   keep_jpegs: bool = False) -> list[np.ndarray | EncodedImage]:
    """The images of one request (a request may carry a batch), decoded on the CPU; with `keep_jpegs`, the
    JPEGs the GPU's hardware decoder takes are left encoded (their headers checked) for it."""
    images: list[np.ndarray | EncodedImage] = []
    for k, raw in enumerate(request_items(inputs, max_pixels)):
        if isinstance(raw, np.ndarray):
            images.append(raw)
            continue
        images.append(for_decoder(encoded_image(raw, f"{IMAGE_BYTES}[{k}]", max_pixels), keep_jpegs))
    return images


def _bytes(item: object) -> bytes:
    return bytes(item) if isinstance(item, (bytes, bytearray, np.bytes_)) else bytes(str(item), "latin-1")


def stacked_labels(labels: list[np.ndarray]) -> np.ndarray:
    """One request's label maps as [batch, H, W]; a request's images must share their size to stack."""
    if len({label.shape for label in labels}) > 1:
        raise InputImageError("the images of one request differ in size; send them in separate requests")
    return np.stack(labels)


def instance_kernels(args: Mapping[str, Any], spec: PreprocessSpec | None = None) -> GpuPrePost | None:
    """deploy-kit's pre/post-processing kernels on a GPU instance's device (Triton's `initialize` args;
    `spec` for preprocessing, whose instance also decodes JPEGs with the GPU's hardware decoder); None on
    a CPU instance, or where the kernels cannot run there (said in Triton's log): the CPU arithmetic then runs."""
    if args.get("model_instance_kind") != "GPU":
        return None
    if spec is not None and not spec.gpu_ready:
        log.warning("%s: deploy.yaml transforms without a GPU kernel; preprocessing on the CPU", args.get("model_name"))
        return None
    try:
        return GpuPrePost(int(args.get("model_instance_device_id", 0)), decode_jpegs=spec is not None)
    except (ImportError, DeployKitError) as exc:
        log.warning("%s: CUDA cannot run the kernels here (%s); running on the CPU", args.get("model_name"), exc)
        return None

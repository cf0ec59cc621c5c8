"""Postprocessing: argmax over classes and the nearest-neighbour resize back to the image's size, exactly
as PaddleSeg's `reverse_transform` does it (float32 ratio in/out, index truncated). CPU twin of the
GPU kernels in `kernels/postprocess.cu`, plus the palette and overlay helpers."""

from __future__ import annotations

import numpy as np


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each destination index, with Paddle's float32 arithmetic."""
    ratio = np.float32(in_size) / np.float32(out_size)
    return np.minimum((ratio * np.arange(out_size, dtype=np.float32)).astype(np.int64), in_size - 1)


def labels_from_output(output: np.ndarray) -> np.ndarray:
    """HxW int label map from one image's model output: CxHxW scores, or HxW / 1xHxW labels."""
    if output.ndim == 3 and output.shape[0] > 1:
        return output.argmax(axis=0)
    return output.reshape(output.shape[-2:])


def postprocess_cpu(output: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """uint8 label map at the original image size."""
    labels = labels_from_output(output)
    rows = nearest_indices(labels.shape[0], original_hw[0])
    cols = nearest_indices(labels.shape[1], original_hw[1])
    return labels[rows[:, None], cols[None, :]].astype(np.uint8)


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
    import cv2

    return cv2.addWeighted(image_bgr, weight, colored_bgr, 1 - weight, 0)

"""Postprocessing: argmax over classes and the nearest-neighbour resize back to the image's size, exactly
as PaddleSeg's `reverse_transform` does it (float32 ratio in/out, index truncated). CPU twin of the
GPU kernels in `runtime/kernels/postprocess.cu`."""

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
    # uint8 first, on the small map: casting commutes with the gather; two 1-D takes beat a 2-D index.
    return labels.astype(np.uint8).take(rows, axis=0).take(cols, axis=1)

"""Test helpers for video colour: a PyAV frame's samples as NV12 (what NVDEC gives) and a NumPy
restatement of runtime/kernels/nv12.cu's arithmetic, written from the standards (BT.601/709 matrices,
MPEG-2 chroma siting, linear interpolation) to check both FFmpeg's conversion and the kernel against."""

from __future__ import annotations

import numpy as np

from deploy_kit.runtime.buffers import Colour


def nv12_of(frame) -> np.ndarray:
    """A PyAV yuv420p frame's planes as one NV12 array of (height * 3 / 2) x width."""
    h, w = frame.height, frame.width
    planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in frame.planes]
    uv = np.empty((h // 2, w), np.uint8)
    uv[:, 0::2], uv[:, 1::2] = planes[1][:h // 2, :w // 2], planes[2][:h // 2, :w // 2]
    return np.concatenate([planes[0][:h, :w], uv])


def _upsampled(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) + 0.5) * 0.5 - 0.5
    top = np.clip(np.floor(rows).astype(int), 0, plane.shape[0] - 1)
    weight = np.where((rows < 0) | (top >= plane.shape[0] - 1), 0.0, rows - np.floor(rows))[:, None]
    bottom = np.minimum(top + 1, plane.shape[0] - 1)
    columns = plane[top] * (1 - weight) + plane[bottom] * weight  # height x width/2
    out = np.repeat(columns, 2, axis=1)
    out[:, 1:-1:2] = (columns[:, :-1] + columns[:, 1:]) / 2
    return out


def bgr_of_nv12(nv12: np.ndarray, colour: Colour) -> np.ndarray:
    """BGR uint8 from NV12 by the standards' arithmetic, in float64."""
    height, width = nv12.shape[0] * 2 // 3, nv12.shape[1]
    kr, kb = {"bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}.get(colour.matrix, (0.299, 0.114))
    kg = 1 - kr - kb
    y = nv12[:height].astype(np.float64)
    uv = nv12[height:].astype(np.float64)
    u, v = _upsampled(uv[:, 0::2], height, width), _upsampled(uv[:, 1::2], height, width)
    if colour.full_range:
        y, u, v = y, u - 128, v - 128
    else:
        y, u, v = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    bgr = np.stack([y + 2 * (1 - kb) * u, y - 2 * kb * (1 - kb) / kg * u - 2 * kr * (1 - kr) / kg * v,
                    y + 2 * (1 - kr) * v], axis=-1)
    return np.clip(np.rint(bgr), 0, 255).astype(np.uint8)


def i420_of_bgr(bgr: np.ndarray) -> np.ndarray:
    """I420 planes (h*3/2 x w) of an even-sized BGR image, BT.601 at limited range, chroma from each 2x2
    block's mean colour: what runtime/kernels/overlay.cu's bgr_to_i420 computes, restated in float64."""
    height, width = bgr.shape[:2]
    b, g, r = (bgr[..., c].astype(np.float64) for c in range(3))

    def luma(b, g, r):
        return 0.114 * b + 0.587 * g + 0.299 * r

    def block_mean(plane):
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    mb, mg, mr = block_mean(b), block_mean(g), block_mean(r)
    y = 16 + luma(b, g, r) * 219 / 255
    u = 128 + (mb - luma(mb, mg, mr)) * 224 / 255 / 1.772
    v = 128 + (mr - luma(mb, mg, mr)) * 224 / 255 / 1.402
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).round().astype(np.uint8).reshape(height * 3 // 2, width)

"""deploy-kit's pre- and post-processing and overlay kernels (runtime/kernels/*.cu): compiled by NVRTC
once per GPU architecture (cached on disk) and launched on any stream, for the pipeline and for the
stages that run apart from inference (Triton's pre- and post-processing models)."""

from __future__ import annotations

import ctypes
from importlib import resources
from typing import Sequence

import numpy as np

from ..cuda import CudaContext, KernelArg, KernelModule, Stream
from ..fileio import cache_root
from ..images import OVERLAY_WEIGHT
from ..paddleseg.preprocess import PreprocessSpec, cv2_linear_scale
from .buffers import Colour, Nv12Frame

BLOCK = (32, 8, 1)
_POSTPROCESS = {np.dtype(np.float16): "argmax_resize_f16", np.dtype(np.float32): "argmax_resize_f32",
                np.dtype(np.int32): "labels_resize_i32"}


def yuv_coefficients(colour: Colour) -> tuple[float, ...]:
    """nv12.cu's y_scale, y_offset, c_scale, rv, gu, gv, bu for a stream's colour rules (ITU-R BT.601,
    BT.709 or BT.2020 luma weights Kr, Kb; limited range stretches Y 16-235 and U, V 16-240 to 0-255)."""
    kr, kb = {"bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}.get(colour.matrix, (0.299, 0.114))
    kg = 1.0 - kr - kb
    y_scale, y_offset, c_scale = (1.0, 0.0, 1.0) if colour.full_range else (255 / 219, 16.0, 255 / 224)
    return (y_scale, y_offset, c_scale, 2 * (1 - kr), 2 * kb * (1 - kb) / kg, 2 * kr * (1 - kr) / kg, 2 * (1 - kb))


def kernel_source(name: str) -> str:
    return resources.files("deploy_kit.runtime").joinpath("kernels", name).read_text()


def _grid(width: int, height: int) -> tuple[int, int, int]:
    return (-(-width // BLOCK[0]), -(-height // BLOCK[1]), 1)


class PipelineKernels:
    """Resize + normalize into the model input (as a spec says), and argmax + resize back into labels."""

    def __init__(self, context: CudaContext) -> None:
        cache = cache_root() / "kernels"
        headers = (("half.cuh", kernel_source("half.cuh")),)
        self._pre = KernelModule(kernel_source("preprocess.cu"), context.compute_capability, cache, headers)
        self._post = KernelModule(kernel_source("postprocess.cu"), context.compute_capability, cache, headers)
        self._overlay = KernelModule(kernel_source("overlay.cu"), context.compute_capability, cache)
        self._slide = KernelModule(kernel_source("slide.cu"), context.compute_capability, cache, headers)
        self._nv12 = KernelModule(kernel_source("nv12.cu"), context.compute_capability, cache)

    @staticmethod
    def check_output_dtype(dtype: np.dtype) -> None:
        if np.dtype(dtype) not in _POSTPROCESS:
            raise ValueError(f"no postprocessing kernel for {np.dtype(dtype)} model outputs (float16, float32 or int32)")

    def preprocess(self, stream: Stream, spec: PreprocessSpec, src_ptr: int, src_h: int, src_w: int, dst_ptr: int,
                   dtype: np.dtype, src_stride: int | None = None) -> None:
        """One BGR uint8 image (rows `src_stride` bytes apart, packed by default: a crop of a larger image
        otherwise) into one CHW model input of `dtype` (float16 or float32) at `spec.input_hw`."""
        s = spec  # short: the argument list below names it many times
        height, width = s.input_hw(src_h, src_w)
        function = self._pre.function("preprocess_f16" if np.dtype(dtype) == np.float16 else "preprocess_f32")
        args: list[KernelArg] = [
            (src_ptr, ctypes.c_void_p), (src_h, ctypes.c_int), (src_w, ctypes.c_int),
            (src_stride or src_w * 3, ctypes.c_int), (dst_ptr, ctypes.c_void_p), (height, ctypes.c_int),
            (width, ctypes.c_int), (cv2_linear_scale(src_h, height), ctypes.c_double),
            (cv2_linear_scale(src_w, width), ctypes.c_double),
            *((v, ctypes.c_float) for v in s.mean), *((v, ctypes.c_float) for v in s.std), (int(s.to_rgb), ctypes.c_int)]
        function.launch(_grid(width, height), BLOCK, stream, args)

    def postprocess(self, stream: Stream, scores_ptr: int, dtype: np.dtype, classes: int, in_hw: tuple[int, int],
                    labels_ptr: int, out_h: int, out_w: int) -> None:
        """One image's scores (classes x H x W; int32 labels when the graph ends in argmax) into uint8
        labels at out_h x out_w, as PaddleSeg resizes back and takes the argmax."""
        self.check_output_dtype(dtype)
        function = self._post.function(_POSTPROCESS[np.dtype(dtype)])
        in_h, in_w = in_hw
        args: list[KernelArg] = [(scores_ptr, ctypes.c_void_p)]
        if np.dtype(dtype) != np.int32:
            args.append((classes, ctypes.c_int))
        args += [(in_h, ctypes.c_int), (in_w, ctypes.c_int), (labels_ptr, ctypes.c_void_p), (out_h, ctypes.c_int),
                 (out_w, ctypes.c_int), (float(np.float32(in_h) / np.float32(out_h)), ctypes.c_float),
                 (float(np.float32(in_w) / np.float32(out_w)), ctypes.c_float)]
        function.launch(_grid(out_w, out_h), BLOCK, stream, args)

    def preprocess_batch(self, stream: Stream, spec: PreprocessSpec, src_ptr: int, offsets: Sequence[int],
                         sizes: Sequence[tuple[int, int]], dst_ptr: int, dtype: np.dtype) -> None:
        """Images laid back to back from `src_ptr` (at `offsets`, of `sizes`) into an NCHW batch (one
        input size: the model's, or for a dynamic-shape model the images' common size)."""
        for index, (offset, (h, w)) in enumerate(zip(offsets, sizes)):
            per_image = 3 * int(np.prod(spec.input_hw(h, w))) * np.dtype(dtype).itemsize
            self.preprocess(stream, spec, src_ptr + offset, h, w, dst_ptr + index * per_image, dtype)

    def postprocess_batch(self, stream: Stream, scores_ptr: int, dtype: np.dtype, image_shape: Sequence[int],
                          sizes: Sequence[tuple[int, int]], labels_ptr: int) -> int:
        """A batch of scores (`image_shape` each) into label maps of `sizes` laid back to back from
        `labels_ptr`; their total bytes."""
        per_image = int(np.prod(image_shape)) * np.dtype(dtype).itemsize
        classes = int(image_shape[0]) if len(image_shape) == 3 else 1
        in_hw = (int(image_shape[-2]), int(image_shape[-1]))
        offset = 0
        for index, (h, w) in enumerate(sizes):
            self.postprocess(stream, scores_ptr + index * per_image, dtype, classes, in_hw, labels_ptr + offset, h, w)
            offset += h * w
        return offset

    def overlay_batch(self, stream: Stream, images_ptr: int, offsets: Sequence[int], labels_ptr: int,
                      sizes: Sequence[tuple[int, int]], palette_ptr: int, out_ptr: int) -> None:
        """Overlays of BGR images laid back to back (at `offsets`) with their labels (back to back, of
        `sizes`), written at the images' offsets from `out_ptr`: colours from the 256 x 3 BGR palette."""
        function = self._overlay.function("overlay_bgr")
        label_offset = 0
        for offset, (h, w) in zip(offsets, sizes):
            args: list[KernelArg] = [
                (images_ptr + offset, ctypes.c_void_p), (labels_ptr + label_offset, ctypes.c_void_p),
                (palette_ptr, ctypes.c_void_p), (out_ptr + offset, ctypes.c_void_p), (h, ctypes.c_int), (w, ctypes.c_int),
                (OVERLAY_WEIGHT, ctypes.c_float), (1 - OVERLAY_WEIGHT, ctypes.c_float)]
            function.launch(_grid(w, h), BLOCK, stream, args)
            label_offset += h * w

    def bgr_to_i420_batch(self, stream: Stream, bgr_ptr: int, offsets: Sequence[int], sizes: Sequence[tuple[int, int]],
                          planes_ptr: int, plane_offsets: Sequence[int]) -> None:
        """BGR images of even sides (at `offsets` from `bgr_ptr`) into I420 planes (BT.601, limited range)
        at `plane_offsets` from `planes_ptr`, for a video encoder."""
        function = self._overlay.function("bgr_to_i420")
        for offset, (h, w), plane_offset in zip(offsets, sizes, plane_offsets):
            args: list[KernelArg] = [(bgr_ptr + offset, ctypes.c_void_p), (h, ctypes.c_int), (w, ctypes.c_int),
                                     (planes_ptr + plane_offset, ctypes.c_void_p)]
            function.launch(_grid(w // 2, h // 2), BLOCK, stream, args)

    def nv12_to_bgr(self, stream: Stream, frame: Nv12Frame, out_ptr: int) -> None:
        """A decoded NV12 video frame into packed BGR uint8 at `out_ptr`, with its stream's colour rules."""
        args: list[KernelArg] = [(frame.block.ptr, ctypes.c_void_p), (frame.height, ctypes.c_int),
                                 (frame.width, ctypes.c_int), (out_ptr, ctypes.c_void_p),
                                 *((v, ctypes.c_float) for v in yuv_coefficients(frame.colour))]
        self._nv12.function("nv12_to_bgr").launch(_grid(frame.width, frame.height), BLOCK, stream, args)

    def slide_accumulate(self, stream: Stream, scores_ptr: int, dtype: np.dtype, classes: int, crop_hw: tuple[int, int],
                         crop_yx: tuple[int, int], sums_ptr: int, counts_ptr: int, strip: tuple[int, int],
                         width: int) -> None:
        """One crop's scores (classes x crop_hw, top-left at `crop_yx`) added into a strip's float32 sums and
        counts (image rows strip[0]..strip[1]), as PaddleSeg's slide_inference adds them."""
        function = self._slide.function("accumulate_f16" if np.dtype(dtype) == np.float16 else "accumulate_f32")
        args: list[KernelArg] = [(scores_ptr, ctypes.c_void_p), (classes, ctypes.c_int),
                                 *((v, ctypes.c_int) for v in (*crop_hw, *crop_yx)), (sums_ptr, ctypes.c_void_p),
                                 (counts_ptr, ctypes.c_void_p), (strip[0], ctypes.c_int),
                                 (strip[1] - strip[0], ctypes.c_int), (width, ctypes.c_int)]
        function.launch(_grid(crop_hw[1], crop_hw[0]), BLOCK, stream, args)

    def slide_labels(self, stream: Stream, sums_ptr: int, counts_ptr: int, classes: int, rows: int, width: int,
                     labels_ptr: int) -> None:
        """uint8 labels of a strip's `rows`: argmax over classes of sums / counts."""
        args: list[KernelArg] = [(sums_ptr, ctypes.c_void_p), (counts_ptr, ctypes.c_void_p), (classes, ctypes.c_int),
                                 (rows, ctypes.c_int), (width, ctypes.c_int), (labels_ptr, ctypes.c_void_p)]
        self._slide.function("average_argmax").launch(_grid(width, rows), BLOCK, stream, args)

    def close(self) -> None:
        self._slide.close()
        self._pre.close()
        self._post.close()
        self._overlay.close()
        self._nv12.close()

"""The runtime's pre- and post-processing (and overlay) kernels on host arrays, apart from inference:
for Triton's pre- and post-processing models, whose engine runs in another model (the tensorrt_plan one)."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..cuda import CudaContext, DeviceBuffer, Stream
from ..images import PALETTE_BGR
from ..paddleseg.preprocess import PreprocessSpec
from .buffers import Growable, PinnedPool, StagedImage, device_copy, packed_offsets, split_images, split_labels, upload
from .cuda_kernels import PipelineKernels


class GpuPrePost:
    """PaddleSeg's preprocessing (images → NCHW input) and postprocessing (scores → labels at each
    image's size) with the same kernels as the GPU pipeline; buffers are reused across calls."""

    def __init__(self, device: int = 0) -> None:
        self.context = CudaContext(device)
        self._lock = threading.Lock()
        self.stream = Stream()
        try:
            self.kernels = PipelineKernels(self.context)
        except BaseException:  # released now, not at garbage collection
            self.stream.close()
            self.context.close()
            raise
        self._pool = PinnedPool()
        self._images, self._inputs = Growable(pinned=False), Growable()
        self._scores, self._labels = Growable(), Growable()
        self._blended = Growable()
        self._palette: DeviceBuffer | None = None

    def preprocess(self, images: Sequence[np.ndarray], spec: PreprocessSpec, dtype: np.dtype) -> np.ndarray:
        """The model input (N x 3 x H x W of `dtype`) for BGR uint8 images of any sizes, as `spec` says (a
        dynamic-shape model's images share one size: theirs)."""
        height, width = spec.input_hw(images[0].shape[0], images[0].shape[1])
        with self._lock:
            self.context.make_current()
            source, offsets, _staged = self._upload_images(images)
            nbytes = len(images) * 3 * height * width * np.dtype(dtype).itemsize
            target = self._inputs.ensure(nbytes)
            self.kernels.preprocess_batch(self.stream, spec, source.ptr, offsets,
                                          [(image.shape[0], image.shape[1]) for image in images], target.ptr, dtype)
            self.stream.copy_to_host(self._inputs.pinned_host(), target, nbytes)
            self.stream.synchronize()
            return self._inputs.pinned_host().view(dtype, (len(images), 3, height, width)).copy()

    def postprocess(self, scores: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """uint8 label maps at `sizes` from a batch of model outputs (N x classes x h x w, or int32 labels)."""
        PipelineKernels.check_output_dtype(scores.dtype)
        with self._lock:
            self.context.make_current()
            device = self._scores.upload(scores, self.stream)
            labels = self._labels.ensure(sum(h * w for h, w in sizes))
            total = self.kernels.postprocess_batch(self.stream, device.ptr, scores.dtype, scores.shape[1:], sizes,
                                                   labels.ptr)
            self.stream.copy_to_host(self._labels.pinned_host(), labels, total)
            self.stream.synchronize()
            return split_labels(self._labels.pinned_host(), sizes)

    def overlay(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The label colours blended over BGR uint8 images, as `infer --overlay` blends them on the GPU."""
        sizes = [(label.shape[0], label.shape[1]) for label in labels]
        with self._lock:
            self.context.make_current()
            if self._palette is None:
                self._palette = device_copy(PALETTE_BGR, self.stream)
            source, offsets, _staged = self._upload_images(images)
            label_maps = self._labels.upload(
                np.concatenate([np.ascontiguousarray(label, np.uint8).reshape(-1) for label in labels]), self.stream)
            nbytes = sum(image.nbytes for image in images)  # each overlay is its image's size
            blended = self._blended.ensure(nbytes)
            self.kernels.overlay_batch(self.stream, source.ptr, offsets, label_maps.ptr, sizes, self._palette.ptr,
                                       blended.ptr)
            self.stream.copy_to_host(self._blended.pinned_host(), blended, nbytes)
            self.stream.synchronize()
            return split_images(self._blended.pinned_host(), offsets, sizes)

    def _upload_images(self, images: Sequence[np.ndarray]) -> tuple[DeviceBuffer, list[int], list[StagedImage]]:
        """The images staged and queued into `_images` back to back: the device buffer, their offsets, and
        the staged images, which the caller holds until the copies are done (their blocks go back then)."""
        staged = [StagedImage(image, self._pool) for image in images]
        source = self._images.ensure(sum(image.nbytes for image in staged))
        offsets = packed_offsets([image.nbytes for image in staged])
        upload(list(zip(staged, offsets)), source, self.stream)
        return source, offsets, staged

    def close(self) -> None:
        with self._lock:
            if self.context.closed:
                return
            self.context.make_current()
            for growable in (self._images, self._inputs, self._scores, self._labels, self._blended):
                growable.close()
            if self._palette is not None:
                self._palette.close()
            self._pool.close()
            self.kernels.close()
            self.stream.close()
            self.context.close()

    def __enter__(self) -> GpuPrePost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The runtime's pre- and post-processing (and overlay) kernels apart from inference, for Triton's pre-
and post-processing models, whose engine runs in another model (the tensorrt_plan one): on host arrays,
or on the device (JPEG bytes decoded by the GPU's hardware decoder into a device tensor handed on by
DLPack; scores taken from the device), so a batch never leaves the GPU between the models."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..cuda import CudaContext, DeviceBuffer, Stream
from ..gpu_jpeg import GpuJpegDecoder, gpu_jpeg_decoder
from ..images import PALETTE_BGR, EncodedImage
from ..paddleseg.preprocess import PreprocessSpec
from .buffers import Growable, PinnedPool, StagedImage, device_copy, packed_offsets, split_images, split_labels, upload
from .cuda_kernels import PipelineKernels
from .device_jpegs import decode_jpegs_into
from .dlpack import BorrowedTensor, DeviceTensor


class GpuPrePost:
    """PaddleSeg's preprocessing (images → NCHW input) and postprocessing (scores → labels at each
    image's size) with the same kernels as the GPU pipeline; buffers are reused across calls.
    `decode_jpegs`: JPEG bytes given as `EncodedImage`s are decoded by the GPU's hardware JPEG decoder
    where it has one (`jpeg_decoder_note` says which decoder runs)."""

    def __init__(self, device: int = 0, decode_jpegs: bool = False) -> None:
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
        self.jpeg_decoder: GpuJpegDecoder | None = None
        self.jpeg_decoder_note = "JPEGs decoded on the CPU"
        if decode_jpegs:
            self.jpeg_decoder, self.jpeg_decoder_note = gpu_jpeg_decoder(device)

    def preprocess(self, images: Sequence[np.ndarray | EncodedImage], spec: PreprocessSpec, dtype: np.dtype) -> np.ndarray:
        """The model input (N x 3 x H x W of `dtype`) for BGR uint8 images of any sizes (or JPEGs, see the
        class), as `spec` says (a dynamic-shape model's images share one size: theirs)."""
        shape = self._input_shape(images, spec)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        with self._lock:
            self.context.make_current()
            target = self._inputs.ensure(nbytes)
            keep = self._preprocess_into(images, spec, dtype, target)
            self.stream.copy_to_host(self._inputs.pinned_host(), target, nbytes)
            self.stream.synchronize()
            del keep  # the stream is past what it read
            return self._inputs.pinned_host().view(dtype, shape).copy()

    def preprocess_on_device(self, images: Sequence[np.ndarray | EncodedImage], spec: PreprocessSpec,
                             dtype: np.dtype) -> DeviceTensor:
        """As `preprocess`, left in a device tensor of its own, finished (for DLPack consumers, who free
        it); the first image that fails to decode raises its error."""
        shape = self._input_shape(images, spec)
        with self._lock:
            self.context.make_current()
            target = DeviceBuffer(int(np.prod(shape)) * np.dtype(dtype).itemsize)
            try:
                keep = self._preprocess_into(images, spec, dtype, target)
                self.stream.synchronize()
                del keep  # the stream is past what it read
            except BaseException:
                target.close()
                raise
            return DeviceTensor(target, self.context, shape, np.dtype(dtype))

    @staticmethod
    def _input_shape(images: Sequence[np.ndarray | EncodedImage], spec: PreprocessSpec) -> tuple[int, int, int, int]:
        height, width = spec.input_hw(images[0].shape[0], images[0].shape[1])
        return len(images), 3, height, width

    def _preprocess_into(self, images: Sequence[np.ndarray | EncodedImage], spec: PreprocessSpec, dtype: np.dtype,
                         target: DeviceBuffer) -> list[object]:
        """The images staged and preprocessed into `target`, queued on the stream; what the queued work
        reads from, which the caller holds until the stream is past it."""
        source, offsets, keep = self._stage_images(images)
        self.kernels.preprocess_batch(self.stream, spec, source.ptr, offsets,
                                      [(image.shape[0], image.shape[1]) for image in images], target.ptr, dtype)
        return keep

    def postprocess(self, scores: np.ndarray | BorrowedTensor, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """uint8 label maps at `sizes` from a batch of model outputs (N x classes x h x w, or int32 labels),
        in host memory or on this device."""
        PipelineKernels.check_output_dtype(scores.dtype)
        with self._lock:
            self.context.make_current()
            scores_ptr = scores.ptr if isinstance(scores, BorrowedTensor) else self._scores.upload(scores, self.stream).ptr
            labels = self._labels.ensure(sum(h * w for h, w in sizes))
            total = self.kernels.postprocess_batch(self.stream, scores_ptr, scores.dtype, scores.shape[1:], sizes,
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
            source, offsets, _keep = self._stage_images(images)
            label_maps = self._labels.upload(
                np.concatenate([np.ascontiguousarray(label, np.uint8).reshape(-1) for label in labels]), self.stream)
            nbytes = sum(image.nbytes for image in images)  # each overlay is its image's size
            blended = self._blended.ensure(nbytes)
            self.kernels.overlay_batch(self.stream, source.ptr, offsets, label_maps.ptr, sizes, self._palette.ptr,
                                       blended.ptr)
            self.stream.copy_to_host(self._blended.pinned_host(), blended, nbytes)
            self.stream.synchronize()
            return split_images(self._blended.pinned_host(), offsets, sizes)

    def _stage_images(self, images: Sequence[np.ndarray | EncodedImage]) -> tuple[DeviceBuffer, list[int], list[object]]:
        """The images queued into `_images` back to back (arrays through pinned blocks, JPEGs through the
        hardware decoder): the device buffer, their offsets, and what the queued work reads from, which the
        caller holds until the stream is past it. The first JPEG that fails to decode raises its error."""
        sizes = [image.shape[0] * image.shape[1] * 3 for image in images]
        source = self._images.ensure(sum(sizes))
        offsets = packed_offsets(sizes)
        staged = [(StagedImage(image, self._pool), offset) for image, offset in zip(images, offsets)
                  if isinstance(image, np.ndarray)]
        upload(staged, source, self.stream)
        jpegs = [(k, image) for k, image in enumerate(images) if isinstance(image, EncodedImage)]
        keep: list[object] = [image for image, _ in staged]
        if jpegs:
            assert self.jpeg_decoder is not None, "JPEG bytes are given only where the hardware decoder runs"
            decoded, failed = decode_jpegs_into(self.jpeg_decoder, self.stream, self._pool, jpegs, offsets, source)
            keep += decoded
            if failed:
                self.stream.synchronize()
                raise failed[min(failed)]
        return source, offsets, keep

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

"""The GPU path: uint8 images in pinned memory → one async copy → preprocessing kernel → executor →
postprocessing kernel → uint8 label maps back, all on one stream with one synchronize per batch.

Buffers are allocated once for the largest batch seen and grown only when a batch needs more; the
kernels are compiled once per GPU architecture (NVRTC, cached on disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
import ctypes
from typing import Sequence

import numpy as np

from ..backends.base import DeviceExecutor
from ..cuda import CudaContext, CudaGraph, DeviceBuffer, Event, KernelArg, KernelModule, PinnedBuffer, Stream
from ..errors import ConfigError
from ..fileio import cache_root
from ..paddleseg.preprocess import PreprocessSpec, cv2_linear_scale

BLOCK = (32, 8, 1)


def kernel_source(name: str) -> str:
    return resources.files("deploy_kit.runtime").joinpath("kernels", name).read_text()


def _grid(width: int, height: int) -> tuple[int, int, int]:
    return (-(-width // BLOCK[0]), -(-height // BLOCK[1]), 1)


@dataclass
class StageTimes:
    """Milliseconds on the GPU of the last batch, read from events."""

    upload: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    download: float = 0.0


class _Growable:
    """A device buffer and its pinned twin, reallocated only when a batch needs more bytes."""

    def __init__(self) -> None:
        self.device: DeviceBuffer | None = None
        self.host: PinnedBuffer | None = None

    def ensure(self, nbytes: int) -> tuple[DeviceBuffer, PinnedBuffer]:
        if self.device is None or self.host is None or self.device.nbytes < nbytes:
            self.close()
            self.device, self.host = DeviceBuffer(nbytes), PinnedBuffer(nbytes)
        return self.device, self.host

    def close(self) -> None:
        for buffer in (self.device, self.host):
            if buffer is not None:
                buffer.close()
        self.device = self.host = None


class GpuPipeline:
    """Pre-processing, inference and post-processing of image batches on one CUDA stream."""

    def __init__(self, executor: DeviceExecutor, spec: PreprocessSpec, context: CudaContext, stream: Stream,
                 max_batch: int, cuda_graph: bool = False) -> None:
        if cuda_graph and not (executor.capturable or executor.captures_itself):
            raise ConfigError(f"the {executor.name} executor cannot be captured into a CUDA graph",
                              hint="drop --cuda-graph, or use the TensorRT backend")
        self.executor, self.spec, self.context, self.stream = executor, spec, context, stream
        self.cuda_graph = cuda_graph and not executor.captures_itself  # ours would wrap the executor's own
        self._graphs: dict[int, CudaGraph] = {}
        self.max_batch = max_batch
        cache = cache_root() / "kernels"
        headers = (("half.cuh", kernel_source("half.cuh")),)
        self._pre = KernelModule(kernel_source("preprocess.cu"), context.compute_capability, cache, headers)
        self._post = KernelModule(kernel_source("postprocess.cu"), context.compute_capability, cache, headers)
        in_dtype, out_dtype = executor.input.dtype, executor.output.dtype
        self._pre_kernel = self._pre.function("preprocess_f16" if in_dtype == np.float16 else "preprocess_f32")
        self._post_kernel = self._post.function({np.dtype(np.float16): "argmax_resize_f16",
                                                 np.dtype(np.int32): "labels_resize_i32"}.get(out_dtype, "argmax_resize_f32"))
        self.input_image_bytes = 3 * spec.height * spec.width * in_dtype.itemsize
        out_shape = executor.output_shape(1)
        self.output_image_bytes = int(np.prod(out_shape[1:])) * out_dtype.itemsize
        self.out_hw = (int(out_shape[-2]), int(out_shape[-1]))
        self.classes = int(out_shape[1]) if len(out_shape) == 4 else 1
        self.model_input = DeviceBuffer(max_batch * self.input_image_bytes)
        self.model_output = DeviceBuffer(max_batch * self.output_image_bytes)
        self._images = _Growable()
        self._labels = _Growable()
        self._events = [Event() for _ in range(6)]
        self.times = StageTimes()

    def run(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 label maps at each image's size for a batch of uint8 BGR HxWx3 images."""
        if not 0 < len(images) <= self.max_batch:
            raise ValueError(f"batch of {len(images)} images; this pipeline takes 1..{self.max_batch}")
        self.enqueue(images)
        self.stream.synchronize()
        return self.collect(images)

    def enqueue(self, images: Sequence[np.ndarray]) -> None:
        """Queues the whole batch on the stream; `collect` after a synchronize returns the labels."""
        self.context.make_current()  # the caller may be any thread: a server worker, a pipeline stage
        e = self._events
        e[0].record(self.stream)
        src_dev, src_offsets = self._upload(images)
        e[1].record(self.stream)
        self._queue_preprocess(images, src_dev, src_offsets)
        e[2].record(self.stream)
        self.infer(len(images))
        e[3].record(self.stream)
        lab_dev, lab_host, total = self._queue_postprocess([(im.shape[0], im.shape[1]) for im in images])
        e[4].record(self.stream)
        self.stream.copy_to_host(lab_host, lab_dev, total)
        e[5].record(self.stream)

    def infer(self, batch: int) -> None:
        """Queues inference on the model buffers: a CUDA graph replay when enabled (captured once per batch)."""
        if not self.cuda_graph:
            self.executor.enqueue(self.model_input.ptr, self.model_output.ptr, batch, self.stream)
            return
        self.context.make_current()
        if batch not in self._graphs:
            # One plain enqueue first: TensorRT allocates and sets shapes lazily, which capture cannot hold.
            self.executor.enqueue(self.model_input.ptr, self.model_output.ptr, batch, self.stream)
            self.stream.synchronize()
            self._graphs[batch] = CudaGraph(self.stream, lambda: self.executor.enqueue(
                self.model_input.ptr, self.model_output.ptr, batch, self.stream))
        self._graphs[batch].launch(self.stream)

    def collect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        e = self._events
        self.times = StageTimes(e[1].elapsed_ms(e[0]), e[2].elapsed_ms(e[1]), e[3].elapsed_ms(e[2]),
                                e[4].elapsed_ms(e[3]), e[5].elapsed_ms(e[4]))
        return self._split_labels([(im.shape[0], im.shape[1]) for im in images])

    def preprocess_only(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The model input the kernel makes for `images` (NCHW, the executor's dtype): for tests and benchmarks."""
        self.context.make_current()
        self._queue_preprocess(images, *self._upload(images))
        nbytes = len(images) * self.input_image_bytes
        with PinnedBuffer(nbytes) as host:
            self.stream.copy_to_host(host, self.model_input, nbytes)
            self.stream.synchronize()
            return host.view(self.executor.input.dtype, (len(images), 3, self.spec.height, self.spec.width)).copy()

    def postprocess_only(self, outputs: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Label maps the kernel makes from host model outputs (N x ...): for tests and benchmarks."""
        self.context.make_current()
        outputs = np.ascontiguousarray(outputs, dtype=self.executor.output.dtype)
        with PinnedBuffer(outputs.nbytes) as staging:
            staging.view(np.uint8, (outputs.nbytes,))[:] = outputs.view(np.uint8).reshape(-1)
            self.stream.copy_to_device(self.model_output, staging, outputs.nbytes)
            lab_dev, lab_host, total = self._queue_postprocess(sizes)
            self.stream.copy_to_host(lab_host, lab_dev, total)
            self.stream.synchronize()
        return self._split_labels(sizes)

    def _upload(self, images: Sequence[np.ndarray]) -> tuple[DeviceBuffer, np.ndarray]:
        offsets = np.cumsum([0] + [im.nbytes for im in images])
        src_dev, src_host = self._images.ensure(int(offsets[-1]))
        raw = src_host.view(np.uint8, (int(offsets[-1]),))
        for image, offset in zip(images, offsets):
            raw[offset:offset + image.nbytes] = np.ascontiguousarray(image).reshape(-1)
        self.stream.copy_to_device(src_dev, src_host, int(offsets[-1]))
        return src_dev, offsets

    def _queue_preprocess(self, images: Sequence[np.ndarray], src_dev: DeviceBuffer, offsets: np.ndarray) -> None:
        for index, (image, offset) in enumerate(zip(images, offsets)):
            self._launch_preprocess(src_dev.ptr + int(offset), image.shape[0], image.shape[1],
                                    self.model_input.ptr + index * self.input_image_bytes)

    def _queue_postprocess(self, sizes: Sequence[tuple[int, int]]) -> tuple[DeviceBuffer, PinnedBuffer, int]:
        offsets = np.cumsum([0] + [h * w for h, w in sizes])
        lab_dev, lab_host = self._labels.ensure(int(offsets[-1]))
        for index, ((h, w), offset) in enumerate(zip(sizes, offsets)):
            self._launch_postprocess(self.model_output.ptr + index * self.output_image_bytes,
                                     lab_dev.ptr + int(offset), h, w)
        return lab_dev, lab_host, int(offsets[-1])

    def _split_labels(self, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        assert self._labels.host is not None
        total = sum(h * w for h, w in sizes)
        flat = self._labels.host.view(np.uint8, (total,))
        out, offset = [], 0
        for h, w in sizes:
            out.append(flat[offset:offset + h * w].reshape(h, w).copy())
            offset += h * w
        return out

    def _launch_preprocess(self, src_ptr: int, src_h: int, src_w: int, dst_ptr: int) -> None:
        s = self.spec
        args: list[KernelArg] = [(src_ptr, ctypes.c_void_p), (src_h, ctypes.c_int), (src_w, ctypes.c_int), (src_w * 3, ctypes.c_int),
                (dst_ptr, ctypes.c_void_p), (s.height, ctypes.c_int), (s.width, ctypes.c_int),
                (cv2_linear_scale(src_h, s.height), ctypes.c_double), (cv2_linear_scale(src_w, s.width), ctypes.c_double),
                *((v, ctypes.c_float) for v in s.mean), *((v, ctypes.c_float) for v in s.std),
                (int(s.to_rgb), ctypes.c_int)]
        self._pre_kernel.launch(_grid(s.width, s.height), BLOCK, self.stream, args)

    def _launch_postprocess(self, scores_ptr: int, labels_ptr: int, out_h: int, out_w: int) -> None:
        in_h, in_w = self.out_hw
        ratio_y = float(np.float32(in_h) / np.float32(out_h))
        ratio_x = float(np.float32(in_w) / np.float32(out_w))
        args: list[KernelArg] = [(scores_ptr, ctypes.c_void_p)]
        if self._post_kernel.name != "labels_resize_i32":
            args.append((self.classes, ctypes.c_int))
        args += [(in_h, ctypes.c_int), (in_w, ctypes.c_int), (labels_ptr, ctypes.c_void_p), (out_h, ctypes.c_int),
                 (out_w, ctypes.c_int), (ratio_y, ctypes.c_float), (ratio_x, ctypes.c_float)]
        self._post_kernel.launch(_grid(out_w, out_h), BLOCK, self.stream, args)

    def close(self) -> None:
        self.context.make_current()
        for owned in (*self._graphs.values(), *self._events, self.model_input, self.model_output, self._pre, self._post):
            owned.close()
        self._images.close()
        self._labels.close()

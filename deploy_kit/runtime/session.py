"""Runtime sessions: what a `Segmenter` holds once a backend is open. Each runs one batch of BGR uint8
images to uint8 label maps at the images' sizes and owns everything it opened.

`GpuSession` owns a CUDA context, a stream, the device executor and the GPU pipeline, released in that
reverse order; the pipeline makes its context current on the calling thread and queues one batch at a
time, so any thread may use it, and holds several batches in flight. `HostSession` runs PaddleSeg's CPU arithmetic around a host executor.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..backends.base import DeviceExecutor, HostExecutor
from ..cuda import CudaContext, Stream
from ..images import EncodedImage, decode_image
from ..paddleseg.postprocess import postprocess_cpu
from ..paddleseg.preprocess import PreprocessSpec, preprocess_cpu
from ..paddleseg.slide import SlideWindow, check_crop_fits, slide_cpu
from .buffers import Nv12Frame
from .gpu_pipeline import GpuPipeline, Staged
from .stream import BatchOutputs, same_size_runs


# What a session takes: BGR pixels, JPEG bytes for the GPU's JPEG decoder, or a frame NVDEC decoded.
Decoded = np.ndarray | EncodedImage | Nv12Frame
Pending = Callable[[], BatchOutputs]  # waits for a submitted batch and gives its label maps (and overlays)


class Session(Protocol):
    max_batch: int
    in_flight: int  # batches that may be submitted before the oldest is collected
    makes_overlays: bool  # whether `submit(..., overlay=True)` gives overlays

    def prepare(self, image: Decoded) -> Any:
        """Per-image work that may run on any thread ahead of `submit` (CPU preprocessing, pinned staging)."""

    def submit(self, images: Sequence[Decoded], prepared: Sequence[Any] | None = None,
               overlay: bool = False) -> Pending:
        """Starts at most `max_batch` images (`prepared`: what `prepare` gave for each); the returned
        callable waits for their label maps, and their overlays when asked and `makes_overlays`."""

    def run(self, images: Sequence[Decoded], prepared: Sequence[Any] | None = None) -> list[np.ndarray]:
        """Label maps for at most `max_batch` images: `submit` and wait."""

    def close(self) -> None:
        """Releases everything the session opened (idempotent)."""


def check_input(image: Decoded, spec: PreprocessSpec, window: SlideWindow | None,
                model_hw: tuple[int, int] | None) -> None:
    """Refuses, before any work, an image the model cannot take: outside a dynamic model's profile, or
    smaller than a fixed-size model's crop when sliding."""
    if window is not None:
        check_crop_fits(image.shape[0], image.shape[1], window, model_hw)
    elif spec.dynamic_hw:
        spec.check_size(image.shape[0], image.shape[1])


class HostSession:
    in_flight = 1  # ONNX Runtime on the CPU already uses every core for one batch
    makes_overlays = False  # the caller blends them where the images are

    def __init__(self, executor: HostExecutor, spec: PreprocessSpec, max_batch: int,
                 window: SlideWindow | None = None) -> None:
        self.executor, self.spec, self.max_batch, self.window = executor, spec, max_batch, window

    def prepare(self, image: Decoded) -> np.ndarray:
        if isinstance(image, Nv12Frame):
            raise ValueError("a frame NVDEC decoded into GPU memory needs a GPU session")
        if isinstance(image, EncodedImage):
            image = decode_image(image, image.source)
        check_input(image, self.spec, self.window, self.executor.input.fixed_hw)
        return preprocess_cpu(image, self.spec)

    def submit(self, images: Sequence[Decoded], prepared: Sequence[Any] | None = None,
               overlay: bool = False) -> Pending:
        outputs = BatchOutputs(self.run(images, prepared))
        return lambda: outputs

    def run(self, images: Sequence[Decoded], prepared: Sequence[Any] | None = None) -> list[np.ndarray]:
        inputs = list(prepared) if prepared is not None else [self.prepare(image) for image in images]
        if self.window is not None:
            classes = self.executor.output.shape[1]
            return [slide_cpu(tensor, self.window, classes, self.executor.run, self.max_batch) for tensor in inputs]
        labels: list[np.ndarray] = []
        for run in same_size_runs([(tensor.shape[1], tensor.shape[2]) for tensor in inputs]):  # one size a batch
            outputs = self.executor.run(np.stack([inputs[i] for i in run]))
            labels += [postprocess_cpu(output, (images[i].shape[0], images[i].shape[1]))
                       for output, i in zip(outputs, run)]
        return labels

    def close(self) -> None:
        self.executor.close()


class GpuSession:
    makes_overlays = True

    def __init__(self, open_executor: Callable[[Stream], DeviceExecutor], spec: PreprocessSpec, device: int,
                 max_batch: int, cuda_graph: bool = False, in_flight: int = 3,
                 window: SlideWindow | None = None) -> None:
        self.max_batch, self.in_flight = max_batch, in_flight
        self._lock = threading.Lock()
        self.context = CudaContext(device)
        self.stream: Stream | None = None
        self.executor: DeviceExecutor | None = None
        self.pipeline: GpuPipeline | None = None
        try:
            self.stream = Stream()
            self.executor = open_executor(self.stream)
            self.pipeline = GpuPipeline(self.executor, spec, self.context, self.stream, max_batch, cuda_graph,
                                        in_flight, window)
        except BaseException:
            self.close()  # what was opened before the failure is released now, not at garbage collection
            raise

    def start_jpeg_decoder(self) -> str:
        """The GPU's hardware JPEG decoder started for batches of `EncodedImage`s (see GpuPipeline)."""
        return self._open_pipeline().start_jpeg_decoder()

    def prepare(self, image: Decoded) -> Staged:
        """The image checked and copied into pinned memory, so the batch's upload is one asynchronous
        copy (JPEG bytes for the GPU's decoder stay as they are)."""
        pipeline = self._open_pipeline()
        check_input(image, pipeline.spec, pipeline.window, pipeline.executor.input.fixed_hw)
        return pipeline.stage(image)

    def submit(self, images: Sequence[Decoded], prepared: Sequence[Any] | None = None,
               overlay: bool = False) -> Pending:
        pipeline = self._open_pipeline()
        staged = list(prepared) if prepared is not None else [self.prepare(image) for image in images]
        slot = pipeline.submit(staged, overlay)
        return lambda: pipeline.result(slot)

    def run(self, images: Sequence[Decoded], prepared: Sequence[Any] | None = None) -> list[np.ndarray]:
        staged = list(prepared) if prepared is not None else [self.prepare(image) for image in images]
        pipeline = self._open_pipeline()
        labels: list[np.ndarray] = []
        for run in pipeline.batches([(s.height, s.width) for s in staged]):
            outputs = self.submit([images[i] for i in run], [staged[i] for i in run])()
            if outputs.failed:  # a JPEG no decoder takes: `stream` reports it alone, here it stops the call
                raise next(iter(outputs.failed.values()))
            labels += outputs.labels
        return labels

    def _open_pipeline(self) -> GpuPipeline:
        with self._lock:
            if self.pipeline is None:
                raise RuntimeError("the GPU session is closed")
            return self.pipeline

    def close(self) -> None:
        with self._lock:
            if self.context.closed:
                return
            self.context.make_current()
            for owned in (self.pipeline, self.executor, self.stream):
                if owned is not None:
                    owned.close()
            self.pipeline = self.executor = self.stream = None
            self.context.close()

"""The GPU path: uint8 images staged in pinned memory → async copies on a copy stream (or JPEG bytes →
the GPU's hardware JPEG decoder) → preprocessing kernel → executor → postprocessing kernel → uint8 label
maps back, with several batches in flight so one batch's upload overlaps the previous batch's compute;
one synchronize per batch, when it is collected.

Buffers are allocated once for the largest batch seen and grown only when a batch needs more; the
kernels are compiled once per GPU architecture (NVRTC, cached on disk).
"""

from __future__ import annotations

import functools
import queue
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backends.base import DeviceExecutor
from ..cuda import CudaContext, CudaGraph, DeviceBuffer, Event, Stream
from ..errors import ConfigError, DeployKitError
from ..images import PALETTE_BGR, EncodedImage
from ..paddleseg.preprocess import PreprocessSpec
from ..paddleseg.slide import SlideWindow, boxes_in_strip, chunks, crop_boxes, strips
from .buffers import Growable, Nv12Frame, PinnedPool, StagedImage, device_copy, packed_offsets, split_images, split_labels, upload
from .cuda_kernels import PipelineKernels
from .device_jpegs import decode_jpegs_into
from ..gpu_jpeg import GpuJpegDecoder, gpu_jpeg_decoder, gpu_jpeg_encoder
from .overlay_jpegs import JpegOverlays
from .stream import BatchOutputs, Overlay, same_size_runs


@dataclass
class StageTimes:
    """Milliseconds on the GPU of the last batch collected, read from events."""

    upload: float = 0.0
    decode: float = 0.0  # JPEGs on the hardware decoder
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    download: float = 0.0


# An image in pinned memory, a JPEG for the hardware JPEG decoder, or a video frame the GPU's video
# decoder left in device memory.
Staged = StagedImage | EncodedImage | Nv12Frame
# A slot's events: 0-1 upload (copy stream), 2 preprocess, 3 inference, 4 postprocess, 5 download start;
# DONE is recorded whatever else is, and `result` waits for it; DECODE marks the hardware decoder's start.
DONE, DECODE = 6, 7


class _Slot:
    """One batch in flight: its uploaded images, its labels (and overlays) on both sides and its events."""

    def __init__(self) -> None:
        self.images = Growable(pinned=False)
        self.labels = Growable()
        self.overlays = Growable()
        self.planes = Growable()  # the overlays as I420, for a video encoder
        self.jpeg_overlays: DeviceBuffer | None = None  # the overlays to JPEG-encode, in a buffer of their own
        self.events = [Event() for _ in range(8)]
        self.staged: list[Staged] = []  # the batch's images that are segmented (failed ones left out)
        self.offsets: list[int] = []  # of the staged images in `images` (and of their overlays)
        self.failed: dict[int, DeployKitError] = {}  # by index in the batch submitted
        self.keep: list[Any] = []  # what the queued copies read from: decoded images, pinned fallbacks
        self.overlay = False
        self.i420 = False  # the overlays come back as I420 planes
        self.queued: futures.Future[None] | None = None  # the batch's work being queued on the GPU

    def times(self) -> StageTimes:
        e = self.events
        return StageTimes(e[1].elapsed_ms(e[0]), e[2].elapsed_ms(e[DECODE]), e[3].elapsed_ms(e[2]),
                          e[4].elapsed_ms(e[3]), e[5].elapsed_ms(e[4]), e[DONE].elapsed_ms(e[5]))

    def split_labels(self) -> list[np.ndarray]:
        return split_labels(self.labels.pinned_host(), [(s.height, s.width) for s in self.staged])

    def release(self) -> None:
        """Forgets the collected batch: its pinned blocks and decoded images go back."""
        self.staged, self.keep, self.failed = [], [], {}

    def close(self) -> None:
        for event in self.events:
            event.close()
        for growable in (self.images, self.labels, self.overlays, self.planes):
            growable.close()
        self.release()


class GpuPipeline:
    """Pre-processing, inference and post-processing of image batches, with several batches in flight:
    each batch's images go up on a copy stream while the previous batch computes on the compute stream.

    `stage` copies an image into pinned memory (on any thread: the decode threads call it), `submit`
    hands a batch to the pipeline's queuing thread on a free slot and returns at once, `result` waits for
    that batch's labels. With `jpeg_decoder` set, a batch may hold JPEG bytes (`EncodedImage`) instead:
    the hardware decoder decodes them (starting on the copy stream), and one it refuses is decoded on
    the CPU (or fails alone). Asked for overlays, a kernel blends the label colours over the uploaded
    images; `overlay_format` says what comes back: "jpeg" (nvImageCodec's JPEGs, encoded on the GPU where
    it is installed, as Futures of their bytes: a thread of its own encodes them while the next batches
    run; else BGR pixels), "bgr", or "i420" (planes of h*3/2 x w for a video encoder, converted on the
    GPU: half the bytes and no CPU conversion; BGR for a batch with an odd-sized image)."""

    def __init__(self, executor: DeviceExecutor, spec: PreprocessSpec, context: CudaContext, stream: Stream,
                 max_batch: int, cuda_graph: bool = False, in_flight: int = 3,
                 window: SlideWindow | None = None) -> None:
        if cuda_graph and not (executor.capturable or executor.captures_itself):
            raise ConfigError(f"the {executor.name} executor cannot be captured into a CUDA graph",
                              hint="drop --cuda-graph, or use the TensorRT backend")
        self.executor, self.spec, self.context, self.stream = executor, spec, context, stream
        self.window = window
        self.cuda_graph = cuda_graph and not executor.captures_itself  # ours would wrap the executor's own
        self._graphs: dict[tuple[int, ...], CudaGraph] = {}
        self.max_batch = max_batch
        self.kernels = PipelineKernels(context)
        # The model's input and output, grown to the largest batch (and, dynamic models, size) seen.
        self.model_input, self.model_output = Growable(pinned=False), Growable(pinned=False)
        self._sums, self._counts = Growable(pinned=False), Growable(pinned=False)  # sliding-window strips
        if executor.input.fixed_hw is not None and window is None:
            self.model_buffers(self.input_shape(max_batch, spec.height, spec.width))
        self.copy_stream = Stream()
        self.pool = PinnedPool()
        self.in_flight = max(1, in_flight)
        self._slots = [_Slot() for _ in range(self.in_flight)]
        self._free: queue.Queue[_Slot] = queue.Queue()
        for slot in self._slots:
            self._free.put(slot)
        # Every batch is queued from one thread of the pipeline's own, whichever thread submits it: ONNX
        # Runtime keeps a session's CUDA graph per calling thread and captures it in CUDA's global mode,
        # so callers on many threads (a server's) would each capture again under load, where another
        # thread's CUDA call breaks the capture. One thread also queues one batch at a time.
        self._enqueuer = ThreadPoolExecutor(1, thread_name_prefix="deploy-kit-enqueue")
        self.palette = device_copy(PALETTE_BGR, stream)
        self.timing = False  # record every stage's events, for `times` (the benchmark's breakdown)
        self.times = StageTimes()
        self.jpeg_decoder: GpuJpegDecoder | None = None
        self.overlay_format = "jpeg"

    def start_jpeg_decoder(self) -> str:
        """Starts the GPU's hardware JPEG decoder for batches of `EncodedImage`s; what it is, or a
        ConfigError saying why there is none."""
        self.context.make_current()
        decoder, what = gpu_jpeg_decoder(self.context.index)
        if decoder is None:
            raise ConfigError(f"no JPEG decoding on the GPU: {what}", hint="use --decoder cpu (or auto)")
        self.jpeg_decoder = decoder
        return what

    @property
    def output_image_shape(self) -> tuple[int, ...]:
        """One image's model output at the model's (optimum) input size."""
        return self.executor.output_shape(self.input_shape(1, self.spec.height, self.spec.width))[1:]

    def input_shape(self, batch: int, height: int, width: int) -> tuple[int, ...]:
        """The NCHW model input of a batch of images of this size (or crops, when sliding)."""
        return (batch, 3, *self.spec.input_hw(height, width))

    def batches(self, sizes: Sequence[tuple[int, int]]) -> list[range]:
        """How images of these sizes split into batches: one input size per batch of a dynamic model."""
        if self.window is None and self.spec.dynamic_hw:
            return same_size_runs(sizes)
        return [range(len(sizes))]

    def model_buffers(self, shape: tuple[int, ...]) -> tuple[DeviceBuffer, DeviceBuffer]:
        """The model's input and output buffers, large enough for an input of `shape`; a buffer that grows
        drops the CUDA graphs that captured the old one (ours and the executor's)."""
        need_in = int(np.prod(shape)) * self.executor.input.dtype.itemsize
        need_out = int(np.prod(self.executor.output_shape(shape))) * self.executor.output.dtype.itemsize
        before = (self.model_input.device, self.model_output.device)
        buffers = self._grown(self.model_input, need_in), self._grown(self.model_output, need_out)
        if buffers != before and before != (None, None):
            for graph in self._graphs.values():
                graph.close()
            self._graphs.clear()
            self.executor.buffers_moved()
        return buffers

    def _grown(self, growable: Growable, nbytes: int) -> DeviceBuffer:
        """`growable`'s device buffer of at least `nbytes`; when it has to grow, the work queued on the
        old one finishes first (it is freed)."""
        if growable.device is not None and growable.device.nbytes < nbytes:
            self.stream.synchronize()
        return growable.ensure(nbytes)

    @functools.cached_property
    def jpeg(self) -> JpegOverlays | None:
        """nvImageCodec's JPEG encoding of overlays, started with the first overlay (None when it is not
        installed)."""
        encoder = gpu_jpeg_encoder(self.context.index)
        return JpegOverlays(encoder, self.context) if encoder is not None else None

    def stage(self, image: np.ndarray | EncodedImage | Nv12Frame) -> Staged:
        """A decoded image copied into pinned memory; JPEG bytes stay as they are, for the GPU's decoder,
        and a video frame already on the GPU stays there."""
        if isinstance(image, Nv12Frame):
            return image
        if isinstance(image, EncodedImage):
            if self.jpeg_decoder is None:
                raise ValueError("JPEG bytes given to a pipeline without a JPEG decoder (start_jpeg_decoder)")
            return image
        self.context.make_current()  # pinned memory belongs to the context; the caller may be any thread
        return StagedImage(image, self.pool)

    def run(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 label maps at each image's size for a batch of uint8 BGR HxWx3 images."""
        return self.result(self.submit([self.stage(image) for image in images])).labels

    def submit(self, staged: Sequence[Staged], overlay: bool = False) -> _Slot:
        """Hands the whole batch (and its overlays) to the thread that queues it on the GPU and returns;
        blocks only while every slot holds a batch not yet collected. The caller goes on meanwhile: the
        hardware JPEG decoder's call returns only once it has decoded (about 1 ms per 1024x2048 JPEG on
        the H200), which, waited for here, bounded `infer` from files at batch 8 to ~530 img/s. What goes
        wrong while queuing is raised by `result`."""
        if not 0 < len(staged) <= self.max_batch:
            raise ValueError(f"batch of {len(staged)} images; this pipeline takes 1..{self.max_batch}")
        slot = self._free.get()
        slot.queued = self._enqueuer.submit(self._enqueue, slot, list(staged), overlay)
        return slot

    def result(self, slot: _Slot) -> BatchOutputs:
        """The labels (and overlays) of a submitted batch, once its work is done; frees its slot and
        pinned blocks."""
        assert slot.queued is not None, "result() of a batch not submitted"
        try:
            slot.queued.result()  # raises what queuing raised
            slot.events[DONE].synchronize()
            if self.timing:
                self.times = slot.times()
            if not slot.staged:
                return BatchOutputs([], [] if slot.overlay else None, dict(slot.failed))
            return BatchOutputs(slot.split_labels(), self._overlays(slot) if slot.overlay else None, dict(slot.failed))
        finally:
            self._recycle(slot)

    def _recycle(self, slot: _Slot) -> None:
        """The slot free for the next batch, once its batch is collected (or failed to start)."""
        if slot.queued is not None:
            futures.wait([slot.queued])  # interrupted while it is queued: it finishes before the slot is reused
            slot.queued = None
        if slot.jpeg_overlays is not None:  # not handed to the encoder: the batch failed
            assert self.jpeg is not None
            self.jpeg.give_back(slot.jpeg_overlays)
            slot.jpeg_overlays = None
        slot.release()
        self._free.put(slot)

    def _overlays(self, slot: _Slot) -> list[Overlay]:
        sizes = [(s.height, s.width) for s in slot.staged]
        if slot.i420:
            return list(split_labels(slot.planes.pinned_host(), [(h * 3 // 2, w) for h, w in sizes]))
        if slot.jpeg_overlays is not None:
            assert self.jpeg is not None
            blended, slot.jpeg_overlays = slot.jpeg_overlays, None
            return list(self.jpeg.encode(blended, slot.offsets, sizes))
        return list(split_images(slot.overlays.pinned_host(), slot.offsets, sizes))

    @property
    def _jpeg_overlays(self) -> bool:
        return self.overlay_format == "jpeg" and self.jpeg is not None

    def _enqueue(self, slot: _Slot, staged: list[Staged], overlay: bool) -> None:
        self.context.make_current()  # the caller may be any thread: a server worker, a pipeline stage
        if len(self.batches([(s.height, s.width) for s in staged])) > 1:
            raise ValueError("a dynamic-shape model's batch holds images of one size (Segmenter.run splits them)")
        slot.overlay = overlay
        e = slot.events
        self._mark(e[0], self.copy_stream)
        extent = sum(s.nbytes for s in staged)
        images = slot.images.ensure(extent)
        offsets = packed_offsets([s.nbytes for s in staged])
        upload([(s, o) for s, o in zip(staged, offsets) if isinstance(s, StagedImage)], images, self.copy_stream)
        e[1].record(self.copy_stream)  # always: the compute stream waits for it
        self.stream.wait(e[1])
        self._mark(e[DECODE], self.stream)
        self._decode_jpegs(slot, staged, offsets, images)
        for frame, offset in zip(staged, offsets):
            if isinstance(frame, Nv12Frame):
                self.kernels.nv12_to_bgr(self.stream, frame, images.ptr + offset)
                slot.keep.append(frame)  # its block is not reused until the batch is collected
        kept = [k for k in range(len(staged)) if k not in slot.failed]
        offsets = [offsets[k] for k in kept]
        slot.staged, slot.offsets = [staged[k] for k in kept], offsets
        if not kept:  # every image of the batch failed to decode
            e[DONE].record(self.stream)
            return
        sizes = [(s.height, s.width) for s in slot.staged]
        labels = slot.labels.ensure(sum(h * w for h, w in sizes))
        if self.window is not None:
            self._mark(e[2], self.stream)
            for offset, (h, w), at in zip(offsets, sizes, np.cumsum([0] + [h * w for h, w in sizes])):
                self._slide(self.window, images.ptr + offset, h, w, labels.ptr + int(at))
            for event in e[3:6]:
                self._mark(event, self.stream)  # one stage: crops, inference and sums interleave
            total = sum(h * w for h, w in sizes)
        else:
            total = self._segment(e, images.ptr, offsets, sizes, labels.ptr)
        if overlay:
            self._queue_overlays(slot, images, extent, labels, sizes)
        self.stream.copy_to_host(slot.labels.pinned_host(), labels, total)
        e[DONE].record(self.stream)

    def _decode_jpegs(self, slot: _Slot, staged: list[Staged], offsets: list[int], images: DeviceBuffer) -> None:
        """The batch's JPEGs decoded into `images` on the compute stream; one that fails goes into
        `slot.failed`, the rest of the batch unharmed."""
        jpegs = [(k, s) for k, s in enumerate(staged) if isinstance(s, EncodedImage)]
        if jpegs:
            assert self.jpeg_decoder is not None
            # On the copy stream: told to start after the compute stream's work, nvImageCodec's decode call
            # returned only once that work was done (26 ms with three batches queued, 0.5 ms on the copy
            # stream; H200), so the GPU idled while the next batch was queued: 252 -> 356 img/s at batch 1.
            keep, failed = decode_jpegs_into(self.jpeg_decoder, self.stream, self.pool, jpegs, offsets, images,
                                             decode_stream=self.copy_stream)
            slot.keep += keep
            slot.failed.update(failed)

    def _segment(self, e: list[Event], images_ptr: int, offsets: list[int], sizes: list[tuple[int, int]],
                 labels_ptr: int) -> int:
        """Preprocessing, inference and postprocessing of a batch whose images are on the GPU; the
        labels' total bytes."""
        shape = self.input_shape(len(sizes), *sizes[0])
        model_input, model_output = self.model_buffers(shape)
        self._mark(e[2], self.stream)
        self.kernels.preprocess_batch(self.stream, self.spec, images_ptr, offsets, sizes, model_input.ptr,
                                      self.executor.input.dtype)
        self._mark(e[3], self.stream)
        self.infer(shape)
        self._mark(e[4], self.stream)
        total = self.kernels.postprocess_batch(self.stream, model_output.ptr, self.executor.output.dtype,
                                               self.executor.output_shape(shape)[1:], sizes, labels_ptr)
        self._mark(e[5], self.stream)
        return total

    def _slide(self, window: SlideWindow, image_ptr: int, height: int, width: int, labels_ptr: int) -> None:
        """Sliding-window labels of one uploaded image: per strip of rows, the crops that reach into it
        are preprocessed and run `max_batch` at a time, their scores summed into the strip, and its
        labels taken from sum / count (PaddleSeg's slide_inference; paddleseg/slide.py is the CPU twin)."""
        classes = self.executor.output.shape[1]
        crop_hw = (min(window.crop[1], height), min(window.crop[0], width))
        in_dtype, out_dtype = self.executor.input.dtype, self.executor.output.dtype
        boxes = crop_boxes(height, width, window)
        for strip in strips(height, width, classes, window):
            rows = strip[1] - strip[0]
            sums = self._grown(self._sums, classes * rows * width * 4)
            counts = self._grown(self._counts, rows * width * 4)
            self.stream.zero(sums, classes * rows * width * 4)
            self.stream.zero(counts, rows * width * 4)
            for part in chunks(boxes_in_strip(boxes, strip), self.max_batch):
                shape = self.input_shape(len(part), *crop_hw)
                model_input, model_output = self.model_buffers(shape)
                in_bytes = int(np.prod(shape[1:])) * in_dtype.itemsize
                out_bytes = int(np.prod(self.executor.output_shape(shape)[1:])) * out_dtype.itemsize
                for k, box in enumerate(part):
                    self.kernels.preprocess(self.stream, self.spec, image_ptr + (box.y1 * width + box.x1) * 3,
                                            *crop_hw, model_input.ptr + k * in_bytes, in_dtype, src_stride=width * 3)
                self.infer(shape)
                for k, box in enumerate(part):
                    self.kernels.slide_accumulate(self.stream, model_output.ptr + k * out_bytes, out_dtype, classes,
                                                  crop_hw, (box.y1, box.x1), sums.ptr, counts.ptr, strip, width)
            self.kernels.slide_labels(self.stream, sums.ptr, counts.ptr, classes, rows, width,
                                      labels_ptr + strip[0] * width)

    def _mark(self, event: Event, stream: Stream) -> None:
        """A stage boundary, recorded only while timing: each CUDA call made here gives up the GIL, and
        with the decode and writer threads busy, taking it back is what the inference thread waits on."""
        if self.timing:
            event.record(stream)

    def _queue_overlays(self, slot: _Slot, images: DeviceBuffer, nbytes: int, labels: DeviceBuffer,
                        sizes: list[tuple[int, int]]) -> None:
        """Overlays blended at the images' offsets (`nbytes`: their extent), and what of them comes back."""
        slot.i420 = self.overlay_format == "i420" and all(h % 2 == 0 and w % 2 == 0 for h, w in sizes)
        bgr_back = not (slot.i420 or self._jpeg_overlays)
        slot.overlays.pinned = bgr_back  # a pinned twin only when the pixels come back
        if self._jpeg_overlays:
            assert self.jpeg is not None
            blended = slot.jpeg_overlays = self.jpeg.buffer(nbytes)
        else:
            blended = slot.overlays.ensure(nbytes)
        self.kernels.overlay_batch(self.stream, images.ptr, slot.offsets, labels.ptr, sizes, self.palette.ptr, blended.ptr)
        if slot.i420:
            plane_bytes = [h * w * 3 // 2 for h, w in sizes]
            planes = slot.planes.ensure(sum(plane_bytes))
            self.kernels.bgr_to_i420_batch(self.stream, blended.ptr, slot.offsets, sizes, planes.ptr,
                                           packed_offsets(plane_bytes))
            self.stream.copy_to_host(slot.planes.pinned_host(), planes, sum(plane_bytes))
        elif bgr_back:  # the CPU encodes them (OpenCV, or the video encoder)
            self.stream.copy_to_host(slot.overlays.pinned_host(), blended, nbytes)

    def infer(self, shape: tuple[int, ...]) -> None:
        """Queues inference of an NCHW input of `shape` on the model buffers: a CUDA graph replay when
        enabled (captured once per shape, so only where the shape repeats is it replayed)."""
        model_input, model_output = self.model_buffers(shape)
        if not self.cuda_graph:
            self.executor.enqueue(model_input.ptr, model_output.ptr, shape, self.stream)
            return
        self.context.make_current()
        if shape not in self._graphs:
            # One plain enqueue first: TensorRT allocates and sets shapes lazily, which capture cannot hold.
            self.executor.enqueue(model_input.ptr, model_output.ptr, shape, self.stream)
            self.stream.synchronize()
            self._graphs[shape] = CudaGraph(self.stream, lambda: self.executor.enqueue(
                model_input.ptr, model_output.ptr, shape, self.stream))
        self._graphs[shape].launch(self.stream)

    def close(self) -> None:
        self._enqueuer.shutdown(wait=True)
        if "jpeg" in self.__dict__ and self.jpeg is not None:  # started: what it was handed is encoded first
            self.jpeg.close()
        self.context.make_current()
        self.stream.synchronize()  # batches still in flight finish before their buffers go
        self.copy_stream.synchronize()
        for slot in self._slots:
            slot.close()
        self.pool.close()
        self.kernels.close()
        for growable in (self.model_input, self.model_output, self._sums, self._counts):
            growable.close()
        for owned in (*self._graphs.values(), self.palette, self.copy_stream):
            owned.close()

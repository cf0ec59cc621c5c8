"""`Segmenter`: the public Python API behind `deploy-kit infer`.

    from deploy_kit import Segmenter

    with Segmenter("build/") as seg:
        labels = seg.predict([cv2.imread("street.png")])

It resolves the model (a `convert` output, or a PaddleSeg export converted on the fly into the cache),
asks the backend registry for the best backend that runs here and says why, and owns the runtime
session; it returns uint8 label maps at each image's original size.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .artifact import Artifact
from .backends import registry
from .backends.base import DeviceBackend, HostBackend, OpenRequest
from .backends.registry import Choice
from .backends.tensorrt import TensorRTBackend
from .backends.tensorrt.features import probe_tensorrt
from .doctor import blocking_errors, startup_readings
from .errors import ConfigError, EngineCompatibilityError, InputImageError
from .fileio import cache_root, sha256_json
from .images import DEFAULT_MAX_PIXELS, EncodedImage, encoded_image, for_decoder, read_encoded
from .machine import GpuInfo
from .paddleseg.demo import restore_default_model
from .paddleseg.preprocess import PreprocessSpec
from .paddleseg.slide import SlideWindow
from .runtime.gpu_pipeline import GpuPipeline
from .runtime.session import Decoded, GpuSession, HostSession, Pending, Session
from .runtime.stream import Source, StreamItem, stream

log = logging.getLogger(__name__)

DECODERS = ("auto", "cpu", "gpu")
DECODER_HELP = ("where JPEGs and video files are decoded: gpu = the GPU's hardware JPEG decoder (nvImageCodec; "
                "labels ≥ 99.99%% identical) and its NVDEC video engines (PyNvVideoCodec), cpu = OpenCV (bit-exact "
                "with PaddleSeg) and PyAV, auto = gpu when the backend runs on a GPU that has them (default)")


def check_decoder(wanted: str, backend: str, on_gpu: bool) -> None:
    """ConfigError for a decoder (images or video) that is unknown, or `gpu` where the backend runs on the CPU."""
    if wanted not in DECODERS:
        raise ConfigError(f"unknown decoder {wanted!r}", hint=f"use one of {', '.join(DECODERS)}")
    if wanted == "gpu" and not on_gpu:
        raise ConfigError(f"--decoder gpu needs a backend on the GPU; {backend} runs on the CPU",
                          hint="use --decoder auto or cpu")


def resolve_model(model: Path, device: int = 0) -> Artifact:
    """A convert output folder as it is, or a PaddleSeg inference folder converted into the cache first."""
    if Artifact.is_convert_output(model):
        return Artifact.open(model)
    if (model / "deploy.yaml").is_file():
        return Artifact.open(_convert_into_cache(model, device))
    raise ConfigError("not a model folder", path=model,
                      hint="pass a deploy-kit convert output (convert.json) or a PaddleSeg export (deploy.yaml)")


def _convert_into_cache(model: Path, device: int) -> Path:
    from .convert.options import ConvertOptions  # only a PaddleSeg export needs the converter
    from .convert.pipeline import convert

    out = cache_root() / "converted" / sha256_json(str(model.resolve()))[:16]
    gpus = startup_readings().gpus
    options = ConvertOptions(onnx_only=not gpus or probe_tensorrt() is None)
    convert(model, out, options, lambda stage: log.info("convert %s: %s", stage.name, stage.status), device=device)
    return out


def choose_backend(artifact: Artifact, wanted: str, device: int) -> Choice:
    """The registry's choice, after the start-up checks that stop every GPU backend (an old driver)."""
    readings = startup_readings()
    blocking = blocking_errors(readings)
    if blocking and wanted != "onnxruntime-cpu":
        raise EngineCompatibilityError(f"{blocking[0].name}: {blocking[0].value}", hint=blocking[0].fix)
    return registry.choose(artifact, wanted, readings.gpus, device)


@dataclass(frozen=True)
class Prepared:
    """A decoded image and what the session prepared from it on the decode thread."""

    image: Decoded
    tensor: Any


class Segmenter:
    """Semantic segmentation of BGR uint8 images with a converted PaddleSeg model."""

    def __init__(self, model: Path | str | None = None, backend: str = "auto", device: int = 0, max_batch: int = 8,
                 precision: str | None = None, cuda_graph: bool = False, in_flight: int = 3,
                 crop_size: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
                 decoder: str = "auto") -> None:
        """`precision` picks the ONNX graph ONNX Runtime runs: by default the converted precision on the
        GPU and FP32 on the CPU (where FP16 is emulated). `cuda_graph` replays inference as a captured
        CUDA graph (TensorRT only). `device` is the CUDA device every check, rebuild and run uses.
        `in_flight`: batches the GPU pipeline holds at once in `stream` (each with its own buffers).
        `model`: a convert output or a PaddleSeg export; without it, the shipped demo model, as the CLI.
        `crop_size` and `stride`, (width, height) as in PaddleSeg's `test_config`: sliding-window
        inference, each image cropped as PaddleSeg's `slide_inference` crops it (`stride` defaults to
        two thirds of the crop); `max_batch` crops run at once. `decoder` (auto, cpu, gpu): where `stream`
        and `load` decode JPEG files; `decoder_reason` says why, as `choice.reason` does for the backend."""
        self.model = resolve_model(Path(model) if model is not None else restore_default_model(), device)
        self.spec = PreprocessSpec.from_metadata(self.model.preprocessing)
        self.window = self._slide_window(crop_size, stride)
        if self.window is not None:
            self.spec = self.spec.for_sliding_window()
        self.choice = choose_backend(self.model, backend, device)
        if self.choice.backend.on_gpu and not self.spec.gpu_ready:
            why = "deploy.yaml transforms without a GPU kernel"
            if backend != registry.AUTO:  # a backend the user named is never replaced behind their back
                raise ConfigError(f"the {backend} backend cannot run this model: {why}", path=self.model.folder,
                                  hint="use --backend auto (it falls back to the CPU path) or onnxruntime-cpu")
            log.warning("%s: running on the CPU path", why)
            cpu = registry.get("onnxruntime-cpu")
            self.choice = Choice(cpu, cpu.check(self.model, (), device), f"{why}; ONNX Runtime on the CPU")
        self.max_batch, self.in_flight = max_batch, in_flight
        self.session: Session = self._open_session(device, precision, cuda_graph)
        try:
            self.decoder, self.decoder_reason = self._start_decoder(decoder)
        except BaseException:
            self.session.close()
            raise

    def _start_decoder(self, wanted: str) -> tuple[str, str]:
        """'gpu' or 'cpu', and why; a decoder the user named is never replaced (ConfigError instead)."""
        check_decoder(wanted, self.backend, isinstance(self.session, GpuSession))
        if wanted == "cpu":
            return "cpu", "OpenCV, as asked (bit-exact with PaddleSeg)"
        if not isinstance(self.session, GpuSession):
            return "cpu", f"OpenCV: {self.backend} runs on the CPU"
        try:
            return "gpu", self.session.start_jpeg_decoder()
        except ConfigError as exc:
            if wanted == "gpu":
                raise
            return "cpu", f"OpenCV: {exc.what}"

    def _slide_window(self, crop_size: tuple[int, int] | None, stride: tuple[int, int] | None) -> SlideWindow | None:
        """The sliding window asked for, checked against the model: its scores are averaged, so it needs a
        model without an argmax; a fixed-size model takes crops of its own size."""
        if crop_size is None:
            if stride is not None:
                raise ConfigError("--stride without --crop-size", hint="give --crop-size W,H too")
            return None
        window = SlideWindow.of(crop_size, stride)
        if self.model.preprocessing.get("output_op") == "argmax":
            raise ConfigError("sliding-window inference averages scores, and this model ends in argmax",
                              path=self.model.folder, hint="re-export with PaddleSeg's tools/export.py "
                              "--output_op none, convert it again, then use --crop-size")
        if not self.spec.dynamic_hw and window.crop != (self.spec.width, self.spec.height):
            raise ConfigError(f"crop size {window.crop[0]},{window.crop[1]} (W,H) is not this fixed-size model's "
                              f"input {self.spec.width},{self.spec.height}", path=self.model.folder,
                              hint=f"use --crop-size {self.spec.width},{self.spec.height}, or a dynamic-shape export")
        return window

    def _open_session(self, device: int, precision: str | None, cuda_graph: bool) -> Session:
        backend = self.choice.backend
        request = OpenRequest(precision or backend.default_precision(self.model), device,
                              engine=self._rebuilt_engine(device) if self.choice.verdict.rebuild else None)
        if isinstance(backend, HostBackend):
            return HostSession(backend.open(self.model, request), self.spec, self.max_batch, self.window)
        assert isinstance(backend, DeviceBackend)
        return GpuSession(lambda stream: backend.open(self.model, request, stream), self.spec, device,
                          self.max_batch, cuda_graph, self.in_flight, self.window)

    def _rebuilt_engine(self, device: int) -> Path:
        backend = self.choice.backend
        assert isinstance(backend, TensorRTBackend) and backend.features is not None
        gpu: GpuInfo = startup_readings().gpus[device]
        log.warning("engine cannot run here (%s): rebuilding it from %s into the cache", self.choice.verdict.reason,
                    self.model.onnx.name)
        from .convert.pipeline import rebuild_engine

        return rebuild_engine(self.model, backend.features, gpu)

    @property
    def backend(self) -> str:
        return self.choice.backend.name

    @property
    def pipeline(self) -> GpuPipeline | None:
        """The GPU pipeline (for benchmarks and tests), None on the CPU."""
        return self.session.pipeline if isinstance(self.session, GpuSession) else None

    def warm_up(self) -> None:
        """Runs every batch size up to `max_batch`, so that serving never plans a session or captures a
        CUDA graph under load: ONNX Runtime captures in CUDA's global mode, which a CUDA call of another
        thread (a JPEG decode, another instance's batch) breaks, failing that batch (measured on the H200).
        Largest first, since a buffer that grows drops the graphs captured on it; each size three times,
        since ONNX Runtime captures a session's graph on its third run. On the CPU, one image: nothing
        is captured there."""
        image = np.zeros((64, 64, 3), np.uint8)
        if self.pipeline is None:
            self.predict(image)
            return
        for size in range(self.max_batch, 0, -1):
            for _ in range(3):
                self.predict([image] * size)

    def describe(self) -> str:
        """One line: the backend and the JPEG decoder, with why each was chosen."""
        return f"backend: {self.backend} ({self.choice.reason}); JPEG decoder: {self.decoder} ({self.decoder_reason})"

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """A list of uint8 H x W label maps, one per BGR uint8 H x W x 3 image, each at its image's size:
        one array gives a list of one (`predict(image)[0]`), a sequence of N arrays a list of N. Anything
        else is a ValueError that says what was given."""
        return self.predict_loaded(checked_images(images))

    def predict_loaded(self, images: Sequence[np.ndarray | EncodedImage]) -> list[np.ndarray]:
        """Label maps of what `load` or `load_bytes` gave (JPEGs left encoded are decoded in the batch)."""
        results: list[np.ndarray] = []
        for start in range(0, len(images), self.max_batch):
            results.extend(self.session.run(list(images[start:start + self.max_batch])))
        return results

    def load(self, source: object, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | EncodedImage:
        """An image file (path) read for this segmenter's decoder: a JPEG the GPU's hardware decoder takes
        stays encoded (it is decoded in the batch, on the GPU), anything else is decoded here as PaddleSeg
        reads it; an array is checked like `predict` checks it."""
        if isinstance(source, (str, Path)):
            return self.ingest(read_encoded(Path(source), max_pixels))
        try:
            return checked_images(source)[0]
        except ValueError as exc:
            raise InputImageError(str(exc)) from None

    def load_bytes(self, data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | EncodedImage:
        """Encoded image bytes (`source` names them in errors) read as `load` reads a file."""
        return self.ingest(encoded_image(data, source, max_pixels))

    def ingest(self, image: EncodedImage) -> np.ndarray | EncodedImage:
        return for_decoder(image, self.decoder == "gpu")

    def stream(self, inputs: Iterable[Source], decode: Callable[[Source], Decoded] | None = None,
               workers: int | None = None, keep_images: bool = False, overlay: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS, live: int = 0) -> Iterator[StreamItem[Source]]:
        """Segments image files (paths) or arrays as they come, decoding ahead on `workers` threads
        (default: half the CPUs) while earlier batches run; yields one `StreamItem` per input, in input
        order, with its labels or its error. `decode` turns a custom source into a BGR uint8 image (or
        what `load_bytes` gives, to keep the GPU decoder).
        `overlay`: on the GPU each item carries its overlay (blended there; when nvImageCodec encodes it,
        a Future of its JPEG bytes, encoded meanwhile; else BGR pixels); on the CPU each item keeps its
        image for the caller to blend.
        `live`: the number of real-time sources the inputs interleave (cameras, streams): latency before
        throughput, so a batch holds at most one frame per source and is collected as soon as it is
        submitted (with several in flight, a batch waits for the next frames to arrive: 3 frames, 100 ms
        at 30 fps, measured on the H200), and no more is taken ahead (it would go stale waiting)."""
        load = decode or functools.partial(self.load, max_pixels=max_pixels)
        session = self.session
        gpu_overlays = overlay and session.makes_overlays
        keep_images = keep_images or (overlay and not gpu_overlays)

        def load_and_prepare(source: Source) -> Prepared:  # on a decode thread
            image = load(source)
            return Prepared(image, session.prepare(image))

        def submit(batch: list[Prepared]) -> Pending:
            return session.submit([p.image for p in batch], [p.tensor for p in batch], gpu_overlays)

        same_size = self.spec.dynamic_hw and self.window is None  # a dynamic model's batch is of one size
        batch = min(self.max_batch, live) if live else self.max_batch
        items = stream(inputs, load_and_prepare, submit, batch, workers or default_workers(), keep_images,
                       1 if live else session.in_flight, (lambda p: p.image.shape[:2]) if same_size else None,
                       live=bool(live))
        return (StreamItem(i.source, i.labels, i.image.image if i.image is not None else None, i.error, i.overlay)
                for i in items)

    @property
    def num_classes(self) -> int | None:
        """Classes the model tells apart (its score channels), where the convert output records it."""
        return self.model.num_classes

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def checked_images(images: object) -> list[np.ndarray]:
    """`images` as a list of BGR uint8 HxWx3 arrays: one such array is a batch of one."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence):
        raise ValueError(f"predict takes one HxWx3 uint8 BGR image or a sequence of them, not {_described(images)}")
    for index, image in enumerate(images):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and image.size):
            raise ValueError(f"image {index} is {_described(image)}; predict takes HxWx3 uint8 BGR images "
                             "(cv2.imread gives them)")
    return list(images)


def _described(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def default_workers() -> int:
    """Threads in each of the decode and writer pools: together one per CPU. Measured on 16 cores (H200
    machine, 1024x2048 JPEGs): 8 each ran 10% (batch 1) to 30% (batch 8) faster than 16 each."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(2, cpus // 2)


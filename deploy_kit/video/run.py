"""Video sources through the segmenter: `VideoStream` (the Python API: every source read on its own
thread, video files decoded by NVDEC on the GPU when the segmenter runs there, their frames
interleaved into the segmenter's batches, a `FrameResult` per frame) and
`segment_videos` (`infer`: each frame's labels handed to its source's sink in order; Ctrl-C closes every
sink, so the videos written so far play)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import ConfigError, DeployKitError
from ..files import error_line
from ..images import label_overlay
from ..segmenter import Segmenter, check_decoder
from .sinks import SinkOptions, VideoSink
from .nvdec import Nvdec, load_pynvvideocodec
from .sources import SourceCounts, SourceReader, VideoFrame, interleaved, source_name

@dataclass(frozen=True)
class VideoOptions:
    stride: int = 1  # --vid-stride: every Nth frame of a file (and of a live source)
    reconnect_timeout: float = 10.0  # seconds a live source may send nothing before it ends
    sinks: SinkOptions = SinkOptions()
    decoder: str = "auto"  # video files: gpu = NVDEC, cpu = PyAV, auto = NVDEC where it takes the file


@dataclass
class VideoReport:
    """Per source: frames decoded, segmented, dropped (live, stale by design), failed; and error lines."""

    counts: dict[str, SourceCounts] = field(default_factory=dict)
    segmented: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (frame arrival, seconds until its labels)
    decoders: dict[str, str] = field(default_factory=dict)  # per source: NVDEC (GPU) or PyAV (CPU)

    @property
    def errors(self) -> list[str]:
        return [line for counts in self.counts.values() for line in counts.errors]

    def summary(self) -> str:
        decoded = sum(c.decoded for c in self.counts.values())
        dropped = sum(c.dropped for c in self.counts.values())
        segmented, failed = sum(self.segmented.values()), sum(self.failed.values())
        rate = f" ({segmented / self.seconds:.1f} frames/s)" if segmented and self.seconds else ""
        return (f"video: {len(self.counts)} source(s), {decoded} frames decoded, {segmented} segmented{rate}, "
                f"{dropped} dropped (live, stale), {failed} failed; {len(self.errors)} source error(s)")


def unique_names(sources: list[str]) -> list[str]:
    """Each source's output name; a name already taken gets -2, -3, ... (outputs never collide)."""
    names: list[str] = []
    for source in sources:
        name, number = source_name(source), 1
        while name in names:
            number += 1
            name = f"{source_name(source)}-{number}"
        names.append(name)
    return names


@dataclass(frozen=True)
class FrameResult:
    """One frame's outcome: the frame (source name, index, time, image), its labels or its error, and
    its overlay when asked for: BGR pixels, or with `overlay_format="i420"` I420 planes (h*3/2 x w, BT.601
    limited range) where the GPU converted them (even-sized frames). `frame.image` is BGR pixels when PyAV
    decoded the frame and an `Nv12Frame` on the GPU when NVDEC did; the labels are the same either way."""

    frame: VideoFrame
    labels: np.ndarray | None = None
    error: DeployKitError | None = None
    overlay: np.ndarray | None = None


class VideoStream:
    """`Segmenter` over video sources, as an iterator of `FrameResult`s: every source read on a thread
    of its own, their frames interleaved (one of each per round) into the segmenter's batches.

        with Segmenter("build/") as segmenter:
            for result in VideoStream(segmenter, ["street.mp4", "rtsp://cam/1"], overlay=True):
                ...  # result.frame.source, .index, .time; result.labels; result.overlay

    `counts` has each source's frames decoded and dropped (live, stale) and its error lines; `fps` what
    each source declares. Leaving the iteration stops every reader. `overlay_format="i420"` hands the
    overlays to a video encoder as the GPU converted them (see FrameResult)."""

    def __init__(self, segmenter: Segmenter, sources: list[str], stride: int = 1, reconnect_timeout: float = 10.0,
                 overlay: bool = False, on_event: Callable[[str], None] = lambda line: None,
                 decoder: str = "auto", overlay_format: str = "bgr") -> None:
        if overlay_format not in ("bgr", "i420"):
            raise ValueError(f"overlay_format {overlay_format!r}: bgr or i420")
        self.segmenter, self.overlay, self.overlay_format = segmenter, overlay, overlay_format
        self.nvdec = video_decoder(segmenter, decoder)
        self.readers = [SourceReader(source, stride, reconnect_timeout, on_event, name=name, nvdec=self.nvdec,
                                     require_nvdec=decoder == "gpu")
                        for source, name in zip(sources, unique_names(sources))]
        self.counts: dict[str, SourceCounts] = {reader.name: reader.counts for reader in self.readers}

    def fps(self, name: str) -> float | None:
        return next(reader.fps for reader in self.readers if reader.name == name)

    @property
    def decoders(self) -> dict[str, str]:
        """What decodes each source (once it is open): NVDEC (GPU) or PyAV (CPU)."""
        return {reader.name: reader.decoder for reader in self.readers}

    def __iter__(self) -> Iterator[FrameResult]:
        pipeline = self.segmenter.pipeline
        formerly = pipeline.overlay_format if pipeline is not None else ""
        try:
            if pipeline is not None:
                pipeline.overlay_format = self.overlay_format  # a video encoder takes pixels, not JPEGs
            live = sum(reader.live for reader in self.readers)
            for item in self.segmenter.stream(interleaved(self.readers), decode=lambda frame: frame.image,
                                              overlay=self.overlay, live=len(self.readers) if live else 0):
                frame: VideoFrame = item.source
                blended = item.overlay
                if blended is None and self.overlay and item.labels is not None:  # the CPU path blends here
                    assert isinstance(frame.image, np.ndarray)
                    blended = label_overlay(frame.image, item.labels)
                assert blended is None or isinstance(blended, np.ndarray)
                yield FrameResult(frame, item.labels, item.error, blended)
        finally:
            if pipeline is not None:
                pipeline.overlay_format = formerly
            for reader in self.readers:
                reader.stop()
            if self.nvdec is not None:
                self.nvdec.close()


def video_decoder(segmenter: Segmenter, wanted: str) -> Nvdec | None:
    """NVDEC for the segmenter's GPU, when `wanted` (auto, cpu, gpu) allows and it can run; a decoder the
    user named is never replaced (ConfigError instead)."""
    pipeline = segmenter.pipeline
    check_decoder(wanted, segmenter.backend, pipeline is not None)
    if wanted == "cpu" or pipeline is None:
        return None
    try:
        load_pynvvideocodec()
    except ConfigError:
        if wanted == "gpu":
            raise
        return None
    return Nvdec(pipeline.context)


def segment_videos(segmenter: Segmenter, sources: list[str], out: Path, options: VideoOptions,
                   on_event: Callable[[str], None] = lambda line: None) -> VideoReport:
    """Segments every frame the sources give and writes each source's outputs under `out`."""
    report = VideoReport()
    started = time.perf_counter()
    if options.sinks.background is not None and options.decoder == "gpu":
        raise ConfigError("--background replaces pixels on the CPU, and --decoder gpu keeps frames on the GPU",
                          hint="use --decoder auto (it decodes on the CPU with --background) or cpu")
    decoder = "cpu" if options.sinks.background is not None else options.decoder
    frames = VideoStream(segmenter, sources, options.stride, options.reconnect_timeout, options.sinks.overlay,
                         on_event, decoder, overlay_format="i420")
    report.counts = frames.counts
    sinks: dict[str, VideoSink] = {}
    try:
        for result in frames:
            frame = result.frame
            if result.error is not None:
                report.failed[frame.source] = report.failed.get(frame.source, 0) + 1
                on_event("error: " + error_line(f"{frame.source} frame {frame.index}", result.error))
                continue
            assert result.labels is not None
            report.latencies.append((frame.arrived, time.monotonic() - frame.arrived))
            if frame.source not in sinks:
                sinks[frame.source] = VideoSink(out, frame.source, options.sinks, frames.fps(frame.source))
            sinks[frame.source].write(frame, result.labels, result.overlay)
            report.segmented[frame.source] = report.segmented.get(frame.source, 0) + 1
    finally:
        report.decoders = frames.decoders
        for sink in sinks.values():
            sink.close()
            report.outputs += sink.paths
    report.seconds = time.perf_counter() - started
    return report

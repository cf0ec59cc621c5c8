"""Video sources through the segmenter: `VideoStream` (the Python API: every source read on its own
thread, their frames interleaved into the segmenter's batches, a `FrameResult` per frame) and
`segment_videos` (`infer`: each frame's labels handed to its source's sink in order; Ctrl-C closes every
sink, so the videos written so far play)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import DeployKitError
from ..files import error_line
from ..images import label_overlay
from ..segmenter import Segmenter
from .sinks import SinkOptions, VideoSink
from .sources import SourceCounts, SourceReader, VideoFrame, interleaved, source_name


@dataclass(frozen=True)
class VideoOptions:
    stride: int = 1  # --vid-stride: every Nth frame of a file (and of a live source)
    reconnect_timeout: float = 10.0  # seconds a live source may send nothing before it ends
    sinks: SinkOptions = SinkOptions()


@dataclass
class VideoReport:
    """Per source: frames decoded, segmented, dropped (live, stale by design), failed; and error lines."""

    counts: dict[str, SourceCounts] = field(default_factory=dict)
    segmented: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (frame arrival, seconds until its labels)

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
    its overlay when asked for."""

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
    each source declares. Leaving the iteration stops every reader."""

    def __init__(self, segmenter: Segmenter, sources: list[str], stride: int = 1, reconnect_timeout: float = 10.0,
                 overlay: bool = False, on_event: Callable[[str], None] = lambda line: None) -> None:
        self.segmenter, self.overlay = segmenter, overlay
        self.readers = [SourceReader(source, stride, reconnect_timeout, on_event, name=name)
                        for source, name in zip(sources, unique_names(sources))]
        self.counts: dict[str, SourceCounts] = {reader.name: reader.counts for reader in self.readers}

    def fps(self, name: str) -> float | None:
        return next(reader.fps for reader in self.readers if reader.name == name)

    def __iter__(self) -> Iterator[FrameResult]:
        try:
            # A live frame taken ahead of its turn waits there while newer ones arrive: one batch at a time.
            live = any(reader.live for reader in self.readers)
            for item in self.segmenter.stream(interleaved(self.readers), decode=lambda frame: frame.image,
                                              read_ahead=self.segmenter.max_batch if live else None):
                frame: VideoFrame = item.source
                blended = label_overlay(frame.image, item.labels) if self.overlay and item.labels is not None else None
                yield FrameResult(frame, item.labels, item.error, blended)
        finally:
            for reader in self.readers:
                reader.stop()


def segment_videos(segmenter: Segmenter, sources: list[str], out: Path, options: VideoOptions,
                   on_event: Callable[[str], None] = lambda line: None) -> VideoReport:
    """Segments every frame the sources give and writes each source's outputs under `out`."""
    report = VideoReport()
    started = time.perf_counter()
    frames = VideoStream(segmenter, sources, options.stride, options.reconnect_timeout, on_event=on_event)
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
            sinks[frame.source].write(frame, result.labels)
            report.segmented[frame.source] = report.segmented.get(frame.source, 0) + 1
    finally:
        for sink in sinks.values():
            sink.close()
            report.outputs += sink.paths
    report.seconds = time.perf_counter() - started
    return report

"""`infer` on video sources: every source read on its own thread, their frames interleaved into the
segmenter's batches (`Segmenter.stream`), each frame's labels handed to its source's sink in order.
Ctrl-C closes every sink, so the videos written so far play."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..files import error_line
from ..segmenter import Segmenter
from .sinks import SinkOptions, VideoSink
from .sources import SourceCounts, SourceReader, interleaved, source_name


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


def segment_videos(segmenter: Segmenter, sources: list[str], out: Path, options: VideoOptions,
                   on_event: Callable[[str], None] = lambda line: None) -> VideoReport:
    """Segments every frame the sources give and writes each source's outputs under `out`."""
    report = VideoReport()
    started = time.perf_counter()
    readers = [SourceReader(source, options.stride, options.reconnect_timeout, on_event, name=name)
               for source, name in zip(sources, unique_names(sources))]
    by_name = {reader.name: reader for reader in readers}
    for reader in readers:
        report.counts[reader.name] = reader.counts
    sinks: dict[str, VideoSink] = {}
    try:
        # A live frame taken ahead of its turn waits there while newer ones arrive: take one batch at a time.
        live = any(reader.live for reader in readers)
        items = segmenter.stream(interleaved(readers), decode=lambda frame: frame.image,
                                 read_ahead=segmenter.max_batch if live else None)
        for item in items:
            frame = item.source
            if item.error is not None:
                report.failed[frame.source] = report.failed.get(frame.source, 0) + 1
                on_event("error: " + error_line(f"{frame.source} frame {frame.index}", item.error))
                continue
            assert item.labels is not None
            report.latencies.append((frame.arrived, time.monotonic() - frame.arrived))
            if frame.source not in sinks:
                sinks[frame.source] = VideoSink(out, frame.source, options.sinks, by_name[frame.source].fps)
            sinks[frame.source].write(frame, item.labels)
            report.segmented[frame.source] = report.segmented.get(frame.source, 0) + 1
    finally:
        for reader in readers:
            reader.stop()
        for sink in sinks.values():
            sink.close()
            report.outputs += sink.paths
    report.seconds = time.perf_counter() - started
    return report

"""Segmenting image files into label PNGs (and overlays): the stream of `Segmenter.stream` feeding a
bounded pool of writer threads, so decoding, inference and encoding all run at once. Used by
`deploy-kit infer` and by the benchmark's from-files row.

Every output is written atomically; an output is reported only once its file is complete, so Ctrl-C
leaves every reported output whole and no partial one.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DeployKitError
from .fileio import write_bytes_atomic
from .images import DEFAULT_MAX_PIXELS, OutputPlan, label_overlay, overlay_jpeg_bytes, write_label_png
from .runtime.stream import Overlay
from .segmenter import Segmenter, default_workers


@dataclass
class FilesReport:
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one error line each
    seconds: float = 0.0


def segment_files(segmenter: Segmenter, plans: list[OutputPlan], overlay: bool = False,
                  max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
                  on_error: Callable[[str], None] = lambda line: None,
                  on_done: Callable[[int], None] = lambda count: None) -> FilesReport:
    """Segments every plan's image and writes its outputs; errors are reported per image and the rest
    go on. `on_done` gets the number of images finished so far (written or failed)."""
    report = FilesReport()
    threads = workers or default_workers()
    writing: collections.deque[tuple[OutputPlan, Future[None]]] = collections.deque()
    writers = ThreadPoolExecutor(threads, thread_name_prefix="deploy-kit-write")
    started = time.perf_counter()

    def fail(line: str) -> None:
        report.failed.append(line)
        on_error(line)
        on_done(len(report.written) + len(report.failed))

    def finish_oldest() -> None:
        plan, future = writing.popleft()
        try:
            future.result()
        except OSError as exc:
            fail(f"{plan.label}: cannot write the result · Note: {exc.strerror}")
            return
        except DeployKitError as exc:  # its overlay could not be encoded
            fail(error_line(plan.image, exc))
            return
        report.written.append(plan.label)
        on_done(len(report.written) + len(report.failed))

    try:
        items = segmenter.stream(plans, decode=lambda plan: segmenter.load(plan.image, max_pixels), workers=threads,
                                 overlay=overlay)
        for item in items:
            if item.error is not None:
                fail(error_line(item.source.image, item.error))
                continue
            assert item.labels is not None
            writing.append((item.source, writers.submit(_write, item.source, item.labels, item.image, item.overlay)))
            while len(writing) > 2 * threads or (writing and writing[0][1].done()):
                finish_oldest()
        while writing:
            finish_oldest()
    finally:
        writers.shutdown(wait=True, cancel_futures=True)  # writes under way finish; queued ones never start
    report.seconds = time.perf_counter() - started
    return report


def _write(plan: OutputPlan, labels: np.ndarray, image: np.ndarray | None, blended: Overlay | None) -> None:
    write_label_png(plan.label, labels)
    if blended is not None or image is not None:
        write_bytes_atomic(plan.overlay, overlay_jpeg(plan.overlay, labels, image, blended))


def overlay_jpeg(path: Path | str, labels: np.ndarray, image: np.ndarray | None, blended: Overlay | None) -> bytes:
    """The overlay's JPEG (`path` names it in errors): as the GPU encoded it, encoded here from the GPU's
    blend, or blended and encoded here from the image (the CPU path)."""
    if isinstance(blended, Future):
        return blended.result()
    if isinstance(blended, bytes):
        return blended
    if blended is not None:
        return overlay_jpeg_bytes(blended, path)
    assert image is not None
    return overlay_jpeg_bytes(label_overlay(image, labels), path)


def error_line(path: Path | str, error: DeployKitError) -> str:
    """The error's line, led by the input's path unless it already names it."""
    line = error.one_line()
    return line if str(path) in line else f"{path}: {line}"

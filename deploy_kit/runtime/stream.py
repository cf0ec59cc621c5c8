"""Streaming segmentation: a pool of decode threads works ahead of the inference thread, which takes
decoded images in input order, runs them in batches, and yields each item's labels (or its error) in
input order. The window of images decoded ahead is bounded, so memory stays bounded on any input.

OpenCV's decoders and ONNX Runtime release the GIL, so decoding on the CPU overlaps inference.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

import numpy as np

from ..errors import DeployKitError

Source = TypeVar("Source")
Decode = Callable[[Source], Any]  # the source decoded (an image, or an image and what was prepared from it)
RunBatch = Callable[[list[Any]], list[np.ndarray]]


@dataclass(frozen=True)
class StreamItem(Generic[Source]):
    """One input's outcome: its labels, or the error that stopped it (decode or inference)."""

    source: Source
    labels: np.ndarray | None = None
    image: Any = None  # what `decode` gave, when the caller keeps it (overlays)
    error: DeployKitError | None = None


def stream(sources: Iterable[Source], decode: Decode[Source], run: RunBatch, batch: int, workers: int,
           keep_images: bool = False) -> Iterator[StreamItem[Source]]:
    """Decodes `sources` on `workers` threads ahead of `run`, which gets batches of at most `batch`
    decoded images; yields every source's outcome in input order. Stopping the iteration (or Ctrl-C)
    cancels what was not started and waits for the decodes under way."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="deploy-kit-decode")
    pending: collections.deque[tuple[Source, Future[Any]]] = collections.deque()
    upcoming = iter(sources)
    window = 2 * batch + max(1, workers)  # decoded images held at most: the next batches' worth

    def fill() -> None:
        while len(pending) < window:
            source = next(upcoming, _END)
            if source is _END:
                return
            pending.append((source, pool.submit(decode, source)))  # type: ignore[arg-type]

    try:
        fill()
        while pending:
            ready = _next_batch(pending, batch, fill)
            yield from _run_batch(ready, run, keep_images)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def _next_batch(pending: collections.deque[tuple[Source, Future[Any]]], batch: int,
                fill: Callable[[], None]) -> list[StreamItem[Source]]:
    """Items in input order up to and including the `batch`-th decoded image (failures ride along)."""
    ready: list[StreamItem[Source]] = []
    decoded = 0
    while pending and decoded < batch:
        source, future = pending.popleft()
        fill()
        try:
            ready.append(StreamItem(source, image=future.result()))
            decoded += 1
        except DeployKitError as exc:
            ready.append(StreamItem(source, error=exc))
    return ready


def _run_batch(ready: list[StreamItem[Source]], run: RunBatch, keep_images: bool) -> Iterator[StreamItem[Source]]:
    images = [item.image for item in ready if item.image is not None]
    try:
        labels = iter(run(images)) if images else iter(())
        failure = None
    except DeployKitError as exc:  # the batch failed as a whole: each of its images says so
        labels, failure = iter(()), exc
    for item in ready:
        if item.error is not None:
            yield item
        elif failure is not None:
            yield StreamItem(item.source, error=failure)
        else:
            yield StreamItem(item.source, labels=next(labels), image=item.image if keep_images else None)

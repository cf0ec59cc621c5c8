"""Streaming segmentation: a pool of decode threads works ahead of the inference thread, which takes
decoded images in input order, submits them in batches (several in flight when the session allows, so
the GPU starts a batch while the previous one is collected), and yields each item's labels (or its
error) in input order. The window of images decoded ahead is bounded, so memory stays bounded on any input.

OpenCV's decoders and ONNX Runtime release the GIL, so decoding on the CPU overlaps inference.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import DeployKitError

Source = TypeVar("Source")
# An overlay blended on the GPU: its JPEG when the GPU encodes it (a Future: encoded on a thread of its
# own while the next batches run), else BGR pixels (or I420).
Overlay = Future[bytes] | bytes | np.ndarray


@dataclass(frozen=True)
class BatchOutputs:
    """What one batch gives back, in the batch's order: label maps, and overlays when asked for, of the
    images that did not fail on their own (`failed`, by index in the batch: a JPEG no decoder takes)."""

    labels: list[np.ndarray]
    overlays: list[Overlay] | None = None
    failed: dict[int, DeployKitError] = field(default_factory=dict)


Decode = Callable[[Source], Any]  # the source decoded (an image, or an image and what was prepared from it)
Submit = Callable[[list[Any]], Callable[[], BatchOutputs]]  # starts a batch; the callable waits for its outputs


@dataclass(frozen=True)
class StreamItem(Generic[Source]):
    """One input's outcome: its labels, or the error that stopped it (decode or inference)."""

    source: Source
    labels: np.ndarray | None = None
    image: Any = None  # what `decode` gave, when the caller keeps it (overlays made on the CPU)
    error: DeployKitError | None = None
    overlay: Overlay | None = None  # made on the GPU, when asked for


def stream(sources: Iterable[Source], decode: Decode[Source], submit: Submit, batch: int, workers: int,
           keep_images: bool = False, in_flight: int = 1,
           batch_key: Callable[[Any], Hashable] | None = None, live: bool = False) -> Iterator[StreamItem[Source]]:
    """Decodes `sources` on `workers` threads ahead of `submit`, which gets batches of at most `batch`
    decoded images of one `batch_key` (a dynamic-shape model's batch is of one size), at most `in_flight`
    of them not yet collected; yields every source's outcome in input order, taking the next batches'
    worth of sources ahead. `live` (real-time sources, whose iterator blocks until a frame arrives): one
    batch is taken at a time, and the next only after this one's outcomes are yielded, so no frame waits
    for the arrival of the one after it (it did: a frame period of latency each, and at the end of a
    stream the last frame waited for the source to end). Stopping the iteration (or Ctrl-C) cancels what
    was not started and waits for the decodes and batches under way."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="deploy-kit-decode")
    pending: collections.deque[tuple[Source, Future[Any]]] = collections.deque()
    flying: collections.deque[tuple[list[StreamItem[Source]], Callable[[], BatchOutputs]]] = collections.deque()
    upcoming = iter(sources)
    window = batch if live else (in_flight + 1) * batch + max(1, workers)  # sources taken at most

    def fill() -> None:
        while len(pending) < window:
            source = next(upcoming, _END)
            if source is _END:
                return
            pending.append((source, pool.submit(decode, source)))  # type: ignore[arg-type]

    try:
        fill()
        while pending or flying:
            if pending:
                ready = _next_batch(pending, batch, (lambda: None) if live else fill, batch_key)
                flying.append((ready, _submitted(ready, submit)))
            if len(flying) >= max(1, in_flight) or not pending:
                yield from _collected(*flying.popleft(), keep_images)
            if live:
                fill()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        _collect_abandoned(flying)


def _collect_abandoned(flying: collections.deque[tuple[list[StreamItem[Source]], Callable[[], BatchOutputs]]]) -> None:
    """Waits for the batches started but not collected when the iteration stops early: the session
    holds their buffers until they are, and its next caller would wait for them forever."""
    for _, wait in flying:
        try:
            wait()
        except DeployKitError:
            pass  # their outcome was not asked for


_END = object()


def same_size_runs(sizes: Sequence[tuple[int, int]]) -> list[range]:
    """Index ranges of consecutive equal sizes: what one batch of a dynamic-shape model may hold."""
    runs: list[range] = []
    start = 0
    for index in range(1, len(sizes) + 1):
        if index == len(sizes) or sizes[index] != sizes[start]:
            runs.append(range(start, index))
            start = index
    return runs


def _next_batch(pending: collections.deque[tuple[Source, Future[Any]]], batch: int, fill: Callable[[], None],
                batch_key: Callable[[Any], Hashable] | None) -> list[StreamItem[Source]]:
    """Items in input order up to and including the `batch`-th decoded image, stopping before a decoded
    image of another `batch_key` (failures ride along)."""
    ready: list[StreamItem[Source]] = []
    keys: set[Hashable] = set()
    while pending and sum(item.error is None for item in ready) < batch:
        source, future = pending[0]
        try:
            image = future.result()
        except DeployKitError as exc:
            ready.append(StreamItem(source, error=exc))
        else:
            keys.add(batch_key(image) if batch_key is not None else None)
            if len(keys) > 1:
                break  # the next batch starts with it
            ready.append(StreamItem(source, image=image))
        pending.popleft()
        fill()
    return ready


def _submitted(ready: list[StreamItem[Source]], submit: Submit) -> Callable[[], BatchOutputs]:
    """The batch's decoded images started; a batch that cannot start fails when it is collected."""
    images = [item.image for item in ready if item.image is not None]
    if not images:
        return lambda: BatchOutputs([])
    try:
        return submit(images)
    except DeployKitError as exc:
        error = exc  # `exc` itself is unbound when the except block ends

        def failed() -> BatchOutputs:
            raise error
        return failed


def _collected(ready: list[StreamItem[Source]], wait: Callable[[], BatchOutputs],
               keep_images: bool) -> Iterator[StreamItem[Source]]:
    try:
        outputs = wait()
        failure = None
    except DeployKitError as exc:  # the batch failed as a whole: each of its images says so
        outputs, failure = BatchOutputs([]), exc
    labels = iter(outputs.labels)
    overlays = iter(outputs.overlays) if outputs.overlays is not None else None
    submitted = -1  # the item's index in the batch submitted (failed decodes were not submitted)
    for item in ready:
        submitted += item.error is None
        if item.error is not None:
            yield item
        elif failure is not None or submitted in outputs.failed:
            yield StreamItem(item.source, error=failure or outputs.failed[submitted])
        else:
            yield StreamItem(item.source, labels=next(labels), image=item.image if keep_images else None,
                             overlay=next(overlays) if overlays is not None else None)

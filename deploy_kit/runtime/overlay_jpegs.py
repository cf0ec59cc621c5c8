"""Overlays JPEG-encoded on the GPU away from the thread that collects batches, many per call.

nvImageCodec's `encode` returns host bytes, so it waits for its GPU work, and it takes the GIL back
several times per call: with the decode and writer threads busy, one 1024x2048 overlay cost the
collecting thread about 2.5 ms (`infer --overlay` 188 img/s vs 351 without; H200). Each batch's
overlays are blended into a pooled device buffer of their own instead, so its slot is free for the next
batch at once, and a thread of its own encodes them, with whatever other batches are waiting, in one call;
each overlay comes back as a Future, which the writer resolves.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Sequence

from ..cuda import CudaContext, DeviceBuffer
from ..errors import InputImageError
from ..gpu_jpeg import GpuJpegEncoder
from .buffers import BlockPool


@dataclass(frozen=True)
class _Batch:
    """One batch's overlays, in `buffer` at `offsets`."""

    buffer: DeviceBuffer
    offsets: list[int]
    sizes: list[tuple[int, int]]
    overlays: list[Future[bytes]] = field(default_factory=list)

    def images(self) -> list[tuple[int, int, int]]:
        return [(self.buffer.ptr + offset, height, width) for offset, (height, width) in zip(self.offsets, self.sizes)]


class JpegOverlays:
    """Batches of BGR overlays in device memory encoded to JPEG on a thread of their own, up to `most`
    overlays per encoder call; at most `pending` batches wait or encode at once (`encode` blocks beyond
    that, so memory stays bounded when the writers fall behind)."""

    def __init__(self, encoder: GpuJpegEncoder, context: CudaContext, most: int = 8, pending: int = 8) -> None:
        self._encoder, self._context, self._most = encoder, context, most
        self._pool = BlockPool(DeviceBuffer)
        self._room = threading.BoundedSemaphore(pending)
        self._batches: queue.Queue[_Batch | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="deploy-kit-jpeg", daemon=True)
        self._thread.start()

    def buffer(self, nbytes: int) -> DeviceBuffer:
        """A device buffer of at least `nbytes` for a batch's overlays, until `encode` or `give_back`."""
        return self._pool.take(nbytes)

    def give_back(self, buffer: DeviceBuffer) -> None:
        """A buffer whose overlays are not encoded after all (its batch failed)."""
        self._pool.give(buffer)

    def encode(self, buffer: DeviceBuffer, offsets: Sequence[int], sizes: Sequence[tuple[int, int]]) -> list[Future[bytes]]:
        """The JPEGs of the overlays at `offsets` in `buffer` (written: their batch was collected), to
        come; the buffer goes back to the pool once they are encoded."""
        self._room.acquire()
        batch = _Batch(buffer, list(offsets), list(sizes), [Future() for _ in sizes])
        self._batches.put(batch)
        return batch.overlays

    def _run(self) -> None:
        self._context.make_current()  # the pool frees buffers on this thread once closed
        closing = False
        while not closing:
            first = self._batches.get()
            batches = [first] if first is not None else []
            closing = first is None
            while not closing and sum(len(b.sizes) for b in batches) < self._most:
                try:
                    more = self._batches.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                else:
                    batches.append(more)
            if batches:
                self._encode(batches)

    def _encode(self, batches: list[_Batch]) -> None:
        images = [image for batch in batches for image in batch.images()]
        overlays = [overlay for batch in batches for overlay in batch.overlays]
        try:
            try:
                results = self._encoded(images)
            except Exception as exc:  # noqa: BLE001  (a bug: each writer raises it rather than wait forever)
                results = [exc] * len(images)
            for overlay, jpeg in zip(overlays, results):
                if isinstance(jpeg, bytes):
                    overlay.set_result(jpeg)
                else:
                    overlay.set_exception(jpeg)
        finally:
            for overlay in overlays:
                if not overlay.done():  # the encoder gave fewer results than images: never leave a writer waiting
                    overlay.set_exception(_encode_error("the encoder gave no result for it"))
            for batch in batches:
                self._pool.give(batch.buffer)
                self._room.release()

    def _encoded(self, images: list[tuple[int, int, int]]) -> list[bytes | Exception]:
        """Each image's JPEG, or why not: a call that fails is made again image by image, so an image
        fails alone."""
        try:
            return [jpeg if jpeg is not None else _encode_error("the encoder refused it") for jpeg in self._encoder.encode(images)]
        except RuntimeError as exc:  # how nvImageCodec fails
            if len(images) == 1:
                return [_encode_error(str(exc))]
        return [result for image in images for result in self._encoded([image])]

    def close(self) -> None:
        """Encodes what was handed over, then frees the buffers."""
        self._batches.put(None)
        self._thread.join()
        self._context.make_current()
        self._pool.close()


def _encode_error(why: str) -> InputImageError:
    return InputImageError("could not encode the overlay on the GPU", note=why, hint="use --decoder cpu")

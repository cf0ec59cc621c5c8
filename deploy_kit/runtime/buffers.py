"""Host and device buffers of the GPU runtime: pinned blocks for staged images (pooled), buffers that
grow with the largest batch, and the back-to-back layouts of a batch's images and labels."""

from __future__ import annotations

import threading
import weakref
from typing import Sequence

import numpy as np

from ..cuda import DeviceBuffer, PinnedBuffer, Stream


class Growable:
    """A device buffer and, when asked for, its pinned twin, reallocated only when a batch needs more."""

    def __init__(self, pinned: bool = True) -> None:
        self.pinned = pinned
        self.device: DeviceBuffer | None = None
        self.host: PinnedBuffer | None = None

    def ensure(self, nbytes: int) -> DeviceBuffer:
        if self.device is None or self.device.nbytes < nbytes:
            self.close()
            self.device = DeviceBuffer(nbytes)
            self.host = PinnedBuffer(nbytes) if self.pinned else None
        return self.device

    def upload(self, array: np.ndarray, stream: Stream) -> DeviceBuffer:
        """`array`'s bytes queued on `stream` into the device buffer, through the pinned twin."""
        array = np.ascontiguousarray(array)
        device = self.ensure(array.nbytes)
        self.pinned_host().view(np.uint8, (array.nbytes,))[:] = array.view(np.uint8).reshape(-1)
        stream.copy_to_device(device, self.pinned_host(), array.nbytes)
        return device

    def pinned_host(self) -> PinnedBuffer:
        assert self.host is not None, "ensure() a pinned Growable first"
        return self.host

    def close(self) -> None:
        for buffer in (self.device, self.host):
            if buffer is not None:
                buffer.close()
        self.device = self.host = None


class PinnedPool:
    """Pinned host blocks handed out for staged images and taken back once their upload is done, so
    decode threads copy into page-locked memory without allocating it (which is slow and serializes)
    for every image. The pool holds at most as many blocks as were ever staged at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[PinnedBuffer] = []
        self._owned: list[PinnedBuffer] = []

    def take(self, nbytes: int) -> PinnedBuffer:
        with self._lock:
            fitting = [b for b in self._free if nbytes <= b.nbytes <= 2 * nbytes]
            if fitting:
                block = min(fitting, key=lambda b: b.nbytes)
                self._free.remove(block)
                return block
        block = PinnedBuffer(nbytes)
        with self._lock:
            self._owned.append(block)
        return block

    def give(self, block: PinnedBuffer) -> None:
        with self._lock:
            if not block.closed:
                self._free.append(block)

    def close(self) -> None:
        with self._lock:
            for block in self._owned:
                block.close()
            self._owned, self._free = [], []


class StagedImage:
    """A BGR uint8 image copied into a pinned block, ready for an asynchronous upload; the block goes
    back to its pool when the staged image is dropped (after its batch was collected)."""

    def __init__(self, image: np.ndarray, pool: PinnedPool) -> None:
        self.height, self.width = image.shape[0], image.shape[1]
        self.nbytes = image.nbytes
        self.block = pool.take(image.nbytes)
        self.block.view(np.uint8, image.shape)[:] = image
        weakref.finalize(self, pool.give, self.block)


def device_copy(array: np.ndarray, stream: Stream) -> DeviceBuffer:
    """A host array's bytes in new device memory, once (constants such as the palette)."""
    array = np.ascontiguousarray(array)
    target = DeviceBuffer(array.nbytes)
    with PinnedBuffer(array.nbytes) as staging:
        staging.view(np.uint8, (array.nbytes,))[:] = array.view(np.uint8).reshape(-1)
        stream.copy_to_device(target, staging, array.nbytes)
        stream.synchronize()
    return target


def packed_offsets(nbytes: Sequence[int]) -> list[int]:
    """Offsets of buffers of these sizes laid back to back."""
    return [int(o) for o in np.cumsum([0, *nbytes])[:len(nbytes)]]


def upload(placed: Sequence[tuple[StagedImage, int]], target: DeviceBuffer, stream: Stream) -> None:
    """Queues each staged image's copy into `target` at its offset."""
    for image, offset in placed:
        stream.copy_to_device(target, image.block, image.nbytes, dst_offset=offset)


def split_labels(host: PinnedBuffer, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Copies of the label maps laid back to back in `host`."""
    flat = host.view(np.uint8, (sum(h * w for h, w in sizes),))
    out, offset = [], 0
    for h, w in sizes:
        out.append(flat[offset:offset + h * w].reshape(h, w).copy())
        offset += h * w
    return out


def split_images(host: PinnedBuffer, offsets: Sequence[int], sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Copies of the HxWx3 uint8 images at `offsets` in `host`."""
    placed = list(zip(offsets, sizes))
    flat = host.view(np.uint8, (max(offset + 3 * h * w for offset, (h, w) in placed),))
    return [flat[offset:offset + 3 * h * w].reshape(h, w, 3).copy() for offset, (h, w) in placed]

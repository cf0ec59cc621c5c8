"""Host and device buffers of the GPU runtime: pinned blocks for staged images (pooled), buffers that
grow with the largest batch, and the back-to-back layouts of a batch's images and labels."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

import numpy as np

from ..cuda import DeviceBuffer, PinnedBuffer, Stream

Block = TypeVar("Block", DeviceBuffer, PinnedBuffer)


class Growable:
    """A device buffer and, when asked for, its pinned twin, reallocated only when a batch needs more."""

    def __init__(self, pinned: bool = True) -> None:
        self.pinned = pinned
        self.device: DeviceBuffer | None = None
        self.host: PinnedBuffer | None = None

    def ensure(self, nbytes: int) -> DeviceBuffer:
        if self.device is None or self.device.nbytes < nbytes or (self.pinned and self.host is None):
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


class BlockPool(Generic[Block]):
    """Blocks (pinned host or device memory) handed out and taken back once what was queued on them is
    done, so threads copy into them without allocating (which is slow and serializes) for every image or
    frame. The pool holds at most as many blocks as were ever out at once; closing it frees the blocks
    it holds, and a block given back after that is freed then (a frame still in a batch in flight)."""

    def __init__(self, allocate: Callable[[int], Block]) -> None:
        self._allocate: Callable[[int], Block] = allocate
        self._lock = threading.Lock()
        self._free: list[Block] = []
        self._closed = False

    def take(self, nbytes: int) -> Block:
        with self._lock:
            fitting = [b for b in self._free if nbytes <= b.nbytes <= 2 * nbytes]
            if fitting:
                block = min(fitting, key=lambda b: b.nbytes)
                self._free.remove(block)
                return block
        return self._allocate(nbytes)

    def give(self, block: Block) -> None:
        with self._lock:
            if not self._closed:
                self._free.append(block)
                return
        block.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for block in free:
            block.close()


class PinnedPool(BlockPool[PinnedBuffer]):
    """Pinned host blocks for staged images."""

    def __init__(self) -> None:
        super().__init__(PinnedBuffer)


class StagedImage:
    """A BGR uint8 image copied into a pinned block, ready for an asynchronous upload; the block goes
    back to its pool when the staged image is dropped (after its batch was collected)."""

    def __init__(self, image: np.ndarray, pool: PinnedPool) -> None:
        self.height, self.width = image.shape[0], image.shape[1]
        self.nbytes = image.nbytes
        self.block = pool.take(image.nbytes)
        self.block.view(np.uint8, image.shape)[:] = image
        weakref.finalize(self, pool.give, self.block)


@dataclass(frozen=True)
class Colour:
    """How a video's YUV samples map to RGB: the matrix (`bt601` or `bt709`) and whether the samples use
    the full 0-255 range (JPEG range) or the limited 16-235 one (MPEG range, most video)."""

    matrix: str = "bt709"
    full_range: bool = False


class Nv12Frame:
    """A video frame the GPU's video decoder decoded: NV12 (the Y plane, then the U and V samples
    interleaved at half resolution; rows `width` bytes apart) in a pooled device block, with the colour
    rules of its stream. The pipeline converts it to BGR on the GPU; the block goes back to its pool when
    the frame is dropped (after its batch was collected)."""

    def __init__(self, block: DeviceBuffer, height: int, width: int, colour: Colour, pool: BlockPool[DeviceBuffer]) -> None:
        self.block, self.height, self.width, self.colour = block, height, width, colour
        self.nbytes = height * width * 3  # as BGR, in the pipeline's image buffer
        weakref.finalize(self, pool.give, block)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def nv12_nbytes(self) -> int:
        return self.height * self.width * 3 // 2

    def nv12(self, stream: Stream) -> np.ndarray:
        """The NV12 bytes copied back, as a (height * 3 / 2) x width array (tests compare them)."""
        with PinnedBuffer(self.nv12_nbytes) as host:
            stream.copy_to_host(host, self.block, self.nv12_nbytes)
            stream.synchronize()
            return host.view(np.uint8, (self.height * 3 // 2, self.width)).copy()


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
    """Copies of the 2-D uint8 arrays of `sizes` (label maps; I420 frames, h*3/2 x w) laid back to back in `host`."""
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

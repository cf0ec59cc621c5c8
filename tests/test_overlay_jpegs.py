"""The overlay encoder's queue (runtime/overlay_jpegs.py) on the CPU: every overlay of every batch gets its
own JPEG in order, an overlay the encoder cannot take fails alone, and no writer is left waiting. The
encoder here stands in for nvImageCodec, which needs a GPU (tests/gpu/test_gpu_runtime.py runs the real
one); what is tested is the queue around it."""

from __future__ import annotations

import threading

import pytest

from deploy_kit.errors import InputImageError
from deploy_kit.runtime.overlay_jpegs import JpegOverlays


class HostContext:
    """No CUDA context to make current: the buffers below are host objects."""

    def make_current(self) -> None:
        pass


class Buffer:
    def __init__(self, ptr: int) -> None:
        self.ptr, self.nbytes, self.closed = ptr, 1 << 20, False

    def close(self) -> None:
        self.closed = True


class ScriptedEncoder:
    """JPEG bytes named after each image's pointer; `refuse`: pointers it returns None for; `raise_on`:
    pointers whose presence makes the whole call raise, as nvImageCodec does."""

    def __init__(self, refuse: set[int] = frozenset(), raise_on: set[int] = frozenset(), hold: threading.Event | None = None) -> None:
        self.refuse, self.raise_on, self.hold = set(refuse), set(raise_on), hold
        self.calls: list[int] = []

    def encode(self, images: list[tuple[int, int, int]]) -> list[bytes | None]:
        if self.hold is not None:
            self.hold.wait(10)
        self.calls.append(len(images))
        if any(ptr in self.raise_on for ptr, _, _ in images):
            raise RuntimeError("nvImageCodec: encoding failed")
        return [None if ptr in self.refuse else b"jpeg@%d %dx%d" % (ptr, h, w) for ptr, h, w in images]


def _overlays(encoder: ScriptedEncoder, batches: list[tuple[Buffer, list[int]]]) -> list[list]:
    jpegs = JpegOverlays(encoder, HostContext())  # type: ignore[arg-type]
    try:
        return [jpegs.encode(buffer, offsets, [(2, 3)] * len(offsets)) for buffer, offsets in batches]  # type: ignore[arg-type]
    finally:
        jpegs.close()  # encodes what was handed over first


def test_each_overlay_gets_its_own_jpeg_in_order_and_waiting_batches_share_a_call():
    hold = threading.Event()
    encoder = ScriptedEncoder(hold=hold)
    jpegs = JpegOverlays(encoder, HostContext(), most=8)  # type: ignore[arg-type]
    buffers = [Buffer(1000 * k) for k in range(1, 5)]
    futures = [jpegs.encode(b, [0, 10], [(2, 3), (2, 3)]) for b in buffers]  # type: ignore[arg-type]
    hold.set()
    jpegs.close()
    assert [[f.result() for f in batch] for batch in futures] == [
        [b"jpeg@%d 2x3" % (1000 * k), b"jpeg@%d 2x3" % (1000 * k + 10)] for k in range(1, 5)]
    assert sum(encoder.calls) == 8 and len(encoder.calls) < 4  # batches that waited went in one call
    assert all(b.closed for b in buffers)  # back to the pool, freed when it closed


def test_an_overlay_the_encoder_cannot_take_fails_alone():
    encoder = ScriptedEncoder(refuse={2005}, raise_on={3010})
    batches = _overlays(encoder, [(Buffer(1000), [0]), (Buffer(2000), [0, 5]), (Buffer(3000), [0, 10, 20])])
    outcomes = [[f.exception() or f.result() for f in batch] for batch in batches]
    assert outcomes[0] == [b"jpeg@1000 2x3"]
    assert outcomes[1][0] == b"jpeg@2000 2x3" and isinstance(outcomes[1][1], InputImageError)
    assert "refused" in str(outcomes[1][1])
    assert outcomes[2][0] == b"jpeg@3000 2x3" and outcomes[2][2] == b"jpeg@3020 2x3"
    assert isinstance(outcomes[2][1], InputImageError) and "encoding failed" in str(outcomes[2][1])


def test_fewer_results_than_images_never_leave_a_writer_waiting():
    class Short(ScriptedEncoder):
        def encode(self, images):  # type: ignore[no-untyped-def]
            return super().encode(images)[:1]

    batch = _overlays(Short(), [(Buffer(1000), [0, 10, 20])])[0]
    assert batch[0].result(timeout=5) == b"jpeg@1000 2x3"
    for future in batch[1:]:
        with pytest.raises(InputImageError, match="no result"):
            future.result(timeout=5)

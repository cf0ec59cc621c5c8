"""JPEG decoding and encoding in device memory with nvImageCodec, when it is installed
(`pip install 'deploy-kit[cuda]'`).

Decoding uses the GPU's hardware JPEG engine (NVJPG, nvImageCodec's `HW_GPU_ONLY` backend) only: it
decodes a 1024x2048 JPEG in 0.2 ms and differs from cv2.imread by at most one grey level (labels
≥ 99.99% identical), where nvJPEG's hybrid CUDA decoder differs by up to three (99.85%). Encoding makes
the overlay leave the GPU as a few hundred KB of JPEG instead of 6 MB of pixels.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .images import OVERLAY_JPEG_QUALITY

log = logging.getLogger(__name__)


class _DeviceImage:
    """A uint8 HxWx3 image in device memory, as the CUDA array interface describes it."""

    def __init__(self, ptr: int, height: int, width: int) -> None:
        self.__cuda_array_interface__ = {"shape": (height, width, 3), "typestr": "|u1", "data": (ptr, False),
                                         "version": 3, "strides": None}


class GpuJpegEncoder:
    def __init__(self, nvimgcodec: Any, device: int, quality: int = OVERLAY_JPEG_QUALITY) -> None:
        self._codec = nvimgcodec
        self._encoder = nvimgcodec.Encoder(device_id=device)
        # 4:2:0 at the given quality, as cv2.imencode writes the CPU path's overlays
        self._params = nvimgcodec.EncodeParams(quality_type=nvimgcodec.QualityType.QUALITY, quality_value=quality,
                                               chroma_subsampling=nvimgcodec.ChromaSubsampling.CSS_420)

    def encode(self, images: Sequence[tuple[int, int, int]]) -> list[bytes | None]:
        """BGR images in device memory (pointer, height, width; their writes complete) as JPEG bytes, in
        one call; None for one the encoder refused. One call for many: nvImageCodec takes the GIL back
        several times per call, and where other threads hold it each time costs a switch interval (13 ms
        per 1024x2048 image next to one busy Python thread, 3.6 ms per image in calls of 8; H200)."""
        views = [self._codec.as_image(_DeviceImage(*image), sample_format=self._codec.I_BGR) for image in images]
        encoded = self._encoder.encode(views, "jpeg", params=self._params)
        return [bytes(jpeg) if jpeg is not None else None for jpeg in encoded]


@dataclass(frozen=True)
class DecodedImage:
    """A BGR uint8 HxWx3 image in device memory, rows packed, owned by `keep` (nvImageCodec's Image),
    written by work on the CUDA stream `stream` (0: already written)."""

    ptr: int
    height: int
    width: int
    stream: int
    keep: Any


class GpuJpegDecoder:
    """Batches of JPEG bytes decoded by the GPU's hardware JPEG decoder into BGR device images."""

    def __init__(self, nvimgcodec: Any, device: int) -> None:
        self._codec = nvimgcodec
        self._decoder = nvimgcodec.Decoder(device_id=device,
                                           backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
        self._params = nvimgcodec.DecodeParams(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB,
                                               allow_any_depth=False, sample_format=nvimgcodec.I_BGR)

    def decode(self, jpegs: Sequence[bytes], stream_ptr: int) -> list[DecodedImage | None]:
        """Each JPEG decoded in device memory, after the work queued so far on `stream_ptr`; None where the
        decoder refused it (the caller decodes those on the CPU). A reader waits for its `stream` first:
        the decoder writes on streams of its own (measured: a copy queued on `stream_ptr` right after
        this call read the image half-written). The call blocks until `stream_ptr`'s earlier work is done."""
        streams = [self._codec.CodeStream(data) for data in jpegs]
        images = self._decoder.decode(streams, params=self._params, cuda_stream=stream_ptr)
        return [_decoded(image) if image is not None else None for image in images]


def _decoded(image: Any) -> DecodedImage | None:
    interface = image.__cuda_array_interface__
    height, width, channels = interface["shape"]
    if channels != 3 or interface.get("strides") not in (None, (width * 3, 3, 1)):
        return None
    return DecodedImage(int(interface["data"][0]), int(height), int(width), int(interface.get("stream") or 0), image)


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Silences what native code prints to stdout/stderr meanwhile (nvImageCodec lists every codec library
    it did not find, nvTIFF and nvJPEG2000 among them, when it loads); shown with -v."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@functools.cache
def load_nvimgcodec() -> tuple[Any | None, str]:
    """nvImageCodec's module, or None and why it is not there."""
    try:
        with _quiet_native_output():
            from nvidia import nvimgcodec
    except ImportError:
        return None, "nvImageCodec is not installed (pip install 'deploy-kit[cuda]')"
    except OSError as exc:  # installed, but its CUDA libraries do not load (a CUDA 13 build on a CUDA 12 driver)
        return None, f"nvImageCodec does not load here ({exc})"
    return nvimgcodec, f"nvImageCodec {nvimgcodec.__version__}"


def gpu_jpeg_encoder(device: int) -> GpuJpegEncoder | None:
    """nvImageCodec's encoder, or None when it is not installed or cannot start (overlays are then
    downloaded and encoded by OpenCV on the CPU)."""
    codec, why = load_nvimgcodec()
    if codec is None:
        log.info("%s; overlays are encoded on the CPU", why)
        return None
    try:
        return GpuJpegEncoder(codec, device)
    except RuntimeError as exc:  # nvImageCodec reports a missing nvJPEG or CUDA failure as RuntimeError
        log.warning("nvImageCodec cannot encode JPEGs here (%s); overlays are encoded on the CPU", exc)
        return None


def gpu_jpeg_decoder(device: int) -> tuple[GpuJpegDecoder | None, str]:
    """The hardware JPEG decoder of CUDA device `device` and what it is, or None and why not: it decodes
    a small JPEG first, since a GPU without a JPEG engine (most GeForce and RTX cards) refuses only then."""
    codec, why = load_nvimgcodec()
    if codec is None:
        return None, why
    try:
        with _quiet_native_output():
            decoder = GpuJpegDecoder(codec, device)
            probe = decoder.decode([_PROBE_JPEG], 0)[0]
    except RuntimeError as exc:
        return None, f"nvImageCodec cannot start its hardware decoder here ({exc})"
    if probe is None:
        return None, "this GPU has no hardware JPEG decoder (NVJPG)"
    return decoder, f"the GPU's hardware JPEG decoder ({why})"


def _probe_jpeg() -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    assert ok
    return data.tobytes()


_PROBE_JPEG = _probe_jpeg()

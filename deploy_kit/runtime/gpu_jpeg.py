"""JPEG encoding of images in device memory with nvImageCodec (nvJPEG's CUDA encoder), when it is
installed (`pip install 'deploy-kit[cuda]'`): the overlay leaves the GPU as a few hundred KB of JPEG
instead of 6 MB of pixels, and no CPU thread spends ~10 ms encoding it."""

from __future__ import annotations

import logging
from typing import Any

from ..images import OVERLAY_JPEG_QUALITY

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

    def encode(self, ptr: int, height: int, width: int) -> bytes:
        """A BGR image in device memory (its writes complete) as JPEG bytes."""
        image = self._codec.as_image(_DeviceImage(ptr, height, width), sample_format=self._codec.I_BGR)
        return bytes(self._encoder.encode(image, "jpeg", params=self._params))


def gpu_jpeg_encoder(device: int) -> GpuJpegEncoder | None:
    """nvImageCodec's encoder, or None when it is not installed or cannot start (overlays are then
    downloaded and encoded by OpenCV on the CPU)."""
    try:
        from nvidia import nvimgcodec
    except ImportError:
        return None
    except OSError as exc:  # installed, but its CUDA libraries do not load (e.g. a CUDA 13 build on a CUDA 12 driver)
        log.warning("nvImageCodec does not load here (%s); overlays are encoded on the CPU", exc)
        return None
    try:
        return GpuJpegEncoder(nvimgcodec, device)
    except RuntimeError as exc:  # nvImageCodec reports a missing nvJPEG or CUDA failure as RuntimeError
        log.warning("nvImageCodec cannot encode JPEGs here (%s); overlays are encoded on the CPU", exc)
        return None

"""JPEG bytes decoded straight into a packed device buffer of images, shared by the GPU pipeline and
Triton's preprocessing model."""

from __future__ import annotations

from typing import Any, Sequence

from ..cuda import DeviceBuffer, Stream
from ..errors import ConfigError, DeployKitError
from ..gpu_jpeg import GpuJpegDecoder
from ..images import EncodedImage, decode_image
from .buffers import PinnedPool, StagedImage


def decode_jpegs_into(decoder: GpuJpegDecoder, stream: Stream, pool: PinnedPool, jpegs: Sequence[tuple[int, EncodedImage]],
                      offsets: Sequence[int], images: DeviceBuffer,
                      decode_stream: Stream | None = None) -> tuple[list[Any], dict[int, DeployKitError]]:
    """The (index, JPEG) pairs decoded by the hardware decoder into `images` at `offsets[index]`, queued on
    `stream`; one it refuses is decoded on the CPU as `read_image` would. Returns what the queued copies
    read from (hold it until `stream` is past them) and the errors of those that fail there too, by index.
    `decode_stream`: where the decoder starts, when not after the work queued so far on `stream`."""
    keep: list[Any] = []
    failed: dict[int, DeployKitError] = {}
    if not jpegs:
        return keep, failed
    decoded = decoder.decode([jpeg.data for _, jpeg in jpegs], (decode_stream or stream).ptr)
    if decode_stream is not None:
        stream.wait_for_stream(decode_stream.ptr)
    for other in {image.stream for image in decoded if image is not None and image.stream}:
        stream.wait_for_stream(other)
    for (k, jpeg), image in zip(jpegs, decoded):
        if image is not None and (image.height, image.width) == (jpeg.height, jpeg.width):
            stream.copy_device(images.ptr + offsets[k], image.ptr, jpeg.nbytes)
            keep.append(image)
            continue
        try:
            fallback = StagedImage(decode_image(jpeg, jpeg.source), pool)
        except DeployKitError as exc:
            failed[k] = exc
            continue
        if (fallback.height, fallback.width) != (jpeg.height, jpeg.width):  # cv2 applied an EXIF rotation
            failed[k] = ConfigError("the JPEG decodes to another size than its header says",
                                    path=jpeg.source, hint="use --decoder cpu")
            continue
        stream.copy_to_device(images, fallback.block, fallback.nbytes, dst_offset=offsets[k])
        keep.append(fallback)
    return keep, failed

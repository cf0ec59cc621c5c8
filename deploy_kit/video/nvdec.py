"""Video files decoded by the GPU's video engines (NVDEC) through PyNvVideoCodec, straight into device
memory as NV12; the pipeline converts each frame to BGR on the GPU with its stream's colour rules and
preprocesses (and blends the overlay on) the same device image, so no frame crosses to the host.

Each file source gets a decoder session of its own on its reader thread, so several files decode at
once on the GPU's several NVDEC engines. PyNvVideoCodec reuses its output surfaces on the next decode
call, so every frame is copied into a pooled device block first (a device-to-device copy, 3 MB for
1080p). What NVDEC does not take (another codec, 10-bit or 4:2:2/4:4:4 samples, odd sides) is decoded by
PyAV on the CPU, or fails alone with `--decoder gpu`."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

from ..cuda import CudaContext, DeviceBuffer, Stream
from ..errors import ConfigError, SourceError
from ..runtime.buffers import BlockPool, Colour, Nv12Frame
from .colour import stream_colour

NVDEC_CODECS = {"h264", "hevc", "av1", "vp9"}  # FFmpeg's names; what NVDEC decodes on every GPU since Ampere
NVDEC_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}  # 8-bit 4:2:0, which NVDEC gives as NV12


@dataclass(frozen=True)
class VideoInfo:
    """What PyAV reads from a file's first video stream, before any frame is decoded."""

    codec: str
    pix_fmt: str
    height: int
    width: int
    colour: Colour
    time_base: Fraction | None

    @classmethod
    def of(cls, stream: Any) -> VideoInfo:
        context = stream.codec_context
        pix_fmt = context.pix_fmt or ""
        height, width = int(context.height), int(context.width)
        colour = stream_colour(getattr(context, "colorspace", None), getattr(context, "color_range", None), pix_fmt,
                               height)
        return cls(context.name, pix_fmt, height, width, colour, stream.time_base)

    def nvdec_refusal(self) -> str | None:
        """Why NVDEC does not decode this stream here, or None."""
        if self.codec not in NVDEC_CODECS:
            return f"its codec {self.codec} is not one NVDEC decodes here ({', '.join(sorted(NVDEC_CODECS))})"
        if self.pix_fmt not in NVDEC_PIXEL_FORMATS:
            return f"its samples are {self.pix_fmt or 'unknown'}, not 8-bit 4:2:0"
        if self.height % 2 or self.width % 2:
            return f"its frames are {self.width}x{self.height}, not of even sides"
        return None


def load_pynvvideocodec() -> Any:
    """PyNvVideoCodec, or a ConfigError saying how to get it."""
    try:
        import PyNvVideoCodec
    except Exception as exc:  # not installed, or no libnvcuvid in the driver (no video capability)
        raise ConfigError(f"no NVDEC video decoding: PyNvVideoCodec does not load ({' '.join(str(exc).split())[:160]})",
                          hint="pip install 'deploy-kit[video]', and give the container the driver's video "
                          "capability (NVIDIA_DRIVER_CAPABILITIES=compute,utility,video); or use --decoder cpu")
    return PyNvVideoCodec


class Nvdec:
    """The GPU's video decoders for one device context (the segmenter's); `frames` decodes one file."""

    def __init__(self, context: CudaContext) -> None:
        self.nvc = load_pynvvideocodec()
        self.context = context
        self.pool: BlockPool[DeviceBuffer] = BlockPool(DeviceBuffer)

    def engines(self, path: str) -> int | None:
        """NVDEC engines on this GPU for the file's codec, as the driver reports them (None: not reported)."""
        try:
            demuxer = self.nvc.CreateDemuxer(filename=path)
            caps = self.nvc.GetDecoderCaps(gpuid=self.context.index, codec=demuxer.GetNvCodecId(),
                                           chromaformat=demuxer.ChromaFormat(), bitdepth=demuxer.BitDepth())
            return int(caps["num_decoder_engines"]) if "num_decoder_engines" in caps else None
        except Exception:  # a driver without the query: the count is only reported
            return None

    def frames(self, path: str, info: VideoInfo) -> Iterator[tuple[float | None, Nv12Frame]]:
        """(presentation time in seconds, frame) of every frame of the file, in display order; the
        library's errors become a SourceError naming the file."""
        self.context.make_current()
        with Stream() as stream:
            try:
                demuxer = self.nvc.CreateDemuxer(filename=path)
                decoder = self.nvc.CreateDecoder(gpuid=self.context.index, codec=demuxer.GetNvCodecId(),
                                                 cudacontext=int(self.context.context), cudastream=stream.ptr,
                                                 usedevicememory=True)
            except Exception as exc:
                raise _nvdec_error("NVDEC cannot open the video", path, exc) from None
            for packet in _packets(demuxer, path):
                try:
                    decoded = decoder.Decode(packet)
                    copies = [(frame.getPTS(), self._copy(frame, info, stream)) for frame in decoded]
                except SourceError:
                    raise
                except Exception as exc:
                    raise _nvdec_error("NVDEC failed on the video", path, exc) from None
                stream.synchronize()  # the copies are done before the decoder reuses its surfaces
                for pts, frame in copies:
                    yield (float(pts * info.time_base) if info.time_base and pts is not None and pts >= 0 else None), frame

    def _copy(self, frame: Any, info: VideoInfo, stream: Stream) -> Nv12Frame:
        shape, strides = tuple(int(v) for v in frame.shape), tuple(int(v) for v in frame.strides)
        height, width = info.height, info.width
        if shape[:2] != (height * 3 // 2, width) or strides[:2] != (width, 1):
            raise SourceError(f"NVDEC gave a frame of shape {shape} (strides {strides}), not packed NV12 of "
                              f"{width}x{height}", hint="use --decoder cpu")
        block = self.pool.take(height * width * 3 // 2)
        stream.copy_device(block.ptr, int(frame.GetPtrToPlane(0)), height * width)
        stream.copy_device(block.ptr + height * width, int(frame.GetPtrToPlane(1)), height * width // 2)
        return Nv12Frame(block, height, width, info.colour, self.pool)

    def close(self) -> None:
        self.pool.close()


def _packets(demuxer: Any, path: str) -> Iterator[Any]:
    iterator = iter(demuxer)
    while True:
        try:
            packet = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _nvdec_error("cannot read the video", path, exc) from None
        yield packet


def _nvdec_error(what: str, path: str, exc: BaseException) -> SourceError:
    return SourceError(what, path=path, note=" ".join(str(exc).split())[:200],
                       hint="check that the file is whole, or use --decoder cpu")

"""What `infer` writes for each video source, under `-o out/`: `<name>_overlay.mp4` (H.264: the GPU's
NVENC where it has one, else PyAV's libx264; the source's frame times, playable in browsers),
`<name>_background.mp4` (a two-class model's foreground over a replacement background), and the label
maps as palette PNGs (`<name>/000000.png`, named by frame index) or as one lossless grey video whose
pixel values are class ids (`<name>_labels.mkv`, FFV1). Videos are written under a temporary name and
renamed when closed, so an interrupted run leaves whole, playable files (`close` runs on Ctrl-C too).
Each source's outputs are written on a thread of its own, in frame order, so encoding overlaps inference."""

from __future__ import annotations

import functools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..images import write_label_png
from .sources import VideoFrame

LABEL_OUTPUTS = ("png", "video", "none")
_TIME_BASE = Fraction(1, 90_000)  # MPEG's clock: frame times in seconds keep their precision
_SMPTE170M, _MPEG_RANGE = 6, 1  # FFmpeg's AVColorSpace (BT.601) and AVColorRange (limited) values


@dataclass(frozen=True)
class SinkOptions:
    overlay: bool = False
    labels: str = "png"  # LABEL_OUTPUTS
    background: np.ndarray | None = None  # BGR; replaces class 0 of a two-class model
    fps: float = 30.0  # for sources that do not say (live streams)


def parse_background(text: str) -> np.ndarray:
    """`--background`: an image file, or a colour as #RRGGBB or R,G,B."""
    if Path(text).is_file():
        image = cv2.imread(text, cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError("the background is not an image OpenCV reads", path=text)
        return image
    hex_colour = text.lstrip("#")
    try:
        rgb = ([int(hex_colour[i:i + 2], 16) for i in (0, 2, 4)] if len(hex_colour) == 6 and "," not in text
               else [int(v) for v in text.split(",")])
    except ValueError:
        rgb = []
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ConfigError(f"bad --background {text!r}", hint="give an image file, #RRGGBB or R,G,B")
    return np.array(rgb[::-1], np.uint8).reshape(1, 1, 3)


class _VideoWriter:
    """One video stream written with PyAV to `path` (through a temporary name)."""

    def __init__(self, path: Path, codec: str, pix_fmt: str, width: int, height: int, fps: float,
                 options: dict[str, object] | None = None) -> None:
        import av

        self.path, self._partial = path, path.with_name(f".{path.name}.partial{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._partial), "w")
        stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt, stream.time_base = width, height, pix_fmt, _TIME_BASE
        stream.codec_context.time_base = _TIME_BASE  # a live source's frames arrive at any time, not on 1/fps steps
        stream.options = options or {}
        if pix_fmt.startswith("yuv"):
            # PyAV turns BGR frames into YUV as swscale does by default: BT.601 at limited range. Tagged so,
            # players convert back with that matrix (untagged HD video is taken for BT.709, a colour shift).
            stream.codec_context.colorspace, stream.codec_context.color_range = _SMPTE170M, _MPEG_RANGE
        stream.codec_context.thread_type = "AUTO"  # frame threads: 1.26x libx264's 1080p speed on 2 cores
        self._stream = stream
        self._format = "gray" if pix_fmt == "gray" else "bgr24"
        self._last_pts = -1

    def write(self, image: np.ndarray, seconds: float) -> None:
        """One frame: pixels in the stream's format (grey or BGR), or I420 planes (h*3/2 x w) for a
        4:2:0 stream, which the encoder takes without a conversion."""
        import av

        i420 = image.ndim == 2 and self._format != "gray"
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p" if i420 else self._format)
        frame.pts = max(self._last_pts + 1, round(seconds / _TIME_BASE))  # strictly increasing, as muxers need
        frame.time_base = _TIME_BASE
        self._last_pts = frame.pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._partial, self.path)


@functools.cache
def h264_encoder() -> str:
    """FFmpeg's `h264_nvenc` where it opens (GPUs with an NVENC engine: RTX, L4, ...; not the H100, H200
    or A100, and not Jetson, whose encoder FFmpeg's NVENC does not drive), else `libx264` on the CPU."""
    import av

    try:
        context = av.CodecContext.create("h264_nvenc", "w")
        assert isinstance(context, av.VideoCodecContext)
        context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
        context.time_base = Fraction(1, 25)
        context.open()
        context.encode(av.VideoFrame(256, 256, "yuv420p"))
        context.encode(None)
    except (av.FFmpegError, ValueError, OSError):  # no driver, no engine, or a build without it
        return "libx264"
    return "h264_nvenc"


_H264_OPTIONS = {"libx264": {"crf": "20", "preset": "veryfast"}, "h264_nvenc": {"preset": "p4", "rc": "vbr", "cq": "20"}}


class VideoSink:
    """The outputs of one source, opened with its first frame."""

    _QUEUED = 8  # frames waiting for the writer thread: bounds memory (a 1080p frame's overlay is 3-6 MB)

    def __init__(self, out: Path, name: str, options: SinkOptions, fps: float | None) -> None:
        self.out, self.name, self.options, self.fps = out, name, options, fps or options.fps
        self._writers: dict[str, _VideoWriter] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"deploy-kit-sink-{name}")
        self._queued: deque[Future[None]] = deque()

    def write(self, frame: VideoFrame, labels: np.ndarray, overlay: np.ndarray | None = None) -> None:
        """Queues one frame's outputs on the sink's thread; `overlay` (BGR, or I420 planes) is required
        when the options ask for the overlay video. A write that failed raises here or at `close`."""
        while len(self._queued) >= self._QUEUED or (self._queued and self._queued[0].done()):
            self._queued.popleft().result()
        self._queued.append(self._thread.submit(self._write, frame, labels, overlay))

    def _write(self, frame: VideoFrame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        height, width = labels.shape
        if self.options.overlay:
            assert overlay is not None, "the overlay video needs each frame's overlay"
            self._writer("overlay", height, width).write(overlay, frame.time)
        if self.options.background is not None:
            image = frame.image
            assert isinstance(image, np.ndarray), "background replacement needs frames decoded on the CPU"
            background = np.broadcast_to(self.options.background, image.shape) if self.options.background.shape[:2] \
                == (1, 1) else cv2.resize(self.options.background, (width, height))
            self._writer("background", height, width).write(np.where(labels[..., None] > 0, image, background),
                                                            frame.time)
        if self.options.labels == "png":
            write_label_png(self.out / self.name / f"{frame.index:06d}.png", labels)
        elif self.options.labels == "video":
            self._writer("labels", height, width).write(labels, frame.time)

    def _writer(self, kind: str, height: int, width: int) -> _VideoWriter:
        if kind not in self._writers:
            if kind == "labels":  # lossless: the class ids come back exactly
                writer = _VideoWriter(self.out / f"{self.name}_labels.mkv", "ffv1", "gray", width, height, self.fps)
            else:  # 4:2:0 plays everywhere but needs even sides; odd-sized frames keep full chroma (libx264)
                even = width % 2 == 0 and height % 2 == 0
                codec = h264_encoder() if even else "libx264"
                writer = _VideoWriter(self.out / f"{self.name}_{kind}.mp4", codec, "yuv420p" if even else "yuv444p",
                                      width, height, self.fps, dict(_H264_OPTIONS[codec]))
            self._writers[kind] = writer
        return self._writers[kind]

    @property
    def paths(self) -> list[Path]:
        return [writer.path for writer in self._writers.values()]

    def close(self) -> None:
        """Finishes the queued frames and closes every video (also after a failed write)."""
        try:
            while self._queued:
                self._queued.popleft().result()
        finally:
            self._thread.shutdown(wait=True)
            for writer in self._writers.values():
                writer.close()
            self._writers = {}


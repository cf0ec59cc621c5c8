"""Where video frames come from: files (every frame, in order, `stride` to take every Nth) and live
sources (rtsp/rtmp/http(s) streams, MJPEG over HTTP, cameras), decoded by PyAV (FFmpeg) on the CPU, or
files by the GPU's NVDEC engines when an `Nvdec` is given (video/nvdec.py).

Each source is read on a thread of its own into a bounded queue: a file's reader waits for the
segmenter (no frame is lost); a live source's keeps only the newest frame (stale ones are dropped and
counted, so latency stays bounded), reconnects with backoff when the source drops, and ends after
`reconnect_timeout` seconds without a frame.
"""

from __future__ import annotations

import collections
import itertools
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import SourceError
from ..runtime.buffers import Nv12Frame
from .colour import bgr24
from .nvdec import Nvdec, VideoInfo

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts"}
LIVE_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame and where it came from: its source's name, index in the source, time in seconds."""

    source: str
    index: int
    time: float
    image: np.ndarray | Nv12Frame  # BGR uint8 HxWx3 (PyAV), or NV12 on the GPU (NVDEC)
    arrived: float = 0.0  # time.monotonic() when it was decoded: where a live frame's latency starts


@dataclass
class SourceCounts:
    decoded: int = 0
    dropped: int = 0  # live frames replaced by newer ones before the segmenter took them (by design)
    errors: list[str] = field(default_factory=list)


def is_video_input(item: str) -> bool:
    """Whether an `infer` input names a video source rather than images."""
    return (item.startswith(LIVE_SCHEMES) or item.isdigit() or item.startswith("/dev/video")
            or Path(item).suffix.lower() in VIDEO_SUFFIXES or Path(item).suffix.lower() == ".txt")


def expand_video_inputs(items: list[str]) -> tuple[list[str], list[SourceError]]:
    """Sources named directly or listed one per line in .txt files (blank lines and # comments skipped)."""
    sources: list[str] = []
    errors: list[SourceError] = []
    for item in items:
        if Path(item).suffix.lower() != ".txt":
            sources.append(item)
            continue
        try:
            lines = Path(item).read_text().splitlines()
        except OSError as exc:
            errors.append(SourceError("cannot read the list of sources", path=item, note=exc.strerror))
            continue
        sources += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return sources, errors


def is_live(source: str) -> bool:
    return source.startswith(LIVE_SCHEMES) or source.isdigit() or source.startswith("/dev/video")


def source_name(source: str) -> str:
    """A file-name-safe name for a source's outputs: a file's stem, a camera's `camera0`, a URL's host and path."""
    if source.isdigit():
        return f"camera{source}"
    if source.startswith("/dev/video"):
        return f"camera{source[len('/dev/video'):]}"
    if source.startswith(LIVE_SCHEMES):
        return re.sub(r"[^A-Za-z0-9._-]+", "_", source.split("://", 1)[1]).strip("_") or "stream"
    return Path(source).stem


def _open(source: str, open_timeout: float, read_timeout: float) -> Any:
    import av

    if source.isdigit() or source.startswith("/dev/video"):
        device = f"/dev/video{source}" if source.isdigit() else source
        return av.open(device, format="v4l2", timeout=(open_timeout, read_timeout))
    options = {"rtsp_transport": "tcp"} if source.startswith("rtsp://") else {}
    return av.open(source, options=options, timeout=(open_timeout, read_timeout))


def frame_rate(container: Any) -> float | None:
    rate = container.streams.video[0].average_rate if container.streams.video else None
    return float(rate) if rate else None


def decoded_frames(container: Any) -> Iterator[tuple[float | None, np.ndarray]]:
    """(time, BGR image) of every frame of the first video stream, converted with the stream's colour
    rules and turned upright as players show it; FFmpeg's errors (a corrupt or truncated stream) propagate."""
    return upright_images(_decode(container))


def _decode(container: Any) -> Iterator[Any]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # FFmpeg's frame threads: decoding overlaps the rest
    return container.decode(stream)


def upright_images(frames: Iterable[Any]) -> Iterator[tuple[float | None, np.ndarray]]:
    for frame in frames:
        turns = display_turns(frame)
        image = bgr24(frame)
        yield (float(frame.time) if frame.time is not None else None,
               np.ascontiguousarray(np.rot90(image, turns)) if turns else image)


def display_turns(frame: Any) -> int:
    """Quarter turns counter-clockwise that show a PyAV frame the way players do: its display matrix's
    rotation (phones store portrait video as landscape frames with one; its flips are not applied)."""
    return round(frame.rotation / 90) % 4


_END = object()


class SourceReader:
    """A source read on its own thread; `next` gives its frames (None: nothing new yet, _END: over)."""

    def __init__(self, source: str, stride: int = 1, reconnect_timeout: float = 10.0,
                 on_event: Callable[[str], None] = lambda line: None, open_timeout: float = 10.0,
                 name: str | None = None, nvdec: Nvdec | None = None, require_nvdec: bool = False) -> None:
        self.source, self.name, self.live = source, name or source_name(source), is_live(source)
        self.stride, self.reconnect_timeout, self.open_timeout = max(1, stride), reconnect_timeout, open_timeout
        self.on_event = on_event
        self.nvdec, self.require_nvdec = nvdec, require_nvdec
        self.decoder = "PyAV (CPU)"  # what decodes it, once open
        self.counts = SourceCounts()
        self.fps: float | None = None  # what the source declares, once open
        self._frames: queue.Queue[Any] = queue.Queue(maxsize=8)  # a file's read-ahead
        self._newest: collections.deque[Any] = collections.deque(maxlen=1)  # a live source's newest frame
        self._fresh = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"deploy-kit-source-{self.name}", daemon=True)
        self._thread.start()

    def next(self, timeout: float = 0.5) -> Any:
        if not self.live:
            try:
                return self._frames.get(timeout=timeout)
            except queue.Empty:
                return None
        self._fresh.wait(timeout)
        self._fresh.clear()
        try:
            return self._newest.pop()
        except IndexError:
            return _END if not self._thread.is_alive() else None

    def stop(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # a file reader may wait on its full queue
            try:
                self._frames.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)

    def _run(self) -> None:
        try:
            self._read_file() if not self.live else self._read_live()
        finally:
            if not self.live:
                self._put(_END)
            self._fresh.set()

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read_file(self) -> None:
        import av

        index = -1
        try:
            for seconds, image in self._file_frames():
                index += 1
                self.counts.decoded += 1
                if seconds is None:  # no presentation time: its place at the declared rate
                    seconds = index / (self.fps or 30.0)
                if index % self.stride == 0:
                    self._put(VideoFrame(self.name, index, seconds, image, time.monotonic()))
                if self._stop.is_set():
                    return
        except SourceError as exc:
            self._fail(exc.one_line())
        except (av.FFmpegError, OSError) as exc:
            what = "cannot open the video" if index < 0 else f"ended early after {index + 1} frames"
            self._fail(SourceError(what, path=self.source, note=_ffmpeg_note(exc),
                                   hint="check that the file is whole and a video FFmpeg decodes").one_line())

    def _file_frames(self) -> Iterator[tuple[float | None, np.ndarray | Nv12Frame]]:
        """A file's frames: by NVDEC where it takes the stream, else by PyAV."""
        import av

        with av.open(self.source, timeout=(self.open_timeout, self.open_timeout)) as container:
            if not container.streams.video:
                raise SourceError("has no video stream", path=self.source, hint="give a video file")
            self.fps = frame_rate(container)
            frames = _decode(container)
            first = next(frames, None)  # its display rotation is the stream's: NVDEC's frames are not turned
            info = VideoInfo.of(container.streams.video[0])
            refusal = self._nvdec_refusal(info, first)
            if refusal is None:
                self.decoder = "NVDEC (GPU)"
            elif self.require_nvdec:
                raise SourceError(f"--decoder gpu: {refusal}", path=self.source, hint="use --decoder auto or cpu")
            else:
                yield from upright_images(itertools.chain([first] if first is not None else [], frames))
                return
        assert self.nvdec is not None
        yield from self.nvdec.frames(self.source, info)

    def _nvdec_refusal(self, info: VideoInfo, first: Any) -> str | None:
        if self.nvdec is None:
            return "no GPU video decoder"
        if first is not None and display_turns(first):
            return f"shown turned by {display_turns(first) * 90} degrees (NVDEC frames are not turned)"
        return info.nvdec_refusal()

    def _read_live(self) -> None:
        import av

        index, last_frame, backoff = -1, time.monotonic(), 0.5
        ever_opened, started = False, time.monotonic()
        while not self._stop.is_set():
            try:
                with _open(self.source, self.open_timeout, self.open_timeout) as container:
                    if ever_opened:
                        self.on_event(f"warning: {self.source}: reconnected")
                    ever_opened, backoff = True, 0.5
                    self.fps = self.fps or frame_rate(container)
                    for _, image in decoded_frames(container):
                        index += 1
                        self.counts.decoded += 1
                        last_frame = time.monotonic()
                        seconds = last_frame - started  # arrival time: a stream's clock restarts when it reconnects
                        if index % self.stride:
                            continue
                        if self._newest:
                            self.counts.dropped += 1  # the segmenter had not taken the previous one
                        self._newest.append(VideoFrame(self.name, index, seconds, image, last_frame))
                        self._fresh.set()
                        if self._stop.is_set():
                            return
                    note = "the stream ended"
            except (av.FFmpegError, OSError) as exc:
                note = _ffmpeg_note(exc)
            waited = time.monotonic() - last_frame
            if waited >= self.reconnect_timeout:
                what = "no frames" if not ever_opened else "the stream dropped"
                self._fail(SourceError(f"{what} for {waited:.0f} s; giving up", path=self.source, note=note,
                                       hint="check the address or camera, or raise --reconnect-timeout"
                                       ).one_line())
                return
            self.on_event(f"warning: {self.source}: {'cannot open' if not ever_opened else 'dropped'} ({note}); "
                          f"reconnecting in {backoff:.1f} s")
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _fail(self, line: str) -> None:
        self.counts.errors.append(line)
        self.on_event(f"error: {line}")


def _ffmpeg_note(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "strerror", None) or exc).split())[:200]


def interleaved(readers: list[SourceReader]) -> Iterator[VideoFrame]:
    """Frames of every source in turn (one of each per round, as DeepStream's nvstreammux batches them)
    until every source has ended."""
    active = list(readers)
    while active:
        for reader in list(active):
            item = reader.next()
            if item is _END:
                active.remove(reader)
            elif item is not None:
                yield item

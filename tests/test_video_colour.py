"""Video colour on the CPU path: each stream converted with its own matrix and range (tags read, HD/SD
convention for untagged streams), with the standard's chroma siting, so the GPU path (nv12.cu, the same
arithmetic) gives the same pixels: FFmpeg's conversion is checked against the standards' arithmetic."""

from __future__ import annotations

import io

import numpy as np
import pytest

from deploy_kit.runtime.buffers import Colour
from deploy_kit.synthetic import SceneSpec, generate_scene
from deploy_kit.video.colour import bgr24, frame_colour, stream_colour

from .yuv import bgr_of_nv12, i420_of_bgr, nv12_of

av = pytest.importorskip("av", reason="needs PyAV (pip install 'deploy-kit[video]')")


def test_colour_rules_follow_tags_then_the_hd_sd_convention():
    assert stream_colour(1, 1, "yuv420p", 480) == Colour("bt709", False)
    assert stream_colour(6, 2, "yuv420p", 1080) == Colour("bt601", True)
    assert stream_colour(None, None, "yuvj420p", 1080) == Colour("bt709", True)
    assert stream_colour(2, 0, "yuv420p", 720) == Colour("bt709", False)
    assert stream_colour(2, 0, "yuv420p", 576) == Colour("bt601", False)
    assert stream_colour(9, 1, "yuv420p", 2160) == Colour("bt2020", False)


def _frame(height: int, width: int, colorspace: int | None, full_range: bool):
    scene = generate_scene(5, 1, SceneSpec(height, width))[0]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if full_range else "yuv420p"
        if colorspace is not None:
            stream.codec_context.colorspace = colorspace
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(scene, format="bgr24")), *stream.encode()]:
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        return next(container.decode(video=0))


@pytest.mark.parametrize("size,colorspace,full_range,matrix", [
    ((720, 1280), None, False, "bt709"),   # untagged HD
    ((362, 642), None, False, "bt601"),    # untagged SD, sides not multiples of 32
    ((480, 640), 1, False, "bt709"),       # tagged BT.709 at SD size
    ((480, 640), 5, True, "bt601"),        # full range (JPEG range)
])
def test_pyav_frames_convert_with_their_streams_rules(size, colorspace, full_range, matrix):
    frame = _frame(*size, colorspace, full_range)
    colour = frame_colour(frame)
    assert colour == Colour(matrix, full_range)
    ours = bgr24(frame).astype(int)
    standard = bgr_of_nv12(nv12_of(frame), colour).astype(int)
    assert np.abs(ours - standard).max() <= 1
    assert (ours != standard).mean() < 0.01
    if matrix == "bt709":  # FFmpeg alone would have used BT.601: the rule changed the pixels
        assert np.abs(frame.to_ndarray(format="bgr24").astype(int) - ours).max() > 3


def test_the_gpus_i420_arithmetic_is_ffmpegs_bgr_to_yuv420p():
    """overlay.cu's bgr_to_i420 (restated in tests/yuv.py) gives the planes FFmpeg's own conversion of
    the overlay would (within a level): the video is tagged for that conversion either way."""
    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8), 4, axis=0), 4, axis=1)
    ffmpeg = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p").to_ndarray()
    assert np.abs(ffmpeg.astype(int) - i420_of_bgr(image)).max() <= 1


@pytest.mark.parametrize("given", ["bgr", "i420"])
def test_written_videos_say_which_matrix_made_them(tmp_path, given):
    """An overlay mp4 of HD size with saturated colours reads back within 4 levels (H.264 is lossy, the
    limited range quantizes), given BGR (PyAV converts) or I420 planes (as the GPU converts): its stream is
    tagged with the matrix of that conversion (BT.601); untagged, an HD stream is taken for BT.709 and
    the green of this red came back 15 levels off."""
    from deploy_kit.video.sinks import SinkOptions, VideoSink
    from deploy_kit.video.sources import VideoFrame

    av = pytest.importorskip("av", reason="needs PyAV (pip install 'deploy-kit[video]')")
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, :640], image[:, 640:] = (40, 40, 220), (200, 60, 30)
    sink = VideoSink(tmp_path, "flat", SinkOptions(overlay=True, labels="none"), fps=25)
    for index in range(3):
        overlay = image if given == "bgr" else i420_of_bgr(image)
        sink.write(VideoFrame("flat", index, index / 25, image), np.zeros((720, 1280), np.uint8), overlay)
    sink.close()
    with av.open(str(tmp_path / "flat_overlay.mp4")) as container:
        decoded = bgr24(next(container.decode(video=0)))
    for column in (100, 1000):
        assert np.abs(decoded[360, column].astype(int) - image[360, column]).max() <= 4

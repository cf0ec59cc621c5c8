"""`infer` on video sources with ONNX Runtime CPU and a real Paddle-exported model: H.264 and HEVC files
made with PyAV (sizes that are not multiples of 32), every frame in order and equal to
`Segmenter.predict` on PyAV's own decode of it, overlay mp4s PyAV reads back with the right frame count
and times, lossless label videos, a truncated file, a camera that does not exist, and a live MJPEG
stream over HTTP (a local server on 127.0.0.1) that stops for 2 s and comes back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_kit import Segmenter
from deploy_kit.cli import main
from deploy_kit.video.colour import bgr24

from .conftest import require
from .mjpeg import MjpegServer
from .videos import write_test_videos, write_video

av = pytest.importorskip("av", reason="needs PyAV (pip install 'deploy-kit[video]')")


def _decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [bgr24(f) for f in frames], [float(f.time) for f in frames]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    return write_test_videos(tmp_path_factory.mktemp("videos"), h264=((362, 642), 12), hevc=((240, 320), 8))


def _infer(*args: str) -> list[str]:
    return ["infer", *args, "--backend", "onnxruntime-cpu"]


def test_every_frame_in_order_equals_predict_and_the_overlay_plays(onnx_model, videos, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(_infer(str(videos["h264"]), str(videos["hevc"]), "--model", str(onnx_model), "--overlay",
                       "-o", str(out)))
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "video: 2 source(s), 20 frames decoded, 20 segmented" in printed
    with Segmenter(onnx_model, backend="onnxruntime-cpu") as segmenter:
        for path, name in ((videos["h264"], "street"), (videos["hevc"], "street_hevc")):
            frames, times = _decoded(path)
            pngs = sorted((out / name).glob("*.png"))
            assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(len(frames))]
            for png, frame in zip(pngs, frames):
                np.testing.assert_array_equal(np.asarray(Image.open(png)), segmenter.predict(frame)[0])
            overlay, overlay_times = _decoded(out / f"{name}_overlay.mp4")
            assert len(overlay) == len(frames) and overlay[0].shape == frames[0].shape
            assert np.allclose(overlay_times, times, atol=1e-3)
            with av.open(str(out / f"{name}_overlay.mp4")) as container:
                assert container.streams.video[0].codec_context.name == "h264"
                assert float(container.streams.video[0].average_rate) == pytest.approx(25, rel=0.01)
    assert not list(out.glob(".*partial*"))  # every video was finalized under its own name


def test_stride_and_a_lossless_label_video(onnx_model, videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_infer(str(videos["h264"]), "--model", str(onnx_model), "--vid-stride", "3", "--labels", "video",
                       "-o", str(out))) == 0
    assert "12 frames decoded, 4 segmented" in capsys.readouterr().out
    frames, _ = _decoded(videos["h264"])
    labels, _ = _decoded(out / "street_labels.mkv")
    with av.open(str(out / "street_labels.mkv")) as container:
        grey = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    assert len(grey) == len(labels) == 4 and not (out / "street").exists()
    with Segmenter(onnx_model, backend="onnxruntime-cpu") as segmenter:
        for index, label in zip((0, 3, 6, 9), grey):
            np.testing.assert_array_equal(label, segmenter.predict(frames[index])[0])  # class ids, exactly


def test_a_rotated_phone_video_is_segmented_upright(onnx_model, tmp_path, capsys):
    """A display matrix of 90 degrees (PyAV: counter-clockwise, as players turn it): labels and overlay
    come out in the orientation players show, as portrait frames."""
    video = tmp_path / "portrait.mp4"
    write_video(video, "libx264", (362, 642), 4, rotation=90)
    out = tmp_path / "out"
    assert main(_infer(str(video), "--model", str(onnx_model), "--overlay", "-o", str(out))) == 0, capsys.readouterr()
    stored, _ = _decoded(video)
    with Segmenter(onnx_model, backend="onnxruntime-cpu") as segmenter:
        for index, frame in enumerate(stored):
            labels = np.asarray(Image.open(out / "portrait" / f"{index:06d}.png"))
            assert labels.shape == (642, 362)
            np.testing.assert_array_equal(labels, segmenter.predict(np.ascontiguousarray(np.rot90(frame)))[0])
    with av.open(str(out / "portrait_overlay.mp4")) as container:
        assert (container.streams.video[0].height, container.streams.video[0].width) == (642, 362)


def test_a_truncated_file_and_a_missing_camera_fail_alone(onnx_model, videos, tmp_path, capsys):
    out = tmp_path / "out"
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# two good, two bad\n{videos['truncated']}\n/dev/video99\n\n{videos['hevc']}\n")
    code = main(_infer(str(listing), "--model", str(onnx_model), "--reconnect-timeout", "1", "-o", str(out)))
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert code == 1
    assert any("truncated.mp4" in line and ("cannot open" in line or "ended early" in line) for line in errors), errors
    assert any("/dev/video99" in line and "giving up" in line for line in errors), errors
    assert len(list((out / "street_hevc").glob("*.png"))) == 8  # the good source went on


def test_a_live_stream_that_drops_reconnects_and_ends_after_the_timeout(onnx_model, tmp_path, capsys):
    require("av")
    out = tmp_path / "out"
    with MjpegServer() as server:
        def script() -> None:
            time.sleep(2.0)
            server.down_until = time.monotonic() + 2.0  # down for 2 s, then back
            time.sleep(4.0)
            server.stopped.set()  # gone for good: the source ends after --reconnect-timeout

        threading.Thread(target=script, daemon=True).start()
        started = time.monotonic()
        code = main(_infer(server.url, "--model", str(onnx_model), "--reconnect-timeout", "3", "--labels", "none",
                           "--overlay", "-o", str(out)))
        elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 1 and elapsed < 30, captured.err  # ended by the timeout, with its line
    lines = captured.err.splitlines()
    assert any("dropped" in line or "cannot open" in line for line in lines if line.startswith("warning: "))
    assert any("reconnected" in line for line in lines), lines
    assert any("giving up" in line for line in lines if line.startswith("error: ")), lines
    summary = next(line for line in captured.out.splitlines() if line.startswith("video: "))
    segmented = int(summary.split(" segmented")[0].rsplit(" ", 1)[1])
    assert segmented > 10
    overlay, times = _decoded(next(out.glob("*_overlay.mp4")))
    assert len(overlay) == segmented and times == sorted(times)  # what was written plays, in order


def test_background_needs_a_two_class_model(onnx_model, videos, tmp_path, capsys):
    code = main(_infer(str(videos["hevc"]), "--model", str(onnx_model), "--background", "#00ff00",
                       "-o", str(tmp_path)))
    err = capsys.readouterr().err
    assert code == 2 and "--background needs a two-class model" in err


def test_the_python_api_yields_every_frame_with_its_identity(onnx_model, videos):
    from deploy_kit.images import label_overlay
    from deploy_kit.video.run import VideoStream

    frames, times = _decoded(videos["hevc"])
    with Segmenter(onnx_model, backend="onnxruntime-cpu", max_batch=2) as segmenter:
        results = list(VideoStream(segmenter, [str(videos["hevc"])], overlay=True))
        assert [(r.frame.source, r.frame.index) for r in results] == [("street_hevc", i) for i in range(len(frames))]
        assert [r.frame.time for r in results] == pytest.approx(times)
        for result, frame in zip(results, frames):
            np.testing.assert_array_equal(result.frame.image, frame)
            np.testing.assert_array_equal(result.overlay, label_overlay(frame, result.labels))
        stream = VideoStream(segmenter, [str(videos["h264"])])
        for result in stream:
            break  # leaving early stops the reader (the test would hang on a reader blocked on its queue)
        assert not any(reader._thread.is_alive() for reader in stream.readers)

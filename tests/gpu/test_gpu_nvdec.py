"""Video files decoded by the GPU's NVDEC engines (PyNvVideoCodec) into device memory: the NV12 samples
equal PyAV's (H.264/HEVC decoding is exact by specification), nv12.cu converts them as the standards
say, labels agree with the CPU path's (PyAV) on ≥ 99.99% of pixels, several files decode at once in
their own decoder sessions, and a truncated file fails alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploy_kit import Segmenter
from deploy_kit.cli import main
from deploy_kit.cuda import DeviceBuffer, PinnedBuffer
from deploy_kit.errors import ConfigError
from deploy_kit.video.colour import frame_colour
from deploy_kit.video.nvdec import Nvdec, VideoInfo
from deploy_kit.video.run import VideoStream

from ..videos import write_test_videos, write_video
from ..yuv import bgr_of_nv12, i420_of_bgr, nv12_of

av = pytest.importorskip("av", reason="needs PyAV (pip install 'deploy-kit[video]')")
AGREEMENT = 0.9999


@pytest.fixture(scope="module")
def segmenter(gpu, gpu_model):
    from deploy_kit.backends.onnxruntime.cuda import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a working CUDA provider")
    with Segmenter(gpu_model, backend="onnxruntime-cuda", decoder="cpu") as segmenter:
        try:
            Nvdec(segmenter.pipeline.context).close()
        except ConfigError as exc:
            pytest.skip(exc.one_line())  # no PyNvVideoCodec, or no video capability in the driver
        yield segmenter


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    return write_test_videos(tmp_path_factory.mktemp("nvdec"), h264=((720, 1280), 24), hevc=((480, 640), 16))


def _pyav_frames(path: Path):
    with av.open(str(path)) as container:
        info = VideoInfo.of(container.streams.video[0])
        return info, list(container.decode(video=0))


@pytest.mark.parametrize("name", ["h264", "hevc"])
def test_nvdec_samples_equal_pyavs_and_convert_as_the_standard_says(segmenter, videos, name):
    pipeline = segmenter.pipeline
    info, reference = _pyav_frames(videos[name])
    nvdec = Nvdec(pipeline.context)
    try:
        frames = [frame for _, frame in nvdec.frames(str(videos[name]), info)]
        assert len(frames) == len(reference)
        h, w = info.height, info.width
        with DeviceBuffer(h * w * 3) as bgr, PinnedBuffer(h * w * 3) as host:
            for frame, expected in zip(frames, reference):
                np.testing.assert_array_equal(frame.nv12(pipeline.stream), nv12_of(expected))
                pipeline.kernels.nv12_to_bgr(pipeline.stream, frame, bgr.ptr)
                pipeline.stream.copy_to_host(host, bgr, h * w * 3)
                pipeline.stream.synchronize()
                standard = bgr_of_nv12(nv12_of(expected), frame_colour(expected))
                assert np.abs(host.view(np.uint8, (h, w, 3)).astype(int) - standard).max() <= 1
    finally:
        nvdec.close()


def _labels(segmenter: Segmenter, sources: list[Path], decoder: str, overlay_format: str = "bgr") -> tuple[dict, dict]:
    frames = VideoStream(segmenter, [str(s) for s in sources], overlay=True, decoder=decoder,
                         overlay_format=overlay_format)
    results: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for result in frames:
        assert result.error is None, result.error
        results[(result.frame.source, result.frame.index)] = (result.labels, result.overlay)
    return results, frames.decoders


def test_labels_from_nvdec_frames_agree_with_the_cpu_path(segmenter, videos):
    gpu, decoders = _labels(segmenter, [videos["h264"]], "gpu")
    cpu, cpu_decoders = _labels(segmenter, [videos["h264"]], "cpu")
    assert decoders == {"street": "NVDEC (GPU)"} and cpu_decoders == {"street": "PyAV (CPU)"}
    assert gpu.keys() == cpu.keys() and len(gpu) == 24
    agree = [float((gpu[k][0] == cpu[k][0]).mean()) for k in gpu]
    assert min(agree) >= AGREEMENT, agree
    for key in gpu:  # overlays blended on the GPU from the NVDEC frame, as pixels for the video encoder
        assert gpu[key][1].shape == (720, 1280, 3)
        assert np.abs(gpu[key][1].astype(int) - cpu[key][1]).mean() < 1.0


def test_overlays_converted_to_i420_on_the_gpu_are_the_standard_planes(segmenter, videos):
    """`overlay_format="i420"` (what `infer` hands the video encoder): each overlay comes back as I420
    planes, within a level of the BT.601 limited-range planes of the same overlay as BGR."""
    as_bgr, _ = _labels(segmenter, [videos["h264"]], "gpu")
    as_planes, _ = _labels(segmenter, [videos["h264"]], "gpu", overlay_format="i420")
    assert as_planes.keys() == as_bgr.keys()
    for key, (labels, planes) in as_planes.items():
        np.testing.assert_array_equal(labels, as_bgr[key][0])
        assert planes.shape == (720 * 3 // 2, 1280)
        assert np.abs(planes.astype(int) - i420_of_bgr(as_bgr[key][1])).max() <= 1


def test_several_files_decode_at_once_each_in_its_own_session(segmenter, videos):
    together, decoders = _labels(segmenter, [videos["h264"], videos["hevc"]], "gpu")
    assert set(decoders.values()) == {"NVDEC (GPU)"}
    alone = {**_labels(segmenter, [videos["h264"]], "gpu")[0], **_labels(segmenter, [videos["hevc"]], "gpu")[0]}
    assert together.keys() == alone.keys() and len(together) == 24 + 16
    for key in together:
        np.testing.assert_array_equal(together[key][0], alone[key][0])


def test_cli_writes_the_overlay_video_and_a_truncated_file_fails_alone(gpu_model, videos, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["infer", str(videos["h264"]), str(videos["truncated"]), "--model", str(gpu_model), "--backend",
                 "onnxruntime-cuda", "--decoder", "gpu", "--overlay", "--labels", "none", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err
    assert "street: NVDEC (GPU)" in captured.out
    with av.open(str(out / "street_overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 24
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "truncated.mp4" in errors[0], captured.err


def test_a_rotated_video_is_left_to_pyav_and_comes_out_upright(segmenter, tmp_path):
    video = tmp_path / "portrait.mp4"
    write_video(video, "libx264", (360, 640), 6, rotation=-90)
    results, decoders = _labels(segmenter, [video], "auto")
    assert decoders == {"portrait": "PyAV (CPU)"}  # NVDEC's frames would not be turned
    assert all(labels.shape == (640, 360) for labels, _ in results.values())

"""What decodes and encodes video on this machine, as `deploy-kit doctor` shows it: NVDEC through
PyNvVideoCodec for files where a GPU runs the model (else PyAV on the CPU), and NVENC or libx264 for
the overlay videos."""

from __future__ import annotations

import importlib.util

from ..doctor import INFO, OK, WARNING, Check
from ..errors import ConfigError
from .nvdec import load_pynvvideocodec
from .sinks import h264_encoder


def video_checks(has_gpu: bool) -> list[Check]:
    if importlib.util.find_spec("av") is None:
        return [Check("video", INFO, "PyAV not installed: video files, streams and cameras are not read",
                      "pip install 'deploy-kit[video]'")]
    return [_decoder_check(has_gpu), _encoder_check(has_gpu)]


def _decoder_check(has_gpu: bool) -> Check:
    if not has_gpu:
        return Check("video decoder", OK, "PyAV (FFmpeg) on the CPU: no GPU")
    try:
        module = load_pynvvideocodec()
    except ConfigError as exc:
        return Check("video decoder", WARNING, f"PyAV on the CPU: {exc.what}", exc.hint or "")
    version = getattr(module, "__version__", "")
    return Check("video decoder", OK, f"files on the GPU's NVDEC (PyNvVideoCodec {version}".rstrip() + "); "
                 "live streams and cameras by PyAV on the CPU")


def _encoder_check(has_gpu: bool) -> Check:
    if h264_encoder() == "h264_nvenc":
        return Check("video encoder", OK, "h264_nvenc: the GPU's NVENC")
    why = "this GPU has no NVENC engine, or the driver lacks its video capability" if has_gpu else "no GPU"
    return Check("video encoder", OK, f"libx264 on the CPU ({why})")

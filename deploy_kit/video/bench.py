"""The benchmark's video row (`deploy-kit benchmark --video FILE`): a file's frames decoded alone (PyAV
on the CPU, and NVDEC on the GPU where the segmenter runs there), then segmented with labels only and
with the overlay video for each decoder, next to `infer` on the same frames saved as JPEG files, all
with the same segmenter, with the GPU's utilisation during each run, and the overlay video's encoder
alone."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..benchmark import GpuUtilization
from ..files import segment_files
from ..images import collect_inputs, plan_outputs
from ..segmenter import Segmenter
from .nvdec import VideoInfo
from .run import VideoOptions, segment_videos, video_decoder
from .sinks import SinkOptions, VideoSink, h264_encoder
from .sources import VideoFrame, decoded_frames


def video_row(segmenter: Segmenter, video: Path, device: int = 0) -> dict[str, Any]:
    import av

    started = time.perf_counter()
    with av.open(str(video)) as container:
        info = VideoInfo.of(container.streams.video[0])
        frames = [image for _, image in decoded_frames(container)]
    decode_s = time.perf_counter() - started
    segmenter.predict(frames[0])  # warm-up: sessions, kernels
    row: dict[str, Any] = {"video": str(video), "frames": len(frames), "frame_hw": list(frames[0].shape[:2]),
                           "codec": info.codec, "colour": [info.colour.matrix, info.colour.full_range],
                           "decode_only_fps": len(frames) / decode_s, "decoders": {}}
    decoders = ["cpu"]
    nvdec = video_decoder(segmenter, "auto") if info.nvdec_refusal() is None else None
    if nvdec is not None:
        started = time.perf_counter()
        count = sum(1 for _ in nvdec.frames(str(video), info))
        row["nvdec_decode_only_fps"] = count / (time.perf_counter() - started)
        row["nvdec_engines"] = nvdec.engines(str(video))
        nvdec.close()
        decoders = ["gpu", "cpu"]
    with tempfile.TemporaryDirectory(prefix="deploy-kit-video-bench-") as scratch:
        for decoder in decoders:
            suffix = "" if decoder == decoders[0] else "_cpu_decoder"
            for key, sinks in (("labels_only_fps", SinkOptions(labels="none")),
                               ("with_overlay_video_fps", SinkOptions(overlay=True, labels="none"))):
                with GpuUtilization(device) as utilization:
                    report = segment_videos(segmenter, [str(video)], Path(scratch) / f"{key}{suffix}",
                                            VideoOptions(sinks=sinks, decoder=decoder))
                row[key + suffix] = sum(report.segmented.values()) / report.seconds
                row[key.replace("_fps", "") + suffix + "_gpu_utilization_percent"] = utilization.mean
                row["decoders"][decoder] = next(iter(report.decoders.values()))
        row["overlay_encoder"] = h264_encoder()
        row["encode_only_fps"] = _encode_only_fps(frames, Path(scratch) / "encode")
        planes = [cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420) for frame in frames] if frames[0].shape[0] % 2 == 0 \
            and frames[0].shape[1] % 2 == 0 else []
        if planes:  # what the GPU hands the encoder: I420, no conversion on the CPU
            row["encode_only_from_i420_fps"] = _encode_only_fps(planes, Path(scratch) / "encode-i420")
        jpegs = Path(scratch) / "jpegs"
        jpegs.mkdir()
        for index, frame in enumerate(frames):
            cv2.imwrite(str(jpegs / f"{index:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        plans, _, _ = plan_outputs(collect_inputs([str(jpegs)])[0], Path(scratch) / "files")
        files = segment_files(segmenter, plans)
        row["same_frames_as_jpeg_files_img_per_s"] = len(files.written) / files.seconds
    row["labels_only_vs_jpeg_files"] = row["labels_only_fps"] / row["same_frames_as_jpeg_files_img_per_s"]
    return row


def _encode_only_fps(frames: list[Any], out: Path) -> float:
    """The overlay video's encoder alone, on frames in host memory as the sink gets them (BGR, or I420
    planes of h*3/2 x w)."""
    sink = VideoSink(out, "encoded", SinkOptions(overlay=True, labels="none"), fps=25.0)
    height, width = frames[0].shape[:2]
    labels = np.zeros((height * 2 // 3, width) if frames[0].ndim == 2 else (height, width), np.uint8)
    started = time.perf_counter()
    for index, image in enumerate(frames):
        sink.write(VideoFrame("encoded", index, index / 25.0, image), labels, image)
    sink.close()
    return len(frames) / (time.perf_counter() - started)

"""The benchmark's video row (`deploy-kit benchmark --video FILE`): a file's frames decoded alone, then
segmented with labels only and with the overlay video, next to `infer` on the same frames saved as
JPEG files, all with the same segmenter."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from ..files import segment_files
from ..images import collect_inputs, plan_outputs
from ..segmenter import Segmenter
from .run import VideoOptions, segment_videos
from .sinks import SinkOptions
from .sources import decoded_frames


def video_row(segmenter: Segmenter, video: Path) -> dict[str, Any]:
    import av

    started = time.perf_counter()
    with av.open(str(video)) as container:
        frames = [image for _, image in decoded_frames(container)]
    decode_s = time.perf_counter() - started
    segmenter.predict(frames[0])  # warm-up: sessions, kernels
    row: dict[str, Any] = {"video": str(video), "frames": len(frames), "frame_hw": list(frames[0].shape[:2]),
                           "decode_only_fps": len(frames) / decode_s}
    with tempfile.TemporaryDirectory(prefix="deploy-kit-video-bench-") as scratch:
        for key, sinks in (("labels_only_fps", SinkOptions(labels="none")),
                           ("with_overlay_video_fps", SinkOptions(overlay=True, labels="none"))):
            report = segment_videos(segmenter, [str(video)], Path(scratch) / key, VideoOptions(sinks=sinks))
            row[key] = sum(report.segmented.values()) / report.seconds
        jpegs = Path(scratch) / "jpegs"
        jpegs.mkdir()
        for index, frame in enumerate(frames):
            cv2.imwrite(str(jpegs / f"{index:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        plans, _, _ = plan_outputs(collect_inputs([str(jpegs)])[0], Path(scratch) / "files")
        files = segment_files(segmenter, plans)
        row["same_frames_as_jpeg_files_img_per_s"] = len(files.written) / files.seconds
    row["labels_only_vs_jpeg_files"] = row["labels_only_fps"] / row["same_frames_as_jpeg_files_img_per_s"]
    return row

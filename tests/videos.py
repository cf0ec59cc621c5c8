"""Test videos encoded with PyAV: a street scene panning past the camera, so that every frame differs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy_kit.synthetic import SceneSpec, generate_scene


def write_video(path: Path, codec: str, size: tuple[int, int], frames: int, fps: int = 25,
                rotation: int = 0) -> list[np.ndarray]:
    """A moving street scene, encoded (`rotation`: a display matrix, degrees counter-clockwise); returns
    the BGR frames given to the encoder."""
    import av

    height, width = size
    scene = generate_scene(3, 0, SceneSpec(height, width + 8 * frames))[0]
    images = [np.ascontiguousarray(scene[:, 8 * i:8 * i + width]) for i in range(frames)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return images


def write_test_videos(root: Path, h264: tuple[tuple[int, int], int],
                      hevc: tuple[tuple[int, int], int]) -> dict[str, Path]:
    """An H.264 mp4 and an HEVC mkv of the given (size, frames), and the mp4 cut in half ("truncated")."""
    paths = {"h264": root / "street.mp4", "hevc": root / "street_hevc.mkv"}
    write_video(paths["h264"], "libx264", *h264)
    write_video(paths["hevc"], "libx265", *hevc)
    data = paths["h264"].read_bytes()
    paths["truncated"] = root / "truncated.mp4"
    paths["truncated"].write_bytes(data[:len(data) // 2])
    return paths

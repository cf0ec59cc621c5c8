"""Write the video benchmark's input: a street scene panned 4 pixels a frame, H.264 (libx264, yuv420p,
BT.709 tagged), 1920x1080 by default, with PyAV.

    python benchmarks/make_video.py --out street1080.mp4 [--frames 1000] [--size 1080,1920] [--codec libx264]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy_kit.synthetic import SceneSpec, generate_scene  # noqa: E402

STEP = 4  # pixels the camera pans per frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="1080,1920", help="height,width")
    parser.add_argument("--codec", default="libx264")
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    import av

    height, width = (int(v) for v in args.size.split(","))
    # one wide scene, panned: 1000 frames of 1080p need a 1080 x 5920 scene, not 1000 scenes
    scene = generate_scene(11, 0, SceneSpec(height, width + STEP * args.frames))[0]
    with av.open(str(args.out), "w") as container:
        stream = container.add_stream(args.codec, rate=args.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.colorspace = 1  # BT.709, as HD video is tagged
        stream.options = {"preset": "veryfast", "crf": "20"}
        for index in range(args.frames):
            image = np.ascontiguousarray(scene[:, STEP * index:STEP * index + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    print(f"wrote {args.out}: {args.frames} frames {width}x{height} {args.codec}")


if __name__ == "__main__":
    main()

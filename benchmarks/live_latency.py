"""Latency of a live source, from a frame's arrival (decoded by PyAV) to its labels in host memory, over
time: a local MJPEG-over-HTTP camera (tests/mjpeg.py, 127.0.0.1) at a fixed rate, segmented as
`deploy-kit infer URL` segments it (newest frame only, stale frames dropped). Writes one JSON file with
p50/p99 overall and per window, so latency growth shows.

    python benchmarks/live_latency.py --model build/ [--backend auto] [--seconds 300] [--fps 30]
        [--size 720,1280] [--window 30] [--out benchmarks/results/live-latency.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy_kit import Segmenter  # noqa: E402
from deploy_kit.benchmark import machine_info  # noqa: E402
from deploy_kit.video.run import VideoOptions, segment_videos  # noqa: E402
from deploy_kit.video.sinks import SinkOptions  # noqa: E402
from tests.mjpeg import MjpegServer  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="720,1280", help="frame H,W")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per latency window")
    parser.add_argument("--out", type=Path, default=Path("bench-results/live-latency.json"))
    return parser.parse_args()


def percentiles(latencies: list[float]) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {"frames": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def main() -> int:
    args = parse_args()
    size = tuple(int(v) for v in args.size.split(","))
    with MjpegServer(size, args.fps) as server, Segmenter(args.model, backend=args.backend, max_batch=1) as segmenter, \
            tempfile.TemporaryDirectory() as scratch:
        threading.Timer(args.seconds, server.stopped.set).start()  # the camera goes away; the source then ends
        report = segment_videos(segmenter, [server.url], Path(scratch),
                                VideoOptions(reconnect_timeout=2.0, sinks=SinkOptions(labels="none")))
        backend = segmenter.backend
    start = min(t for t, _ in report.latencies)
    windows = []
    for begin in np.arange(0, args.seconds, args.window):
        inside = [latency for t, latency in report.latencies if begin <= t - start < begin + args.window]
        if inside:
            windows.append({"from_s": float(begin), **percentiles(inside)})
    counts = next(iter(report.counts.values()))
    result = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "model": str(args.model),
              "backend": backend, "source": f"MJPEG over HTTP on 127.0.0.1, {size[1]}x{size[0]} at {args.fps} fps",
              "seconds": args.seconds, "decoded": counts.decoded, "segmented": sum(report.segmented.values()),
              "dropped_stale": counts.dropped, "overall": percentiles([l for _, l in report.latencies]),
              "windows": windows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "windows")}, indent=1))
    print("windows p99 ms:", [round(w["p99_ms"], 1) for w in windows])
    return 0


if __name__ == "__main__":
    sys.exit(main())

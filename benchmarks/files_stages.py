"""Where `infer` from files spends its time: wall seconds inside each stage of the pipeline (summed over
calls and threads) during one warm run over a folder, per batch size, with and without overlays. Each
stage function is wrapped by a timer for the run; the run itself is `segment_files`, as `infer` runs it.
Writes one JSON file; benchmarks/README.md reads the bounds off it.

    python benchmarks/files_stages.py --model bench/ --images files240/ [--batch 8,1] [--backend onnxruntime-cuda]
        [--decoder gpu] [--out benchmarks/results/files-stages.json]
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy_kit import Segmenter, files, gpu_jpeg  # noqa: E402
from deploy_kit.backends.onnxruntime import cuda as onnxruntime_cuda  # noqa: E402
from deploy_kit.benchmark import machine_info  # noqa: E402
from deploy_kit.images import collect_inputs, plan_outputs  # noqa: E402
from deploy_kit.runtime import gpu_pipeline, stream  # noqa: E402

# (owner, function, what it is): "main" is the thread that collects batches, "enqueuer" the pipeline's
# queuing thread, "writers" the writer pool
STAGES: list[tuple[Any, str, str]] = [
    (stream, "_next_batch", "main: wait for decoded images"),
    (gpu_pipeline.GpuPipeline, "submit", "main: submit"),
    (gpu_pipeline.GpuPipeline, "result", "main: result"),
    (gpu_pipeline._Slot, "split_labels", "main: labels copied out of pinned memory"),
    (gpu_pipeline.GpuPipeline, "_enqueue", "enqueuer: a batch queued"),
    (gpu_jpeg.GpuJpegDecoder, "decode", "enqueuer: the hardware JPEG decoder's call"),
    (onnxruntime_cuda.OnnxRuntimeCudaExecutor, "enqueue", "enqueuer: ONNX Runtime's run"),
    (files, "_write", "writers: outputs written"),
]


class StageClock:
    """Seconds and calls per stage, from every thread."""

    def __init__(self) -> None:
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[label] += time.perf_counter() - start
                    self.calls[label] += 1
        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def run(model: Path, images: Path, batch: int, overlay: bool, backend: str, decoder: str,
        clock: StageClock) -> dict[str, Any]:
    inputs, _ = collect_inputs([str(images)])
    with Segmenter(model, backend=backend, max_batch=batch, decoder=decoder) as segmenter, \
            tempfile.TemporaryDirectory(prefix="deploy-kit-stages-") as scratch:
        plans, _, _ = plan_outputs(inputs, Path(scratch))
        for _ in range(2):  # warm-up: kernels, graphs, pools
            files.segment_files(segmenter, plans[:4 * batch], overlay)
        clock.reset()
        report = files.segment_files(segmenter, plans, overlay)
    return {"batch": batch, "overlay": overlay, "images": len(report.written), "failed": len(report.failed),
            "seconds": report.seconds, "images_per_s": len(report.written) / report.seconds,
            "stages": {label: {"seconds": clock.seconds[label], "calls": clock.calls[label]} for _, _, label in STAGES}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="folder of images")
    parser.add_argument("--batch", default="8,1")
    parser.add_argument("--backend", default="onnxruntime-cuda")
    parser.add_argument("--decoder", default="gpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/files-stages.json"))
    args = parser.parse_args()
    clock = StageClock()
    for owner, name, label in STAGES:
        setattr(owner, name, clock.wrap(getattr(owner, name), label))
    rows = [run(args.model, args.images, int(batch), overlay, args.backend, args.decoder, clock)
            for batch in args.batch.split(",") for overlay in (False, True)]
    for row in rows:
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "model": str(args.model), "images": str(args.images),
                                    "backend": args.backend, "decoder": args.decoder, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

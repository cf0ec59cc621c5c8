"""Benchmark rows for dynamic-shape models on the GPU: the same architecture exported dynamic (`[-1, 3, -1,
-1]`, Normalize only) and fixed at 1024x2048, engine-only at 1024x2048 (the dynamic one with ONNX
Runtime's two designs: one dynamic-shape session, and a static CUDA-graph session once a shape repeats),
`infer` from files at 1024x2048, and `infer` from a folder of mixed sizes.

    python benchmarks/make_model.py --arch bisenetv2 --dynamic --out build/bisenetv2-dynamic
    python benchmarks/make_model.py --arch bisenetv2 --height 1024 --width 2048 --out build/bisenetv2-fixed
    python benchmarks/dynamic_shapes.py --dynamic build/bisenetv2-dynamic/onnx --fixed build/bisenetv2-fixed/onnx \\
        --out benchmarks/results/h200-dynamic-shapes.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deploy_kit.benchmark import Summary, engine_only_samples, machine_info
from deploy_kit.benchmark_files import from_files
from deploy_kit.segmenter import Segmenter
from deploy_kit.synthetic import SceneSpec, generate_scene

BACKEND = "onnxruntime-cuda"
FULL = (1024, 2048)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dynamic", type=Path, required=True, help="convert output of the dynamic-shape export")
    parser.add_argument("--fixed", type=Path, required=True, help="convert output of the 1024x2048 export")
    parser.add_argument("--files", type=int, default=240, help="JPEG files per from-files row")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    return parser.parse_args()


def engine_only(model: Path, static_after: int | None, iterations: int) -> dict[str, Any]:
    """Inference alone at 1x3x1024x2048; `static_after` sets the dynamic model's design (0: one
    dynamic-shape session for every shape)."""
    with Segmenter(model, backend=BACKEND, max_batch=1) as segmenter:
        assert segmenter.pipeline is not None
        if static_after is not None:
            segmenter.pipeline.executor.static_after = static_after  # type: ignore[attr-defined]
        summary = Summary.of(engine_only_samples(segmenter.pipeline, (1, 3, *FULL), 10, iterations))
    return {"ms": asdict(summary), "images_per_s": 1000 / summary.mean}


def first_run_of_new_shapes_ms(model: Path, sizes: list[tuple[int, int]], algo_search: str) -> dict[str, Any]:
    """What a folder of mixed sizes pays: the first run of each new input shape on the dynamic-shape
    session (cuDNN picks each convolution's algorithm per shape), and a second run of the same shapes."""
    from deploy_kit.backends.onnxruntime.cuda import OnnxRuntimeCudaExecutor

    OnnxRuntimeCudaExecutor.dynamic_conv_algo_search = algo_search
    try:
        with Segmenter(model, backend=BACKEND, max_batch=1) as segmenter:
            pipeline = segmenter.pipeline
            assert pipeline is not None
            pipeline.executor.static_after = 0  # type: ignore[attr-defined]
            pipeline.model_buffers((1, 3, *FULL))  # the largest buffers first: no growth in the timings
            rows = {}
            for name in ("first_run_ms", "second_run_ms"):
                rows[name] = asdict(Summary.of([engine_only_samples(pipeline, (1, 3, h, w), 0, 1)[0]
                                                for h, w in sizes]))
            rows["fixed_1024x2048_ms"] = asdict(Summary.of(engine_only_samples(pipeline, (1, 3, *FULL), 5, 30)))
    finally:
        OnnxRuntimeCudaExecutor.dynamic_conv_algo_search = "HEURISTIC"
    return rows


def write_jpegs(folder: Path, count: int, sizes: list[tuple[int, int]]) -> Path:
    """`count` JPEG street scenes, each at the next of `sizes` in turn (24 distinct scenes repeated)."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes = [generate_scene(7, i, SceneSpec(*FULL))[0] for i in range(24)]
    for index in range(count):
        h, w = sizes[index % len(sizes)]
        scene = scenes[index % len(scenes)]
        image = scene if (h, w) == FULL else cv2.resize(scene, (w, h), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def main() -> int:
    args = parse_args()
    rng = np.random.default_rng(0)
    mixed = [(int(rng.integers(360, 1025)), int(rng.integers(480, 2049))) for _ in range(37)]
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "backend": BACKEND,
                              "models": {"dynamic": str(args.dynamic), "fixed": str(args.fixed)}}
    report["engine_only_1024x2048_batch1"] = {
        "fixed_export": engine_only(args.fixed, None, args.iterations),
        "dynamic_one_dynamic_session": engine_only(args.dynamic, 0, args.iterations),
        "dynamic_static_session_once_repeated": engine_only(args.dynamic, None, args.iterations),
    }
    report["new_shapes_dynamic_session"] = {algo: first_run_of_new_shapes_ms(args.dynamic, mixed[:12], algo)
                                            for algo in ("HEURISTIC", "DEFAULT")}
    with tempfile.TemporaryDirectory() as scratch:
        full = write_jpegs(Path(scratch) / "full", args.files, [FULL])
        mixed_folder = write_jpegs(Path(scratch) / "mixed", args.files, mixed)
        report["from_files_1024x2048_batch1"] = {"fixed_export": from_files(args.fixed, full, (1,), BACKEND)[0],
                                                 "dynamic_export": from_files(args.dynamic, full, (1,), BACKEND)[0]}
        report["from_files_mixed_sizes"] = {"sizes": len(mixed), "rows": from_files(args.dynamic, mixed_folder,
                                                                                    (1, 4), BACKEND)}
    engine = report["engine_only_1024x2048_batch1"]
    fixed_ms = engine["fixed_export"]["ms"]["mean"]
    best_dynamic = min(engine["dynamic_one_dynamic_session"]["ms"]["mean"],
                       engine["dynamic_static_session_once_repeated"]["ms"]["mean"])
    dynamic_files = report["from_files_1024x2048_batch1"]["dynamic_export"]["images_per_s"]
    report["targets"] = {
        "dynamic_engine_only_over_fixed": best_dynamic / fixed_ms, "target_at_most": 1.15,
        "dynamic_from_files_over_its_engine_only": dynamic_files / (1000 / best_dynamic), "target_at_least": 0.5}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("engine_only_1024x2048_batch1", "new_shapes_dynamic_session",
                                             "from_files_1024x2048_batch1", "from_files_mixed_sizes", "targets")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

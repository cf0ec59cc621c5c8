"""Benchmark a converted model: stage timings, engine-only and end-to-end latency, throughput, baseline.

  deploy-kit benchmark --model build/ [--images dir/] [--batch 1,4,8] [--backend ...] [--precision ...]
      [--iterations N] [--warmup N] [--cuda-graph] [--in-flight 3] [--out bench-results/]

Without --images it uses generated 1024x2048 street scenes. On a machine without a GPU it compares
ONNX Runtime CPU with Paddle Inference CPU on the same model. Writes JSON, CSV and a PNG chart.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..artifact import PRECISIONS
from ..backends import registry
from ..benchmark import BenchConfig, machine_info, run_cpu_benchmark, run_gpu_benchmark, write_results
from ..benchmark_files import from_files, jpeg_to_labels_ms
from ..errors import ConfigError
from ..images import expand_inputs
from ..machine import detect_gpus
from ..segmenter import DECODER_HELP, DECODERS
from ..synthetic import SceneSpec, generate_scene


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="convert output folder")
    parser.add_argument("--images", type=Path, help="folder of images")
    parser.add_argument("--batch", default="1,4,8", help="batch sizes, e.g. 1,4,8")
    parser.add_argument("--backend", default=registry.AUTO, choices=registry.names(), help=registry.HELP)
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="which converted graph ONNX Runtime runs")
    parser.add_argument("--cuda-graph", action="store_true", help="replay inference as a CUDA graph (TensorRT)")
    parser.add_argument("--iterations", type=int, default=50, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before each measurement")
    parser.add_argument("--in-flight", type=int, default=3,
                        help="batches in flight for the throughput run, each with its own buffers")
    parser.add_argument("--no-baseline", action="store_true", help="skip the PaddleSeg-style CPU baseline")
    parser.add_argument("--paddle-model", type=Path, help="PaddleSeg export for the CPU comparison "
                        "(default: the folder convert.json names)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for the JSON, CSV and chart")
    parser.add_argument("--name", help="results file stem")
    parser.add_argument("--from-files", type=Path, metavar="DIR",
                        help="also time the real infer pipeline from DIR's image files to PNG files, and one "
                             "image from JPEG bytes to labels")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--decoder", default="auto", choices=DECODERS, help="with --from-files: " + DECODER_HELP)
    parser.add_argument("--video", type=Path, metavar="FILE",
                        help="also time a video file: decode alone, labels only, with the overlay video, and the "
                             "same frames as JPEG files")


def _images(folder: Path | None) -> list[bytes]:
    if folder is None:
        scenes = [generate_scene(4, i, SceneSpec(1024, 2048))[0] for i in range(4)]
        return [cv2.imencode(".png", s)[1].tobytes() for s in scenes]
    paths, errors = expand_inputs([str(folder)])
    if errors:
        raise errors[0]
    return [p.read_bytes() for p in paths]


def run(args: argparse.Namespace) -> int:
    try:
        batches = tuple(int(b) for b in args.batch.split(","))
    except ValueError:
        raise ConfigError(f"bad --batch {args.batch!r}", hint="give sizes like 1,4,8") from None
    encoded = _images(args.images)
    images = [cv2.imdecode(np.frombuffer(e, np.uint8), cv2.IMREAD_COLOR) for e in encoded]
    config = BenchConfig(args.model, images, encoded, batches, args.iterations, args.warmup, args.in_flight,
                         args.backend, not args.no_baseline, args.precision, args.cuda_graph)
    report = {"machine": machine_info(), "model": str(args.model), "model_name": args.model.name,
              "image_hw": list(images[0].shape[:2])}
    if detect_gpus() and args.backend != "onnxruntime-cpu":
        report.update(run_gpu_benchmark(config))
    else:
        paddle = args.paddle_model
        if paddle is None and (args.model / "convert.json").is_file():
            paddle = Path(json.loads((args.model / "convert.json").read_text())["model_dir"])
        if importlib.util.find_spec("paddle") is None:
            print("Paddle is not installed: no Paddle Inference comparison (pip install 'deploy-kit[export]' adds it)")
            paddle = None
        report.update(run_cpu_benchmark(config, paddle if paddle and paddle.is_dir() else None))
    if args.from_files is not None:
        report["from_files"] = _from_files_rows(args, report["backend"], batches)
    if args.video is not None:
        report["video"] = _video_row(args, report["backend"])
    gpu = report["machine"]["gpus"][0]["name"].replace(" ", "_") if report["machine"]["gpus"] else "cpu"
    paths = write_results(report, args.out, args.name or f"{report['backend']}-{gpu}")
    _print_summary(report)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _from_files_rows(args: argparse.Namespace, backend: str, batches: tuple[int, ...]) -> dict[str, Any]:
    jpegs = sorted(args.from_files.glob("*.jp*g"))
    if not jpegs:
        raise ConfigError("no JPEG files to time", path=args.from_files, hint="give a folder of .jpg images")
    rows = from_files(args.model, args.from_files, batches, backend, device=args.device, decoder=args.decoder)
    rows += from_files(args.model, args.from_files, batches[:1], backend, overlay=True, device=args.device,
                       decoder=args.decoder)
    for row in rows:
        print(f"from files ({row['decoder']} decoder), batch {row['batch']}{' with overlays' if row['overlay'] else ''}: "
              f"{row['images_per_s']:.1f} img/s" + (f", GPU {row['gpu_utilization_percent']:.0f}% busy"
                                                     if row["gpu_utilization_percent"] is not None else ""))
    latency = jpeg_to_labels_ms(args.model, jpegs[0].read_bytes(), backend, device=args.device, decoder=args.decoder)
    print(f"one image from JPEG bytes to labels: {latency['mean']:.2f} ms (p99 {latency['p99']:.2f})")
    return {"folder": str(args.from_files), "rows": rows, "jpeg_to_labels_ms": latency}


def _video_row(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    if importlib.util.find_spec("av") is None:
        raise ConfigError("--video needs PyAV", hint="pip install 'deploy-kit[video]'")
    from ..segmenter import Segmenter
    from ..video.bench import video_row

    with Segmenter(args.model, backend=backend, device=args.device, max_batch=1, decoder=args.decoder) as segmenter:
        row = video_row(segmenter, args.video, args.device)
    nvdec = (f", NVDEC {row['nvdec_decode_only_fps']:.1f} ({row['nvdec_engines']} engines)"
             if "nvdec_decode_only_fps" in row else "")
    print(f"video {args.video.name} ({row['frames']} frames {row['frame_hw'][1]}x{row['frame_hw'][0]}): decode "
          f"PyAV {row['decode_only_fps']:.1f} frames/s{nvdec}; decoded by {', '.join(row['decoders'].values())}: "
          f"labels only {row['labels_only_fps']:.1f}, with overlay video "
          f"{row['with_overlay_video_fps']:.1f} ({row['overlay_encoder']} alone {row['encode_only_fps']:.1f}); "
          f"the same frames as JPEG files "
          f"{row['same_frames_as_jpeg_files_img_per_s']:.1f} img/s ({row['labels_only_vs_jpeg_files']:.2f}x)")
    return row


def _print_summary(report: dict) -> None:
    for entry in report["batches"]:
        if "stages_ms" in entry:
            stages = "  ".join(f"{k} {v['mean']:.3f}" for k, v in entry["stages_ms"].items())
            baseline = entry.get("baseline_throughput")
            print(f"batch {entry['batch']}: {stages} ms | engine {entry['engine_only_ms']['mean']:.3f} ms, "
                  f"end-to-end {entry['end_to_end_ms']['mean']:.3f} ms | {entry['throughput']:.1f} img/s "
                  f"(engine-only {entry['engine_only_throughput']:.1f}"
                  + (f", baseline {baseline:.1f})" if baseline else ")"))
        else:
            print(f"batch {entry['batch']}: ONNX Runtime CPU {entry['onnxruntime_cpu_images_per_s']:.2f} img/s"
                  + (f", Paddle Inference CPU {entry['paddle_inference_cpu_images_per_s']:.2f} img/s"
                     if "paddle_inference_cpu_images_per_s" in entry else ""))

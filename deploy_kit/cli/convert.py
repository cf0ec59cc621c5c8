"""Convert a PaddleSeg inference model to ONNX and a TensorRT engine (cached stages).

  deploy-kit convert [MODEL] -o build/ [--opset 11] [--precision fp32|fp16] [--batch 1:1:8]
      [--input-shape 1,3,512,1024 | --shapes-from DIR] [--workspace 2GiB] [--target-sm 8.7,8.6] [--force] [--onnx-only]

MODEL is the folder PaddleSeg's tools/export.py wrote; without it, the shipped demo model is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..artifact import PRECISIONS, REPORT_NAME
from ..convert.options import (DEFAULT_OPSET, BatchRange, ConvertOptions, parse_input_shape, parse_size,
                               parse_target_sms)
from ..convert.pipeline import StageResult, convert
from ..doctor import blocking_errors, startup_readings
from ..errors import EngineCompatibilityError
from ..paddleseg.demo import restore_default_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", type=Path, help="PaddleSeg inference folder (default: the shipped demo model)")
    parser.add_argument("-o", "--out", type=Path, default=Path("build"), help="output folder")
    parser.add_argument("--opset", type=int, help=f"ONNX opset (default: {DEFAULT_OPSET}, raised to the opset "
                        "paddle2onnx names when the model needs it)")
    parser.add_argument("--precision", default=ConvertOptions.precision, choices=PRECISIONS,
                        help="engine precision; fp16 and int8 are checked against fp32 (accuracy.json)")
    parser.add_argument("--calib-images", type=Path, help="INT8: folder of calibration images")
    parser.add_argument("--calib-count", type=int, default=ConvertOptions.calib_count, help="INT8: at most N images")
    parser.add_argument("--eval-images", type=Path, help="images for accuracy.json (default: the calibration images)")
    parser.add_argument("--eval-labels", type=Path, help="label PNGs for --eval-images: mIoU against ground truth")
    parser.add_argument("--max-miou-loss", type=float, help="mIoU points FP16/INT8 may lose (default: 0.3 / 1.5)")
    parser.add_argument("--accept-accuracy-loss", action="store_true", help="keep a graph above the limit")
    parser.add_argument("--batch", default="1:1:8", help="batch profile MIN:OPT:MAX")
    parser.add_argument("--input-shape", help="N,C,H,W when deploy.yaml fixes no size, e.g. 1,3,512,1024; a "
                        "dynamic-shape model takes H/W ranges MIN:OPT:MAX, e.g. 1,3,256:512:1024,256:1024:2048")
    parser.add_argument("--shapes-from", type=Path, help="dynamic-shape model: a folder of typical images whose "
                        "sizes (headers only) set the engine profile's MIN/OPT/MAX")
    parser.add_argument("--workspace", help="TensorRT workspace limit, e.g. 2GiB (default: half the free GPU memory)")
    parser.add_argument("--target-sm", help="compute capabilities to build for, e.g. 8.7,8.6 (default: this GPU)")
    parser.add_argument("--force", action="store_true", help="redo every stage")
    parser.add_argument("--onnx-only", action="store_true", help="stop after the ONNX stages")


def options_from(args: argparse.Namespace) -> ConvertOptions:
    return ConvertOptions(
        opset=args.opset, precision=args.precision, batch=BatchRange.parse(args.batch),
        input_shape=parse_input_shape(args.input_shape) if args.input_shape else None, shapes_from=args.shapes_from,
        workspace=parse_size(args.workspace) if args.workspace else None,
        target_sms=parse_target_sms(args.target_sm) if args.target_sm else None,
        calib_images=args.calib_images, calib_count=args.calib_count, eval_images=args.eval_images,
        eval_labels=args.eval_labels, max_miou_loss=args.max_miou_loss,
        accept_accuracy_loss=args.accept_accuracy_loss, force=args.force, onnx_only=args.onnx_only)


def print_stage(stage: StageResult) -> None:
    timing = f"in {stage.seconds:.1f}s" if stage.status == "done" else ""
    what = ", ".join(stage.outputs) or stage.details.get("reason", "")
    print(f"{stage.name:<9} {stage.status:<10} {timing:<9} {what}", flush=True)
    if stage.details.get("note"):
        print(f"{'':<9} note: {stage.details['note']}", flush=True)


def _stop_on_blocking_errors() -> None:
    """The start-up half of `deploy-kit doctor`: stop before TensorRT can fail obscurely."""
    for check in blocking_errors(startup_readings()):
        raise EngineCompatibilityError(f"{check.name}: {check.value}", hint=check.fix + " (see deploy-kit doctor)")


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    if not options.onnx_only:
        _stop_on_blocking_errors()
    model = args.model if args.model is not None else restore_default_model()
    result = convert(model, args.out, options, print_stage)
    print(f"{result.plan.describe()}; report in {args.out / REPORT_NAME}")
    if result.engine is not None:
        print(f"next: deploy-kit infer IMAGE --model {args.out}")
    else:
        print(f"next: deploy-kit infer IMAGE --model {args.out} --backend onnxruntime-cpu")
    return 0

"""Write a Triton Inference Server model repository for the NGC Triton container.

  deploy-kit export-triton [--model build/] -o model_repository/ [--name seg] [--max-batch 8] [--instances 1] [--cpu]

It holds a python-backend model running deploy-kit's runtime (TensorRT, ONNX Runtime CUDA or CPU),
python-backend pre- and post-processing models, and, with a full-TensorRT engine, a tensorrt_plan model
(one plan per compute capability) joined to them by an ensemble. Every config.pbtxt is checked against
Triton's ModelConfig. Needs the `serve` extra (tritonclient).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..artifact import Artifact
from ..errors import EXIT_OK, ConfigError
from ..images import DEFAULT_MAX_PIXELS
from ..paddleseg.demo import restore_default_model
from ..segmenter import resolve_model
from ..serve.repository import RepositoryOptions, export_repository, install_command

DEFAULTS = RepositoryOptions()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="convert output or PaddleSeg export (default: the shipped demo model)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="model repository folder to write")
    parser.add_argument("--name", default=DEFAULTS.name, help="the model's name; the others are named after it")
    parser.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch, help="largest dynamic batch")
    parser.add_argument("--max-queue-delay-us", type=int, default=DEFAULTS.max_queue_delay_us,
                        help="how long a request may wait for others to batch with")
    parser.add_argument("--instances", type=int, default=DEFAULTS.instances, help="instances per GPU (or on the CPU)")
    parser.add_argument("--cpu", action="store_true", help="run the instances on the CPU (ONNX Runtime CPU)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")


def run(args: argparse.Namespace) -> int:
    if args.max_batch < 1 or args.instances < 1:
        raise ConfigError("--max-batch and --instances must be 1 or more")
    artifact: Artifact = resolve_model(args.model or restore_default_model())
    options = RepositoryOptions(args.name, args.max_batch, args.instances, args.max_queue_delay_us, args.cpu,
                                args.max_pixels)
    models = export_repository(artifact, args.out, options)
    print(f"wrote {', '.join(models)} into {args.out}/")
    if f"{args.name}_trt" not in models:
        print("no full-TensorRT engine in the convert output: no tensorrt_plan model or ensemble "
              "(TensorRT-RTX plans do not load in Triton's TensorRT backend)")
    gpus = "" if args.cpu else "--gpus all "
    print(f"next: docker run {gpus}--rm -p 8000:8000 -p 8001:8001 -p 8002:8002 -v {args.out.resolve()}:/models "
          f"nvcr.io/nvidia/tritonserver:<yy.mm>-py3 sh -c '{install_command(options)}'")
    return EXIT_OK

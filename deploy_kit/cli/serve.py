"""Serve a model on Triton Inference Server (in-process, through PyTriton), HTTP, gRPC and metrics.

  deploy-kit serve [--model build/] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
      [--max-batch 8] [--max-queue-delay-us 2000] [--instances 1] [--backend auto|...] [--address 127.0.0.1]

Requests send `image_bytes` (JPEG/PNG bytes, BYTES [1]) or `image` (uint8 [H, W, 3] BGR) and get
`labels` (uint8 [H, W]) at the image's size; a bad image gets `error` (BYTES [1], its one-line message)
and no `labels`, and the other requests batched with it are answered as usual. Triton's own log goes
to a file (named at start-up) unless -v. Needs the `serve` extra (nvidia-pytriton). SIGTERM or Ctrl-C
stops the server after the requests in flight; the exit code is then 0.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ..backends import registry
from ..errors import EXIT_OK, ConfigError
from ..images import DEFAULT_MAX_PIXELS
from ..paddleseg.demo import restore_default_model
from ..segmenter import DECODER_HELP, DECODERS, Segmenter
from ..serve.pytriton_server import ServeOptions, serve

DEFAULTS = ServeOptions(Path("."))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="convert output or PaddleSeg export (default: the shipped demo model)")
    parser.add_argument("--name", default=DEFAULTS.name, help="the model's name on the server")
    parser.add_argument("--backend", default=registry.AUTO, choices=registry.names(), help=registry.HELP)
    parser.add_argument("--device", default="0", help="CUDA device index, or several (0,1): the instances "
                        "are placed on them in turn (--instances 2 --device 0,1: one on each GPU)")
    parser.add_argument("--address", default=DEFAULTS.address,
                        help="address the server listens on; 0.0.0.0 serves other machines")
    parser.add_argument("--http-port", type=int, default=DEFAULTS.http_port, help="HTTP/REST port")
    parser.add_argument("--grpc-port", type=int, default=DEFAULTS.grpc_port, help="gRPC port")
    parser.add_argument("--metrics-port", type=int, default=DEFAULTS.metrics_port, help="Prometheus metrics port")
    parser.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch, help="largest dynamic batch")
    parser.add_argument("--max-queue-delay-us", type=int, default=DEFAULTS.max_queue_delay_us,
                        help="how long a request may wait for others to batch with")
    parser.add_argument("--instances", type=int, default=DEFAULTS.instances,
                        help="model instances, each with its own runtime session")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")
    parser.add_argument("--decoder", default="auto", choices=DECODERS, help=DECODER_HELP)


def _devices(text: str) -> tuple[int, ...]:
    try:
        devices = tuple(int(part) for part in text.split(","))
    except ValueError:
        devices = ()
    if not devices or min(devices) < 0:
        raise ConfigError(f"bad --device {text!r}", hint="give a CUDA device index, or several: 0,1")
    return devices


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("pytriton") is None:
        raise ConfigError("serving needs PyTriton", hint="pip install 'deploy-kit[serve]'")
    if args.max_batch < 1 or args.instances < 1:
        raise ConfigError("--max-batch and --instances must be 1 or more")
    options = ServeOptions(args.model or restore_default_model(), args.name, args.backend, _devices(args.device),
                           args.address,
                           args.http_port, args.grpc_port, args.metrics_port, args.max_batch,
                           args.max_queue_delay_us, args.instances, args.max_pixels, args.decoder, args.verbose)

    def ready(segmenter: Segmenter) -> None:
        print(segmenter.describe())
        print(f"serving {options.name} on http://{options.address}:{options.http_port} and grpc "
              f"{options.address}:{options.grpc_port}, metrics on :{options.metrics_port} "
              "(SIGTERM or Ctrl-C stops)" + ("" if options.verbose else f"; Triton's log: {options.triton_log}"),
              flush=True)

    serve(options, ready)
    print("stopped")
    return EXIT_OK

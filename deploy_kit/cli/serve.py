"""Serve a model on Triton Inference Server (in-process through PyTriton, or tritonserver), HTTP, gRPC and metrics.

  deploy-kit serve [--model build/] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
      [--max-batch 8] [--max-queue-delay-us 2000] [--instances 1] [--backend auto|...] [--address 127.0.0.1]
      [--server pytriton|tritonserver]

Requests send `image_bytes` (JPEG/PNG bytes, BYTES [1]) or `image` (uint8 [H, W, 3] BGR) and get
`labels` (uint8 [H, W]) at the image's size. With PyTriton (the default) a bad image gets `error` (BYTES
[1], its one-line message) and no `labels`; with `--server tritonserver` (the exported repository's
model, each instance a process of its own) it gets a Triton error; either way the other requests batched
with it are answered as usual. Triton's own log goes to a file (named at start-up) unless -v. Needs the
`serve` extra (nvidia-pytriton, which ships tritonserver). SIGTERM or Ctrl-C stops the server after the
requests in flight; the exit code is then 0.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends import registry
from ..errors import EXIT_OK, ConfigError
from ..images import DEFAULT_MAX_PIXELS
from ..paddleseg.demo import restore_default_model
from ..segmenter import DECODER_HELP, DECODERS
from ..serve.pytriton_server import ServeOptions, serve

if TYPE_CHECKING:
    from ..serve.repository import RepositoryOptions

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
    parser.add_argument("--server", default="pytriton", choices=("pytriton", "tritonserver"),
                        help="pytriton: Triton in-process, the instances threads of this process; tritonserver: "
                             "the exported repository's model in tritonserver, each instance a process of its "
                             "own and --instances per listed --device")


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

    if args.server == "tritonserver":
        _serve_in_tritonserver(options)
    else:
        serve(options, lambda segmenter: _print_ready(options, segmenter.describe()))
    print("stopped")
    return EXIT_OK


def _serve_in_tritonserver(options: ServeOptions) -> None:
    from ..doctor import startup_readings
    from ..serve.tritonserver import serve_repository

    def ready(repository: RepositoryOptions) -> None:
        where = "the CPU" if repository.cpu else f"GPU {', '.join(map(str, repository.gpus))}"
        _print_ready(options, f"tritonserver: {repository.instances} instance(s) of {options.name} on {where}, each "
                              "a process of its own (each logs its backend and JPEG decoder in Triton's log)")

    serve_repository(options, bool(startup_readings().gpus), ready)


def _print_ready(options: ServeOptions, describe: str) -> None:
    print(describe)
    print(f"serving {options.name} on http://{options.address}:{options.http_port} and grpc "
          f"{options.address}:{options.grpc_port}, metrics on :{options.metrics_port} "
          "(SIGTERM or Ctrl-C stops)" + ("" if options.verbose else f"; Triton's log: {options.triton_log}"),
          flush=True)
